"""FAISS index choice by size, IVF/compressed indexes (add, remove, search, persist, recall), and the
gallery growing into a bigger index type: all on small synthetic galleries so that it runs in seconds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
from sqlalchemy import select

from facetrace.config import get_settings
from facetrace.errors import ConfigError
from facetrace.gallery import Gallery
from facetrace.index import faiss_index
from facetrace.index.faiss_index import (
    FLAT_MAX,
    FaissIndex,
    IndexPlan,
    choose_plan,
    nlist_for,
    nprobe_for,
    upgrade_plan,
)
from facetrace.store.models import Face, Image, Person
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.vision.quality import Quality

DIM = 128


MODEL = Path(__file__).resolve().parent.parent / "bench" / "embedding_model.npz"


def face_like(n: int, seed: int = 0, per_person: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` synthetic templates, ``per_person`` photos per person, and the person of each.

    Drawn from the model fitted to real dlib templates (``bench/fit_embedding_model.py``): impostor
    cosine ~0.84, genuine ~0.96, the neighbourhood structure that makes approximate search hard.
    """
    model = np.load(MODEL)
    rng = np.random.default_rng(seed)
    persons = -(-n // per_person)
    centres = model["mu"] + rng.standard_normal((persons, DIM), dtype=np.float32) @ model["chol_between"].T
    labels = np.repeat(np.arange(persons), per_person)[:n]
    x = centres[labels] + rng.standard_normal((n, DIM), dtype=np.float32) @ model["chol_within"].T
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def exact_top(x: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ x.T
    return ids[np.argsort(-scores, axis=1)[:, :k]]


# -- choice by size -----------------------------------------------------------------------------


def test_plan_is_chosen_by_size(caplog: pytest.LogCaptureFixture) -> None:
    big = 64 * 2**30
    assert choose_plan(0, memory_budget=big).factory == "Flat"
    assert choose_plan(FLAT_MAX, memory_budget=big).factory == "Flat"
    plan = choose_plan(FLAT_MAX + 1, memory_budget=big)
    nlist = nlist_for(FLAT_MAX + 1)
    assert plan.factory == f"IVF{nlist},SQ8" and plan.kind == "ivf-compressed" and plan.auto
    assert plan.rerank == faiss_index.DEFAULT_RERANK and plan.nprobe == nprobe_for(nlist)
    ten_million = choose_plan(10_000_000, memory_budget=big)
    assert ten_million.factory == "IVF16384,SQ8" and ten_million.nprobe == 1024  # measured: recall@10 0.996
    assert nprobe_for(1024) == 256 and nprobe_for(4096) == 512 and nprobe_for(16) == 16
    assert "over the budget" not in caplog.text
    choose_plan(10_000_000, memory_budget=2**30)  # 1.4 GB of codes do not fit 1 GiB: said, still built
    assert "over the budget of 1.0 GiB" in caplog.text
    sizes = {f: faiss_index.bytes_per_template(f, DIM) for f in ("Flat", "HNSW32,Flat", "HNSW32,SQ8", "IVF64,SQ8")}
    assert sizes == {"Flat": 568, "HNSW32,Flat": 840, "HNSW32,SQ8": 456, "IVF64,SQ8": 136}
    assert faiss_index.bytes_per_template("IVF64,Flat", DIM) == 520


def test_configured_factory_and_its_fallback() -> None:
    plan = choose_plan(500_000, factory="IVF{nlist},Flat", nprobe=77)
    assert plan.factory == f"IVF{nlist_for(500_000)},Flat" and not plan.auto and plan.rerank == 1
    assert plan.nprobe == 77 and plan.kind == "ivf"
    assert choose_plan(500_000, factory="IVF{nlist},SQ8").rerank > 1
    assert choose_plan(10, factory="HNSW16,Flat", efsearch=99).efsearch == 99
    # Too few templates to train 1024 clusters: Flat until there are enough, then the configured index.
    early = choose_plan(100, factory="IVF1024,Flat")
    assert early.factory == "Flat" and early.wanted == "IVF1024,Flat"
    assert upgrade_plan(early, 5000) is None
    later = upgrade_plan(early, 20_000)
    assert later is not None and later.factory == "IVF1024,Flat" and later.wanted is None
    assert choose_plan(10, factory="auto").auto


def test_upgrade_as_the_gallery_grows() -> None:
    flat = choose_plan(1000)
    assert upgrade_plan(flat, FLAT_MAX) is None
    grown = upgrade_plan(flat, FLAT_MAX + 1)
    assert grown is not None and grown.kind == "ivf-compressed"
    ivf = choose_plan(300_000)
    assert upgrade_plan(ivf, 1_000_000) is None  # not yet 4x
    regrown = upgrade_plan(ivf, 1_300_000)
    assert regrown is not None and regrown.nlist > ivf.nlist
    assert upgrade_plan(IndexPlan(factory="IVF64,Flat", auto=False), 10**8) is None  # configured: left alone
    assert upgrade_plan(ivf, 1000) is None  # shrinking keeps the index


# -- IVF round trip -----------------------------------------------------------------------------


def test_ivf_add_remove_search_persist(tmp_path: Path) -> None:
    x, _ = face_like(6000)
    ids = np.arange(6000, dtype=np.int64) * 7 + 100  # sparse ids, like database ids after erasures
    path = tmp_path / "ivf.faiss"
    index = FaissIndex(DIM, path=path, plan=IndexPlan(factory="IVF32,Flat", nprobe=32, auto=False))
    assert index.needs_training and index.training_size() == 32 * faiss_index.TRAIN_PER_LIST
    index.add(ids[:3000], x[:3000])  # trains on the first batch
    index.add(ids[3000:], x[3000:])
    assert len(index) == 6000 and set(index.ids().tolist()) == set(ids.tolist())
    # Remove every third template: they are never returned again, and every other id still maps to its
    # own vector (IndexIDMap over IVF would return wrong ids here).
    gone = ids[::3]
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0
    kept = np.setdiff1d(ids, gone)
    scores, found = index.search(x[1::3][:200], 1)
    assert np.array_equal(found[:, 0], ids[1::3][:200]) and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    _, found = index.search(x[::3][:200], 10)
    assert not np.isin(found, gone).any()
    index.set_nprobe(8)
    index.save()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["plan"]["nprobe"] == 8 and sidecar["factory"] == "IVF32,Flat"
    again = FaissIndex.load(path)
    assert again.plan.nprobe == 8 and faiss_index.faiss.extract_index_ivf(again.index).nprobe == 8
    assert set(again.ids().tolist()) == set(kept.tolist())
    np.testing.assert_allclose(again.vectors(kept[:5]), x[np.searchsorted(ids, kept[:5])], atol=1e-6)
    # Incremental adds after loading go into the trained clusters.
    again.add(np.array([10**9]), x[:1])
    assert again.search(x[:1], 1)[1][0, 0] in (10**9, ids[0])
    info = again.describe()
    assert info["factory"] == "IVF32,Flat" and info["bytes_per_template"] is not None


def test_ivf_recall_against_flat() -> None:
    every, _ = face_like(20_000, seed=1, per_person=4)
    held_out = np.arange(3, 600, 4)  # a new photo of 150 enrolled persons: mated probes
    x = np.delete(every, held_out, axis=0)
    ids = np.arange(len(x), dtype=np.int64)
    queries = np.vstack([every[held_out], face_like(150, seed=2)[0]])  # and 150 non-mated probes
    exact = exact_top(x, ids, queries, 10)
    flat = FaissIndex(DIM)
    flat.add(ids, x)
    assert np.array_equal(flat.search(queries, 10)[1], exact)
    ivf = FaissIndex(DIM, plan=IndexPlan(factory="IVF64,Flat", auto=False))
    ivf.add(ids, x)
    recalls = {}
    for nprobe in (1, 8, 32):
        ivf.set_nprobe(nprobe)
        found = ivf.search(queries, 10)[1]
        recalls[nprobe] = np.mean([len(np.intersect1d(f, e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recalls[1] < recalls[8] < recalls[32]
    assert recalls[32] >= 0.985, recalls  # measured 0.995 (half the clusters visited)
    assert recalls[1] < 0.5, recalls  # the test can tell a poor setting from a good one


def test_compressed_index_reranks_exactly() -> None:
    x, _ = face_like(8000, seed=3)
    ids = np.arange(len(x), dtype=np.int64) + 1
    queries, _ = face_like(100, seed=4)
    sq8 = FaissIndex(DIM, plan=IndexPlan(factory="IVF16,SQ8", nprobe=16, rerank=4, auto=False))
    sq8.add(ids, x)
    approx_scores, _ = sq8.search(queries, 10)  # no stored vectors: the codes' approximate scores
    sq8.vector_source = lambda wanted: x[wanted - 1]
    scores, found = sq8.search(queries, 10)
    exact = exact_top(x, ids, queries, 10)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ x.T, found - 1, axis=1), atol=1e-6)
    assert np.mean([len(np.intersect1d(f, e)) / 10 for f, e in zip(found, exact, strict=True)]) >= 0.98
    assert not np.allclose(approx_scores, scores, atol=1e-6)
    # A vector the source no longer knows (erased meanwhile) is dropped, not returned with a made-up score.
    sq8.vector_source = lambda wanted: np.where((wanted == found[0, 0])[:, None], np.nan, x[wanted - 1])
    assert found[0, 0] not in sq8.search(queries[:1], 10)[1]


def test_hnsw_erasure_leaves_tombstones_and_nothing_of_the_template(tmp_path: Path) -> None:
    x, _ = face_like(3000, seed=5)
    ids = np.arange(len(x), dtype=np.int64) + 10
    path = tmp_path / "hnsw.faiss"
    hnsw = FaissIndex(DIM, path=path, plan=choose_plan(10**6, factory="HNSW16,Flat"))
    hnsw.add(ids, x)
    gone = ids[:300]
    assert hnsw.remove(gone) == 300 and hnsw.remove(gone) == 0
    assert len(hnsw) == 2700 and not np.isin(hnsw.ids(), gone).any()
    assert hnsw.tombstone_share == pytest.approx(0.1)
    _, found = hnsw.search(x[:300], 10)
    assert not np.isin(found, gone).any() and (found >= 0).all()
    assert np.array_equal(hnsw.search(x[400:450], 1)[1][:, 0], ids[400:450])
    with pytest.raises(KeyError):
        hnsw.vectors(gone[:1])
    hnsw.save()
    raw = path.read_bytes()
    assert x[0].tobytes() not in raw and x[400].tobytes() in raw  # the erased vector is gone from the file
    again = FaissIndex.load(path)
    assert len(again) == 2700 and again.tombstone_share == pytest.approx(0.1)
    assert not np.isin(again.search(x[:300], 10)[1], gone).any()
    again.add(gone[:1], x[:1])  # re-adding an erased id works
    assert again.search(x[:1], 1)[1][0, 0] == gone[0] and len(again) == 2701


def test_index_without_removal_is_rebuilt_without(caplog: pytest.LogCaptureFixture) -> None:
    x, _ = face_like(1500, seed=8)
    ids = np.arange(len(x), dtype=np.int64) + 1
    nsg = FaissIndex(DIM, "NSG16,Flat")  # FAISS cannot remove from an NSG graph
    nsg.add(ids, x)
    assert nsg.remove(ids[:20]) == 20 and "cannot remove entries" in caplog.text
    assert len(nsg) == 1480 and not np.isin(nsg.ids(), ids[:20]).any()
    assert not np.isin(nsg.search(x[:20], 5)[1], ids[:20]).any()


def test_too_few_templates_to_train_fall_back_to_flat() -> None:
    index = FaissIndex(DIM, plan=IndexPlan(factory="IVF256,Flat", auto=False, configured="IVF256,Flat"))
    x, _ = face_like(30)
    index.add(np.arange(30), x)
    assert index.plan.factory == "Flat" and index.plan.wanted == "IVF256,Flat" and len(index) == 30
    with pytest.raises(faiss_index.IndexNotTrained):
        FaissIndex(DIM, plan=IndexPlan(factory="IVF256,Flat", auto=False)).train(x)


def test_bad_factory_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="invalid FAISS index factory"):
        FaissIndex(DIM, "NotAnIndex,Flat")


# -- the gallery grows ------------------------------------------------------------------------


def _add_synthetic_faces(gallery: Gallery, vectors: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """Insert persons, images and faces straight into the database (no photos: fast), like an import would."""
    model_id = gallery.model_id
    with gallery.db.session() as session:
        persons = {}
        for label in np.unique(labels).tolist():
            person = Person(
                external_id=f"{prefix}{label}", name=f"synthetic {label}", source="test", legal_basis="test"
            )
            session.add(person)
            persons[label] = person
        session.flush()
        for n, (vector, label) in enumerate(zip(vectors, labels.tolist(), strict=True)):
            person = persons[label]
            image = Image(person_id=person.id, sha256=f"{prefix}{n:060d}"[-64:], media_path="x", original_name="x")
            image.width = image.height = 100
            session.add(image)
            session.flush()
            session.add(
                Face(
                    image_id=image.id,
                    person_id=person.id,
                    box=[0, 0, 1, 1],
                    landmarks=[],
                    detector="test",
                    quality=80.0,
                    model_id=model_id,
                    embedding=np.asarray(vector, dtype=np.float32).tobytes(),
                )
            )
        gallery.db.bump_gallery_version(session)


def _probe(vector: np.ndarray) -> DetectedFace:
    quality = Quality(score=90.0, eye_distance_px=60, sharpness=100, detector_score=1.0, yaw_deg=0)
    return DetectedFace(
        box=(0, 0, 10, 10),
        landmarks=[],
        detector="test",
        detection_score=1.0,
        quality=quality,
        embedding=vector.astype(np.float32),
        model_id="test",
    )


@pytest.fixture()
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale the size thresholds down 1000x so that a few thousand templates cross them."""
    monkeypatch.setattr(faiss_index, "FLAT_MAX", 1000)
    monkeypatch.setattr(faiss_index, "nlist_for", lambda n: 16)


@pytest.fixture()
def synthetic_gallery(tmp_home: Path, small_thresholds: None) -> Iterator[Gallery]:
    g = Gallery(get_settings(home=tmp_home, workers=1, index_memory_mb=4096))
    yield g
    g.close()


def test_gallery_grows_from_flat_into_ivf_in_the_background(
    synthetic_gallery: Gallery, caplog: pytest.LogCaptureFixture
) -> None:
    g = synthetic_gallery
    x, labels = face_like(3000, seed=6)
    _add_synthetic_faces(g, x[:600], labels[:600], "p")
    assert g.index().describe()["factory"] == "Flat"
    first = g.search_faces([_probe(x[0])], top_k=3).to_dict()
    assert first["gallery"]["persons"] == 200
    _add_synthetic_faces(g, x[600:], labels[600:] + 10_000, "p")
    index = g.index()  # syncs the new faces into Flat, then starts the rebuild
    assert len(index) == 3000
    assert g.wait_for_index_rebuild(60)
    assert "it no longer suits 3000 faces; rebuilding it as IVF16,SQ8 in the background" in caplog.text
    info = g.index().describe()
    assert info["factory"] == "IVF16,SQ8" and info["count"] == 3000 and info["nprobe"] == 16
    assert info["exact_scores"] and info["bytes_per_template"] < 200
    sidecar = json.loads(g.index_path.with_suffix(".json").read_text())
    assert sidecar["plan"]["factory"] == "IVF16,SQ8" and sidecar["plan"]["auto"] and sidecar["plan"]["rerank"] == 4
    # Same answers, and the calibration is for the true gallery size (persons), whatever index answered.
    result = g.search_faces([_probe(x[0]), _probe(x[2500])], top_k=3).to_dict()
    assert result["gallery"]["persons"] == 1000
    assert result["policy"]["threshold"] == pytest.approx(g.calibration.threshold(0.01, 1000), abs=1e-4)
    best = result["faces"][0]["candidates"][0]
    assert best["person"]["external_id"] == "p0" and best["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert best["fpir"] == pytest.approx(g.calibration.fpir(best["score"], 1000), rel=0.05)  # score is rounded
    assert result["faces"][1]["candidates"][0]["person"]["external_id"] == f"p{labels[2500] + 10_000}"
    # Erasure removes the templates from the IVF lists, and survives a reopen.
    g.delete_person("p0")
    after = g.search_faces([_probe(x[0])], top_k=3).to_dict()
    assert all(c["person"]["external_id"] != "p0" for c in after["faces"][0]["candidates"])
    reopened = Gallery(get_settings(workers=1, index_memory_mb=4096))
    try:
        info = reopened.index().describe()
        assert info["factory"] == "IVF16,SQ8" and info["count"] == 2997 and info["tombstones"] == 0
    finally:
        reopened.close()


def test_graph_is_rebuilt_when_many_templates_are_erased(
    tmp_home: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACETRACE_INDEX_FACTORY", "HNSW32,Flat")
    g = Gallery(get_settings(workers=1))
    request_close = g.close
    x, labels = face_like(2400, seed=9)
    _add_synthetic_faces(g, x, labels, "e")
    assert g.index().describe()["factory"] == "HNSW32,Flat"
    for label in range(170):  # 510 of 2400 templates: over the 20% that triggers a rebuild
        g.delete_person(f"e{label}")
        g.index()
    assert g.wait_for_index_rebuild(60)
    assert "of its graph nodes are erased templates; rebuilding it as HNSW32,Flat" in caplog.text
    info = g.index().describe()
    assert info["count"] == 1890 and info["tombstones"] < 0.2 * 1890
    found = g.search_faces([_probe(x[0]), _probe(x[3])], top_k=5).to_dict()
    assert not {c["person"]["external_id"] for f in found["faces"] for c in f["candidates"]} & {"e0", "e1"}
    request_close()


def test_configured_compressed_index_gives_exact_scores(
    tmp_home: Path, small_thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACETRACE_INDEX_FACTORY", "HNSW16,SQ8")
    g = Gallery(get_settings(workers=1))
    try:
        x, labels = face_like(2000, seed=7)
        _add_synthetic_faces(g, x, labels, "q")
        index = g.index()
        assert index.describe()["factory"] == "HNSW16,SQ8" and index.describe()["exact_scores"]
        scores, ids = index.search(x[10:12], 10)
        with g.db.sessions() as session:
            stored = dict(session.execute(select(Face.id, Face.embedding)).all())
        for row in range(2):
            exact = [float(np.frombuffer(stored[int(i)], dtype=np.float32) @ x[10 + row]) for i in ids[row]]
            np.testing.assert_allclose(scores[row], exact, atol=1e-5)  # re-ranked from the database
        result = g.search_faces([_probe(x[10])], top_k=5).to_dict()
        assert result["faces"][0]["candidates"][0]["person"]["external_id"] == f"q{labels[10]}"
        # Another index on request: the automatic choice.
        assert g.rebuild_index(factory="auto") == 2000
        assert g.index().describe()["factory"] == "IVF16,SQ8"
    finally:
        g.close()


def test_cli_rebuild_and_info(enrolled_home_copy: Path, run_cli: Callable[..., CompletedProcess[str]]) -> None:
    run = run_cli
    done = run("index", "rebuild", "--factory", "IVF2,Flat", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # 40 templates can train 2 clusters (8 per cluster at least): the configured IVF index is built.
    assert result["faces"] == 40 and result["index"]["factory"] == "IVF2,Flat"
    info = run("index", "info", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["factory"] == "IVF2,Flat"
    bad = run("index", "rebuild", "--factory", "Nonsense")
    assert bad.returncode != 0 and bad.stderr.startswith("error:") and "invalid FAISS index factory" in bad.stderr
    assert "Traceback" not in bad.stderr
    back = run("index", "rebuild", "--factory", "auto", "--json")
    assert json.loads(back.stdout)["index"]["factory"] == "Flat"


def test_bad_configured_factory_is_a_clear_error(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACETRACE_INDEX_FACTORY", "IVF{nlist},Bogus")
    g = Gallery(get_settings(workers=1))
    try:
        with pytest.raises(ConfigError, match="could not parse code description Bogus"):
            g.index()
    finally:
        g.close()
