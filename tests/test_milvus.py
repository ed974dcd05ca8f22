"""The Milvus vector backend, on embedded milvus-lite and on a real Milvus standalone server (the ``milvus``
package's server on loopback, started by ``scripts/services.sh``; tests marked ``milvus_server``): same behaviour
as FAISS (add, delete, search, rebuild from the database through the gallery, with real faces), the URL syntax,
``facetrace index migrate`` from FAISS, and clean 503s while the server is down, then recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import TYPE_CHECKING

import numpy as np
import pytest
from pymilvus import MilvusClient
from sqlalchemy import create_engine, text

from facetrace.config import get_settings
from facetrace.errors import ConfigError
from facetrace.gallery import Gallery
from facetrace.index import open_vector_index
from facetrace.index.milvus_index import MilvusIndex, parse_vector_url, partition_name

if TYPE_CHECKING:
    from conftest import FaceSubset

DIM = 128
RunCli = Callable[..., CompletedProcess[str]]


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- URLs ---------------------------------------------------------------------------------------


def test_vector_urls(tmp_path: Path) -> None:
    server = parse_vector_url("milvus://ops:s3cret@milvus.internal/faces_prod?db=ident&index=IVF_FLAT&nlist=1024")
    assert server.uri == "http://milvus.internal:19530" and not server.lite
    assert server.token == "ops:s3cret" and server.db_name == "ident" and server.collection == "faces_prod"
    assert server.index_type == "IVF_FLAT" and server.index_params == {"nlist": 1024}
    assert "s3cret" not in server.safe_url
    assert (server.timeout, server.write_timeout) == (10.0, 120.0)  # a hung server is a 503, not a held request
    impatient = parse_vector_url("milvus://milvus.internal/faces?timeout=2.5&write_timeout=30")
    assert (impatient.timeout, impatient.write_timeout) == (2.5, 30.0)
    hnsw = parse_vector_url("milvus+https://zilliz.example:443?token=abc&ef=512&metric=cosine")
    assert hnsw.uri == "https://zilliz.example:443" and hnsw.token == "abc" and hnsw.collection == "facetrace_faces"
    assert hnsw.index_type == "HNSW" and hnsw.search_params == {"ef": 512} and hnsw.metric == "COSINE"
    lite = parse_vector_url(f"milvus-lite://{tmp_path}/v.db?collection=mine")
    assert lite.lite and lite.uri == str(tmp_path / "v.db") and lite.collection == "mine" and lite.index_type == "FLAT"
    relative = parse_vector_url("milvus-lite://vectors/v.db", home=tmp_path)
    assert relative.uri == str(tmp_path / "vectors" / "v.db")
    for bad, message in [
        ("redis://host/x", "unknown scheme"),
        ("milvus-lite:///srv/file.sqlite", "must end in .db"),
        ("milvus://host/bad-name", "bad collection name"),
        ("milvus://host/x?colour=blue", "unknown parameter"),
        ("milvus://host/x?index=HNSW&ef=many", "bad parameter"),
        ("milvus://host/x?timeout=0", "timeouts must be positive"),
        ("milvus://host/x?write_timeout=soon", "bad parameter"),
        ("milvus://host/x?metric=L2", "metric must be IP or COSINE"),
        ("milvus:///x", "no host"),
        ("not a url", "expected milvus://"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_vector_url(bad)
    assert partition_name("dlib-resnet-v1+flip") == "m_dlib_resnet_v1_flip"


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="127.0.0.1:9"):
        MilvusIndex.from_url("milvus://127.0.0.1:9/faces", model_id="m")


# -- the backend --------------------------------------------------------------------------------


SERVER_URL = os.environ.get("FACETRACE_TEST_MILVUS_URL", "")
BACKENDS = ["lite", pytest.param("server", marks=pytest.mark.milvus_server)]


def _drop_collection(server_url: str, collection: str) -> None:
    client = MilvusClient(uri=parse_vector_url(f"{server_url}/{collection}").uri, timeout=30)
    try:
        if client.has_collection(collection):
            client.drop_collection(collection)
    finally:
        client.close()


def milvus_target(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Iterator[str]:
    """A vector URL of the backend ``request.param``: a milvus-lite file, or a fresh collection on the server
    (exact FLAT search, as on milvus-lite; dropped afterwards)."""
    if request.param == "lite":
        yield f"milvus-lite://{tmp_path}/{name}/vectors.db"
        return
    if not SERVER_URL:
        pytest.skip("no Milvus server: FACETRACE_TEST_MILVUS_URL (scripts/services.sh starts one)")
    collection = f"t_{name}_{uuid.uuid4().hex[:10]}"
    yield f"{SERVER_URL}/{collection}?index=FLAT"
    _drop_collection(SERVER_URL, collection)


@pytest.fixture(params=BACKENDS)
def milvus_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from milvus_target(request, tmp_path, "milvus")


def backend_name(url: str) -> str:
    return "milvus-lite" if url.startswith("milvus-lite:") else "milvus"


def test_add_search_remove_persist(milvus_url: str) -> None:
    x = unit_vectors(600, seed=1)
    ids = np.arange(600, dtype=np.int64) * 3 + 7
    index = MilvusIndex.from_url(milvus_url, model_id="model-a")
    try:
        assert len(index) == 0 and index.ids().size == 0
        empty_scores, empty_ids = index.search(x[:2], 5)
        assert (empty_ids == -1).all() and np.isneginf(empty_scores).all()
        index.add(ids, x)
        index.add(ids[:50], x[:50])  # an upsert: adding again keeps one entity per id
        assert len(index) == 600 and set(index.ids().tolist()) == set(ids.tolist())
        scores, found = index.search(x[:20], 10)
        exact = np.argsort(-(x[:20] @ x.T), axis=1)[:, :10]
        assert np.array_equal(found, ids[exact])  # FLAT: exact
        np.testing.assert_allclose(scores, np.take_along_axis(x[:20] @ x.T, exact, axis=1), atol=1e-5)
        np.testing.assert_allclose(index.vectors(ids[5:8]), x[5:8], atol=1e-6)
        assert index.remove(np.concatenate([ids[:100], [999_999]])) == 100
        assert index.remove(ids[:100]) == 0
        assert len(index) == 500
        assert not np.isin(index.search(x[:100], 10)[1], ids[:100]).any()
        assert index.search(x[100:101], 1, filter=f"id != {ids[100]}")[1][0, 0] != ids[100]
        # Another model's templates live in another partition and are never compared.
        other = MilvusIndex.from_url(milvus_url, model_id="model-b")
        assert len(other) == 0 and (other.search(x[:1], 3)[1] == -1).all()
        other.add(np.array([1]), x[:1])
        assert len(index) == 500 and index.search(x[:1], 1)[1][0, 0] != 1
        other.close()
        index.save()
        info = index.describe()
        assert info["backend"] == backend_name(milvus_url) and info["count"] == 500 and info["partition"] == "m_model_a"
    finally:
        index.close()
    again = MilvusIndex.from_url(milvus_url, model_id="model-a")
    try:
        assert len(again) == 500 and set(again.ids().tolist()) == set(ids[100:].tolist())
        again.clear()
        assert len(again) == 0
    finally:
        again.close()
    with pytest.raises(ConfigError, match="dimension 128, not 64"):
        MilvusIndex.from_url(milvus_url, model_id="model-a", dim=64)


def test_open_vector_index_picks_milvus(milvus_url: str, tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home", vector_url=milvus_url)
    index = open_vector_index(settings, "model-a")
    try:
        assert isinstance(index, MilvusIndex)
    finally:
        index.close()
    with pytest.raises(ConfigError, match="unknown scheme"):
        open_vector_index(get_settings(home=tmp_path / "home", vector_url="faiss:///x"), "model-a")


# -- the gallery on Milvus, with real faces -----------------------------------------------------


def _top(result: dict[str, object]) -> list[list[tuple[str, float]]]:
    faces = result["faces"]
    assert isinstance(faces, list)
    return [[(c["person"]["external_id"], round(c["score"], 3)) for c in f["candidates"]] for f in faces]


def test_gallery_on_milvus(
    enrolled_home_copy: Path,
    enrolled_gallery: Gallery,
    face_subset: FaceSubset,
    milvus_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes = [face_subset.probe(name) for name in face_subset.gallery_identities[:4]]
    probes += [face_subset.probe(face_subset.other_identities[0])]
    faiss_results = [enrolled_gallery.search(p.read_bytes(), name=p.name, top_k=5).to_dict() for p in probes]
    monkeypatch.setenv("FACETRACE_VECTOR_URL", milvus_url)
    g = Gallery(get_settings(workers=1))
    try:
        # The collection starts empty: the gallery fills it from the database (rebuild from the database).
        index = g.index()
        assert isinstance(index, MilvusIndex) and len(index) == 40
        results = [g.search(p.read_bytes(), name=p.name, top_k=5).to_dict() for p in probes]
        assert [_top(r) for r in results] == [_top(r) for r in faiss_results]
        # The calibration is for the true gallery size, whatever index answered.
        assert [r["gallery"]["persons"] for r in results] == [20] * len(results)
        assert results[0]["policy"] == faiss_results[0]["policy"]
        # Enrollment goes straight into Milvus; erasure takes the templates out.
        newcomer = face_subset.other_identities[0]
        outcome = g.enroll(face_subset.enroll_items([newcomer]))
        assert outcome.images_enrolled == 2 and len(g.index()) == 42
        found = g.search(face_subset.references(newcomer)[0].read_bytes(), top_k=1).to_dict()
        assert found["faces"][0]["candidates"][0]["person"]["external_id"] == newcomer
        erased = face_subset.gallery_identities[0]
        g.delete_person(erased)
        assert len(g.index()) == 40
        after = g.search(probes[0].read_bytes(), top_k=20).to_dict()
        assert erased not in {c["person"]["external_id"] for f in after["faces"] for c in f["candidates"]}
        assert g.rebuild_index() == 40
        assert g.stats()["index"]["backend"] == backend_name(milvus_url)
    finally:
        g.close()
    # Another worker (process) opening the same collection finds it in line with the database.
    other = Gallery(get_settings(workers=1))
    try:
        assert len(other.index()) == 40
    finally:
        other.close()


@pytest.fixture(params=BACKENDS)
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from milvus_target(request, tmp_path, "migrated")


def test_migrate_command(
    enrolled_home_copy: Path, face_subset: FaceSubset, run_cli: RunCli, migrated_url: str, enrolled_gallery: Gallery
) -> None:
    url = migrated_url
    done = run_cli("index", "migrate", "--to", url, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["faces"] == 40 and result["copied"] == 40 and result["target_count"] == 40
    assert result["check"] == {"searched": 40, "same_best_hit": 40}
    again = json.loads(run_cli("index", "migrate", "--to", url, "--json").stdout)
    assert again["copied"] == 0 and again["already_there"] == 40  # idempotent
    text_out = run_cli("index", "migrate", "--to", url)
    assert text_out.returncode == 0 and f"export FACETRACE_VECTOR_URL='{url}'" in text_out.stdout
    probe = face_subset.probe(face_subset.gallery_identities[3])
    on_milvus = run_cli("search", probe, "--json", env={"FACETRACE_VECTOR_URL": url})
    assert on_milvus.returncode == 0, on_milvus.stderr
    expected = enrolled_gallery.search(probe.read_bytes(), name=probe.name).to_dict()
    assert _top(json.loads(on_milvus.stdout)) == _top(expected)
    info = json.loads(run_cli("index", "info", "--json", env={"FACETRACE_VECTOR_URL": url}).stdout)
    assert info["backend"] == backend_name(url) and info["count"] == 40


def test_migrate_command_refuses_bad_targets_in_one_line(enrolled_home_copy: Path, run_cli: RunCli) -> None:
    """Whatever the backend under test, a target that is no vector store, or one that does not answer."""
    bad = run_cli("index", "migrate", "--to", "ftp://x/y")
    assert bad.returncode != 0 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    unreachable = run_cli("index", "migrate", "--to", "milvus://127.0.0.1:9/faces")
    assert unreachable.returncode != 0 and "connect failed" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


# -- several enrollment workers against one PostgreSQL ------------------------------------------


def test_concurrent_workers_never_enroll_an_image_twice(
    postgres_url: str, face_subset: FaceSubset, tmp_path: Path, repo_root: Path
) -> None:
    """Two workers (own data homes, as on two machines) enroll the same folder at the same time into one
    PostgreSQL database: every image is enrolled exactly once, by one of them."""
    folder = tmp_path / "photos"
    for name in face_subset.gallery_identities[:6]:
        (folder / name).mkdir(parents=True)
        for image in face_subset.references(name):
            (folder / name / image.name).write_bytes(image.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACETRACE_")}
    env["FACETRACE_DATABASE_URL"] = postgres_url
    subprocess.run(
        [sys.executable, "-m", "facetrace.cli.main", "--home", str(tmp_path / "h0"), "init", "--json"],
        env=env,
        check=True,
        capture_output=True,
        cwd=repo_root,
    )
    command = ["enroll", str(folder), "--source", "test", "--legal-basis", "test", "--workers", "1", "--json"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "facetrace.cli.main", "--home", str(tmp_path / f"h{n}"), *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=repo_root,
        )
        for n in (1, 2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        images, distinct = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT (person_id, sha256)) FROM images")).one()
        faces = conn.execute(text("SELECT COUNT(*) FROM faces")).scalar()
        persons = conn.execute(text("SELECT COUNT(*) FROM persons")).scalar()
    engine.dispose()
    assert images == distinct == faces == 12 and persons == 6, outputs
    for process, (_, stderr) in zip(workers, outputs, strict=True):
        assert "Traceback" not in stderr
        # The worker that loses a race takes the other worker's person, or counts the image as enrolled.
        assert process.returncode == 0, stderr
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["images_enrolled"] for r in reports) == 12
    assert sum(r["persons_created"] for r in reports) == 6
