"""Encryption at rest: templates, metadata, photos and the index file sealed with the operator's key;
key files checked; a wrong or missing key is a clear error; rotation (also from an unencrypted
gallery) is resumable after a crash and leaves search results unchanged."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sqlalchemy import LargeBinary, select, type_coerce

from facetrace.config import get_settings
from facetrace.crypto import (
    DecryptionError,
    Keyring,
    generate_key,
    is_encrypted,
    key_id,
    key_id_of,
    read_key_file,
    write_key_file,
)
from facetrace.errors import ConfigError
from facetrace.gallery import EnrollItem, Gallery
from facetrace.store.db import Database
from facetrace.store.models import Face, Image
from facetrace.store.rotation import rotate

if TYPE_CHECKING:
    from conftest import FaceSubset

RunCli = Callable[..., subprocess.CompletedProcess[str]]
CONTACT = {"name": "Halyna Shevchenko", "email": "halyna.shevchenko@family.example", "phone": "+380 67 123 4567"}


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two key files outside any data home."""
    folder = tmp_path / "keys"
    folder.mkdir()
    out = {}
    for name in ("k1", "k2"):
        write_key_file(folder / f"{name}.key", generate_key())
        out[name] = folder / f"{name}.key"
    return out


def _kid(path: Path) -> bytes:
    return key_id(read_key_file(path))


def _search(g: Gallery, probe: Path) -> list[list[tuple[str, float]]]:
    result = g.search(probe.read_bytes(), name=probe.name, top_k=5).to_dict()
    return [[(c["person"]["external_id"], c["score"]) for c in f["candidates"]] for f in result["faces"]]


def _home_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()]


def _raw_embeddings(g: Gallery) -> list[bytes]:
    with g.db.engine.connect() as conn:
        return [bytes(r[0]) for r in conn.execute(select(type_coerce(Face.embedding, LargeBinary())))]


# -- the cipher ----------------------------------------------------------------------------------
def test_values_are_bound_to_their_key_and_place() -> None:
    key = generate_key()
    ring = Keyring([key])
    sealed = ring.seal(b"template bytes", b"faces.embedding")
    assert is_encrypted(sealed) and key_id_of(sealed) == key_id(key) and b"template bytes" not in sealed
    assert ring.seal(b"template bytes", b"faces.embedding") != sealed  # a fresh nonce each time
    assert ring.open(sealed, b"faces.embedding") == b"template bytes"
    assert ring.open(b"plain", b"faces.embedding") == b"plain"  # written before a key was set
    with pytest.raises(DecryptionError, match="failed authentication"):
        ring.open(sealed, b"contacts.email")  # moved to another column
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DecryptionError, match="failed authentication"):
        ring.open(tampered, b"faces.embedding")
    with pytest.raises(DecryptionError, match=f"key {key_id(key).hex()} but that key is not configured"):
        Keyring([generate_key()]).open(sealed, b"faces.embedding")
    text = ring.seal_text("mother@example.org", b"contacts.email")
    assert text.startswith("fte1:") and "mother" not in text
    assert ring.open_text(text, b"contacts.email") == "mother@example.org"
    assert Keyring().seal(b"x", b"c") == b"x" and not Keyring().enabled


def test_key_files_are_checked(tmp_path: Path, tmp_home: Path) -> None:
    good = tmp_path / "good.key"
    write_key_file(good, generate_key())
    assert os.stat(good).st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="never overwritten"):
        write_key_file(good, generate_key())
    assert get_settings(key_file=good).encrypted
    assert not get_settings().encrypted

    inside = tmp_home / "inside.key"
    write_key_file(inside, generate_key())
    with pytest.raises(ConfigError, match="inside the data home"):
        _ = get_settings(key_file=inside).keyring
    loose = tmp_path / "loose.key"
    write_key_file(loose, generate_key())
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        _ = get_settings(key_file=loose).keyring
    short = tmp_path / "short.key"
    write_key_file(short, b"\0" * 32)
    short.chmod(0o600)
    short.write_text("c2hvcnQ=\n")
    with pytest.raises(ConfigError, match="256 bits"):
        _ = get_settings(key_file=short).keyring
    with pytest.raises(ConfigError, match="not a base64 key"):
        _ = get_settings(key="not base64!").keyring
    with pytest.raises(ConfigError, match="cannot read key file"):
        _ = get_settings(key_file=tmp_path / "missing.key").keyring
    other = tmp_path / "other.key"
    write_key_file(other, generate_key())
    both = get_settings(key_file=other, previous_key_file=good).keyring
    assert both.key_ids == [_kid(other).hex(), _kid(good).hex()]  # the first seals, both open
    with pytest.raises(ConfigError, match="no current key"):
        _ = get_settings(previous_key_file=good).keyring


def test_cli_key_generate(tmp_home: Path, tmp_path: Path, run_cli: RunCli) -> None:
    out = run_cli("key", "generate", tmp_path / "new.key", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["key_id"] == _kid(tmp_path / "new.key").hex()
    again = run_cli("key", "generate", tmp_path / "new.key")
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "never overwritten" in again.stderr
    inside = run_cli("key", "generate", tmp_home / "k.key")
    assert inside.returncode == 1 and "inside the data home" in inside.stderr and not (tmp_home / "k.key").exists()


# -- a gallery enrolled with a key -----------------------------------------------------------------
def test_nothing_sensitive_is_stored_in_plaintext(
    tmp_home: Path, keys: dict[str, Path], face_subset: FaceSubset
) -> None:
    names = face_subset.gallery_identities[:3]
    items = face_subset.enroll_items(names)
    first = items[0]
    items[0] = EnrollItem(
        first.external_id, first.name, first.images, first.source, first.legal_basis, {"contacts": [CONTACT]}
    )
    photos = [p.read_bytes() for item in items for p in item.images]
    g = Gallery(get_settings(workers=1, key_file=keys["k1"]))
    try:
        outcome = g.enroll(items)
        assert outcome.images_enrolled == 6, outcome.errors
        templates = [v.tobytes() for _, _, v in g.iter_faces()]
        assert len(templates) == 6 and all(len(t) == 512 for t in templates)
        assert g.get_person(names[0])["metadata"]["contacts"] == [CONTACT]
        raw = _raw_embeddings(g)
        assert all(key_id_of(r) == _kid(keys["k1"]) for r in raw)
        with g.db.engine.connect() as conn:
            (meta,) = conn.exec_driver_sql("SELECT metadata FROM persons WHERE external_id = ?", (names[0],)).one()
        assert json.loads(meta).startswith("fte1:")
        mated = _search(g, face_subset.probe(names[1]))
        assert mated[0][0][0] == names[1]
        g.db.purge_deleted()
        files = _home_files(tmp_home)
        assert {p.suffix for p in files} >= {".db", ".faiss", ".jpg"}
        secrets = [*templates, *(t[:64] for t in templates), *(c.encode() for c in CONTACT.values())]
        for path in files:
            data = path.read_bytes()
            assert not any(s in data for s in secrets), f"plaintext in {path.name}"
            assert not any(p[:256] in data for p in photos), f"a photo in plaintext: {path.name}"
            if path.suffix in (".jpg", ".faiss"):
                assert key_id_of(data) == _kid(keys["k1"]), path.name
    finally:
        g.close()
    # Reopened (index loaded from its encrypted file): the same answer.
    again = Gallery(get_settings(workers=1, key_file=keys["k1"]))
    try:
        assert _search(again, face_subset.probe(names[1])) == mated
        image = again.get_person(names[0])["images"][0]
        with again.db.sessions() as session:
            rel = session.get(Image, image["id"]).media_path  # type: ignore[union-attr]
        assert again.media.read(rel) == photos[0]
    finally:
        again.close()


def test_a_wrong_or_missing_key_is_a_clear_error(
    enrolled_home_copy: Path, keys: dict[str, Path], face_subset: FaceSubset, run_cli: RunCli
) -> None:
    out = run_cli("key", "rotate", "--new-key-file", keys["k1"], "--json")
    assert out.returncode == 0, out.stderr
    probe = face_subset.probe(face_subset.gallery_identities[0])
    index_file = next((enrolled_home_copy / "index").glob("*.faiss"))
    sealed_index = index_file.read_bytes()
    for env in ({"FACETRACE_KEY_FILE": str(keys["k2"])}, {}):
        failed = run_cli("search", probe, "--json", env=env)
        assert failed.returncode != 0
        # (an index file it cannot open is only a warning: the index is rebuilt from the database, if that can be read)
        last = failed.stderr.strip().splitlines()[-1]
        assert "Traceback" not in failed.stderr and last.startswith("error: "), failed.stderr
        assert f"key {_kid(keys['k1']).hex()} but that key is not configured" in last
    # Nothing was lost or overwritten by the failed attempts.
    assert index_file.read_bytes() == sealed_index
    ok = run_cli("search", probe, "--json", env={"FACETRACE_KEY_FILE": str(keys["k1"])})
    assert ok.returncode == 0, ok.stderr
    assert (
        json.loads(ok.stdout)["faces"][0]["candidates"][0]["person"]["external_id"]
        == (face_subset.gallery_identities[0])
    )


def test_rotation_encrypts_then_rotates_resumably(
    enrolled_home_copy: Path, keys: dict[str, Path], face_subset: FaceSubset, run_cli: RunCli
) -> None:
    probes = [face_subset.probe(n) for n in face_subset.gallery_identities[:2]] + [
        face_subset.probe(face_subset.other_identities[0])
    ]
    plain = Gallery(get_settings(workers=1))
    try:
        before = [_search(plain, p) for p in probes]
        templates = [v.tobytes() for _, _, v in plain.iter_faces()]
    finally:
        plain.close()

    # 1. An unencrypted gallery is encrypted (no old key).
    out = run_cli("key", "rotate", "--new-key-file", keys["k1"], "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert first["columns"]["faces.embedding"] == {"resealed": 40, "current": 0}
    assert first["media"]["resealed"] == 40 and first["index_files"]["resealed"] == 1 and first["values_left"] == 0
    for path in _home_files(enrolled_home_copy):
        data = path.read_bytes()
        assert not any(t in data for t in templates), f"a template in plaintext in {path.name}"

    # 2. Rotation to k2, killed after its first batch: a rerun with both keys finishes the job.
    crashed = run_cli(
        "key",
        "rotate",
        "--new-key-file",
        keys["k2"],
        "--old-key-file",
        keys["k1"],
        env={"FACETRACE_FAULT_POINT": "key.rotate.batch@1"},
    )
    assert crashed.returncode == -9
    status = run_cli("key", "status", "--json", env={"FACETRACE_KEY_FILE": str(keys["k2"])})
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["values_not_on_current_key"]["faces.embedding"] == 40
    rerun = run_cli("key", "rotate", "--new-key-file", keys["k2"], "--old-key-file", keys["k1"], "--json")
    assert rerun.returncode == 0, rerun.stderr
    second = json.loads(rerun.stdout)
    assert second["columns"]["persons.metadata"] == {"resealed": 0, "current": 20}  # done before the crash
    assert second["columns"]["faces.embedding"]["resealed"] == 40 and second["values_left"] == 0

    # 3. The old key is no longer needed, and the answers are the same.
    rotated = Gallery(get_settings(workers=1, key_file=keys["k2"]))
    try:
        assert [_search(rotated, p) for p in probes] == before
        assert {key_id_of(r) for r in _raw_embeddings(rotated)} == {_kid(keys["k2"])}
    finally:
        rotated.close()
    for path in _home_files(enrolled_home_copy):
        if path.suffix in (".jpg", ".faiss"):
            assert key_id_of(path.read_bytes()) == _kid(keys["k2"]), path.name
    trail = run_cli("audit", "list", "--action", "key.rotate", "--json")
    assert trail.returncode == 0, trail.stderr
    outcomes = [e["outcome"] for e in json.loads(trail.stdout)["items"]]
    assert outcomes.count("ok") == 2, outcomes


def test_a_search_decrypts_only_its_candidates(
    enrolled_home_copy: Path, keys: dict[str, Path], face_subset: FaceSubset, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings(workers=1, key_file=keys["k1"])
    db = Database(settings.db_url, keyring=settings.keyring)
    try:
        rotate(db, settings.keyring, media_dir=settings.media_dir, index_dir=settings.index_dir, actor="test")
    finally:
        db.dispose()
    g = Gallery(settings)
    try:
        g.index()  # opening reads the index file and the face ids, not the templates
        opened: list[bytes] = []
        original = Keyring.open

        def counting(self: Keyring, blob: bytes, context: bytes) -> bytes:
            opened.append(context)
            return original(self, blob, context)

        monkeypatch.setattr(Keyring, "open", counting)
        result = g.search(face_subset.probe(face_subset.gallery_identities[0]).read_bytes(), top_k=1).to_dict()
        assert result["faces"][0]["candidates"][0]["person"]["external_id"] == face_subset.gallery_identities[0]
        # Re-ranking reads the k nearest templates (k = 21 for top_k=1), not the 40 of the gallery.
        assert 0 < opened.count(b"faces.embedding") <= 21
        vectors: Any = g.stored_templates(np.array([1, 2]))
        assert vectors.shape == (2, 128) and not np.isnan(vectors).any()
    finally:
        g.close()
