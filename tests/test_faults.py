"""Faults: ``kill -9`` at random and at named points of enrollment and re-indexing (the real CLI in a child
process, many times), and a disk that fills up during enrollment (a small tmpfs). Afterwards the database
and the index agree, nothing enrolled is lost or duplicated, and rerunning the same command finishes the job.

The notification path is in tests/workflow/test_outbox_kill.py; the harness in tests/faultkill.py
(``FACETRACE_FAULT_REPS=10`` for a long soak).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from faultkill import REPS, SEED, Kill, Stopwatch, cli, kill_plan, run_killed, sqlite_integrity

from facetrace.config import get_settings
from facetrace.gallery import Gallery
from facetrace.index.faiss_index import FaissIndex, IndexCorrupt
from facetrace.ops.doctor import DoctorOptions, run_doctor
from facetrace.store.media import sha256_bytes
from facetrace.store.models import Face, Image, Person

if TYPE_CHECKING:
    from conftest import FaceSubset

PROVENANCE = ("--source", "fault test", "--legal-basis", "test data")


def _folder(root: Path, face_subset: FaceSubset, names: list[str], per_person: int = 2) -> dict[str, set[str]]:
    """Copy ``per_person`` images of each of ``names`` to ``root/NAME/``; return each name's image sha256s."""
    shas: dict[str, set[str]] = {}
    for name in names:
        (root / name).mkdir(parents=True)
        for path in face_subset.images(name)[:per_person]:
            shutil.copy(path, root / name / path.name)
            shas.setdefault(name, set()).add(sha256_bytes(path.read_bytes()))
    return shas


def _rows(db: Path) -> list[tuple[str, str, str, int]]:
    """(external id, image sha256, media path, faces of the image) of every enrolled image.

    A kill before the first migration committed leaves an empty database file (the migration is one
    transaction): nothing is enrolled then."""
    with sqlite3.connect(db, timeout=30) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'images'").fetchone():
            return []
        return conn.execute(
            "SELECT p.external_id, i.sha256, i.media_path, (SELECT COUNT(*) FROM faces f WHERE f.image_id = i.id) "
            "FROM images i JOIN persons p ON p.id = i.person_id"
        ).fetchall()


def _face_ids(db: Path) -> list[int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return sorted(r[0] for r in conn.execute("SELECT id FROM faces WHERE person_id IS NOT NULL"))


def _check_after_kill(home: Path, expected: dict[str, set[str]], why: str) -> int:
    """What must hold at any moment, even right after a kill: return how many images are committed."""
    db = home / "facetrace.db"
    if not db.exists():
        return 0
    assert sqlite_integrity(db) == ["ok"], why
    rows = _rows(db)
    pairs = [(person, sha) for person, sha, _, _ in rows]
    assert len(pairs) == len(set(pairs)), f"{why}: an image enrolled twice"
    for person, sha, media, faces in rows:
        assert sha in expected[person], f"{why}: {person} got an image not theirs"
        assert faces == 1, f"{why}: image of {person} has {faces} faces"
        # Committed means its photo is stored: the file is written (atomically) before the commit.
        assert sha256_bytes((home / "media" / media).read_bytes()) == sha, f"{why}: photo of {person} lost"
    return len(rows)


def _check_complete(home: Path, expected: dict[str, set[str]], probe: Path, probe_name: str) -> None:
    """After a run that finished: everything enrolled exactly once, index == database, no stray media
    (after the doctor's repair), and a search finds the probe's person."""
    db = home / "facetrace.db"
    rows = _rows(db)
    enrolled: dict[str, set[str]] = {}
    for person, sha, _, _ in rows:
        enrolled.setdefault(person, set()).add(sha)
    assert enrolled == expected
    assert len(rows) == sum(len(v) for v in expected.values())  # nothing twice
    face_ids = _face_ids(db)
    index = FaissIndex.load(next((home / "index").glob("*.faiss")))  # the file itself, not a repaired copy
    assert sorted(index.ids().tolist()) == face_ids
    settings = get_settings(home=home, workers=1)
    report = run_doctor(
        settings, DoctorOptions(fix=True, only=("database", "index", "media"), orphan_min_age_s=0, actor="test")
    )
    assert report.status == "ok", report.as_dict()
    media = report.check("media").detail
    assert media["unreferenced_files"] == media["temporary_files"] == 0
    gallery = Gallery(settings)
    try:
        result = gallery.search(probe.read_bytes(), name=probe.name).to_dict()
    finally:
        gallery.close()
    assert result["faces"][0]["candidates"][0]["person"]["external_id"] == probe_name


# -- kill -9 during enrollment -------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_during_enroll_many_times(
    tmp_path: Path, face_subset: FaceSubset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enroll 16 images, killing the CLI at every commit-related point and at random moments; each
    interrupted job is finished by rerunning it, then a fresh job starts."""
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL", "FACETRACE_CALIBRATION_PATH"):
        monkeypatch.delenv(name, raising=False)
    rng = random.Random(SEED)
    names = face_subset.other_identities[:8]
    folder = tmp_path / "photos"
    expected = _folder(folder, face_subset, names)
    command = cli("enroll", folder, *PROVENANCE, "--workers", "1", "--json")
    points = [
        f"enroll.after_media@{rng.randint(1, 8)}",  # photo stored, not committed
        f"enroll.after_commit@{rng.randint(1, 8)}",  # committed, not in the index
        f"write.before_replace@{rng.randint(1, 8)}",  # photo written to a temporary file, not renamed
        f"write.after_replace@{rng.randint(1, 8)}",
        "enroll.before_index_save",  # everything committed, the index file not saved
    ]
    plan = kill_plan(rng, points, n_random=4, delays=(1.0, 5.0))
    clock = Stopwatch()
    homes = iter(tmp_path / f"home{n}" for n in range(100))
    home = next(homes)
    killed = jobs = 0
    for kill in plan:
        outcome = run_killed(command, kill, env={"FACETRACE_HOME": str(home)})
        why = f"seed {SEED}, {kill}"
        assert outcome.killed or outcome.returncode == 0, f"{why}: {outcome.stderr}"
        committed = _check_after_kill(home, expected, why)
        killed += outcome.killed
        if outcome.killed and committed < 16:
            continue
        # Finished (or everything committed before the kill): the rerun completes the job, then check it all.
        rerun = run_killed(command, Kill(), env={"FACETRACE_HOME": str(home)})
        assert rerun.returncode == 0, rerun.stderr
        out = json.loads(rerun.stdout)
        assert out["error_count"] == 0 and out["images_skipped"] + out["images_enrolled"] == 16, out
        assert out["images_skipped"] == committed, (why, out)
        monkeypatch.setenv("FACETRACE_HOME", str(home))
        _check_complete(home, expected, face_subset.probe(names[0]), names[0])
        jobs += 1
        home = next(homes)
    if (home / "facetrace.db").exists():  # the last job, interrupted: finish and check it too
        rerun = run_killed(command, Kill(), env={"FACETRACE_HOME": str(home)})
        assert rerun.returncode == 0, rerun.stderr
        monkeypatch.setenv("FACETRACE_HOME", str(home))
        _check_complete(home, expected, face_subset.probe(names[0]), names[0])
        jobs += 1
    assert killed >= len(plan) // 2, f"only {killed} of {len(plan)} runs were killed (seed {SEED})"
    print(f"enroll: {killed} kills over {jobs} jobs in {clock.seconds:.0f}s")


# -- kill -9 during re-indexing ------------------------------------------------------------------------
def _add_synthetic_faces(home: Path, count: int) -> None:
    """Add ``count`` random templates of the gallery's model (one synthetic person): a gallery big enough
    for IVF training and for a rebuild to take a moment."""
    settings = get_settings(home=home, workers=1)
    gallery = Gallery(settings)
    try:
        model = gallery.model_id
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((count, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with gallery.db.session() as session:
            person = Person(external_id="synthetic", name="Synthetic", source="test", legal_basis="test")
            session.add(person)
            session.flush()
            images = [
                Image(person_id=person.id, sha256=f"{n:064x}", media_path="none", original_name="s", width=1, height=1)
                for n in range(count)
            ]
            session.add_all(images)
            session.flush()
            session.add_all(
                Face(
                    image_id=image.id,
                    person_id=person.id,
                    box=[0, 0, 1, 1],
                    landmarks=[],
                    detector="synthetic",
                    quality=50.0,
                    quality_detail={},
                    model_id=model,
                    embedding=vector.tobytes(),
                )
                for image, vector in zip(images, vectors, strict=True)
            )
            gallery.db.bump_gallery_version(session)
        gallery.index()
    finally:
        gallery.close()


def _index_agrees(home: Path, probe: Path, probe_name: str, why: str) -> None:
    """Open the gallery as a server would (repairing the index from the database if needed): its index holds
    exactly the database's templates, and a search finds the probe's person."""
    gallery = Gallery(get_settings(home=home, workers=1, index_factory=None))
    try:
        assert sorted(gallery.index().ids().tolist()) == _face_ids(home / "facetrace.db"), why
        result = gallery.search(probe.read_bytes(), name=probe.name).to_dict()
        assert result["faces"][0]["candidates"][0]["person"]["external_id"] == probe_name, why
        gallery.wait_for_index_rebuild()
    finally:
        gallery.close()


@pytest.mark.slow
def test_kill_during_index_rebuild_many_times(enrolled_home_copy: Path, face_subset: FaceSubset) -> None:
    """``index rebuild --factory`` and the automatic rebuild after a FACETRACE_INDEX_FACTORY change, killed
    at the swap's steps and at random: the index file left behind is the old one, the new one, or is
    detected as unusable; reopening always gives index == database."""
    home = enrolled_home_copy
    _add_synthetic_faces(home, 3000)
    name = face_subset.gallery_identities[0]
    probe = face_subset.probe(name)
    rng = random.Random(SEED + 1)
    factories = ["IVF16,Flat", "HNSW16", "Flat", "IVF8,SQ8"]
    points = ["rebuild.before_save", "write.before_replace", "write.after_replace"]  # sidecar, then index file
    plan = kill_plan(rng, [p for p in points for _ in range(2)], n_random=3, delays=(1.5, 4.5))
    clock = Stopwatch()
    killed = 0
    for number, kill in enumerate(plan):
        factory = factories[number % len(factories)]
        if number % 3 == 2:  # the automatic path: a configured factory differs from the index's
            command, env = cli("index", "info", "--json"), {"FACETRACE_INDEX_FACTORY": factory}
        else:
            command, env = cli("index", "rebuild", "--factory", factory, "--json"), {}
        outcome = run_killed(command, kill, env={"FACETRACE_HOME": str(home), **env})
        why = f"seed {SEED + 1}, {kill}, {' '.join(command[3:])}"
        assert outcome.killed or outcome.returncode == 0, f"{why}: {outcome.stderr}"
        killed += outcome.killed
        index_file = next((home / "index").glob("*.faiss"))
        try:
            left = FaissIndex.load(index_file)
        except IndexCorrupt:
            pass  # detected: rebuilt from the database on open (checked next)
        else:
            # A loadable file is a whole index: the old one or the new one, never a mix of templates.
            assert sorted(left.ids().tolist()) == _face_ids(home / "facetrace.db"), why
        if number % 2 or number == len(plan) - 1:  # sometimes several kills before a reopen
            _index_agrees(home, probe, name, why)
            doctor = run_doctor(get_settings(home=home, workers=1), DoctorOptions(fix=True, only=("index",)))
            assert doctor.status == "ok", (why, json.dumps(doctor.as_dict()))
    assert killed >= len(plan) // 2, f"only {killed} of {len(plan)} runs were killed"
    print(f"index rebuild: {killed} kills in {clock.seconds:.0f}s")


@pytest.mark.slow
@pytest.mark.skipif(
    REPS < 2, reason="milvus-lite takes ~10 s to start per run: part of the soak (FACETRACE_FAULT_REPS>=2)"
)
def test_kill_during_index_migrate_to_milvus(enrolled_home_copy: Path, face_subset: FaceSubset, tmp_path: Path) -> None:
    """``index migrate --to milvus-lite://`` killed at random moments: the FAISS index keeps serving, and
    a rerun completes the copy (idempotent) with exactly the database's templates in Milvus."""
    home = enrolled_home_copy
    _add_synthetic_faces(home, 3000)
    url = f"milvus-lite://{tmp_path}/migrated.db"
    rng = random.Random(SEED + 3)
    name = face_subset.gallery_identities[0]
    for kill in kill_plan(rng, [], n_random=1, delays=(4.0, 14.0)):
        outcome = run_killed(cli("index", "migrate", "--to", url, "--json"), kill, env={"FACETRACE_HOME": str(home)})
        assert outcome.killed or outcome.returncode == 0, outcome.stderr
        _index_agrees(home, face_subset.probe(name), name, f"seed {SEED + 3}, {kill}")
    done = run_killed(cli("index", "migrate", "--to", url, "--json"), Kill(), env={"FACETRACE_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["target_count"] == result["faces"] == len(_face_ids(home / "facetrace.db"))
    assert result["check"]["same_best_hit"] == result["check"]["searched"]
    settings = get_settings(home=home, workers=1, vector_url=url)
    report = run_doctor(settings, DoctorOptions(only=("index",)))
    assert report.status == "ok", json.dumps(report.as_dict())


# -- disk full -----------------------------------------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted in ``tmp_path`` (needs root; skipped otherwise)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system with one file until ``leave`` bytes are free; return the file."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * 65536
        remaining = max(0, free - leave)
        while remaining > 0:
            handle.write(chunk[: min(len(chunk), remaining)])
            remaining -= min(len(chunk), remaining)
    return filler


def test_disk_full_during_enroll(
    small_disk: Path, tmp_path: Path, face_subset: FaceSubset, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC in the middle of an enrollment: one clear error line, a sound database that agrees with the
    index, nothing half-stored, and the same command finishes the job once there is space again."""
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL", "FACETRACE_CALIBRATION_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = small_disk / "home"
    monkeypatch.setenv("FACETRACE_HOME", str(home))
    names = face_subset.other_identities[:10]
    folder = tmp_path / "photos"
    expected = _folder(folder, face_subset, names, per_person=3)
    total = sum(len(v) for v in expected.values())
    assert run_cli("init", "--json").returncode == 0
    filler = _fill(small_disk, leave=160 * 1024)

    failed = run_cli("enroll", folder, *PROVENANCE, "--workers", "1")
    assert failed.returncode != 0
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert lines[0].startswith("error: the disk is full") and "run the same command again" in lines[0], lines
    db = home / "facetrace.db"
    assert sqlite_integrity(db) == ["ok"]
    committed = _check_after_kill(home, expected, "after ENOSPC")  # nothing half-stored counts as enrolled
    assert 0 < committed < total, committed
    assert f"{committed} image(s) were enrolled before it filled" in lines[0]
    # The index file may lag behind (its save may have failed too), never hold anything the database lacks.
    index = run_doctor(get_settings(home=home, workers=1), DoctorOptions(only=("index",))).check("index")
    assert index.status in ("ok", "warn") and index.detail["extra"] == 0, index
    # Reads go on while the disk is full: the gallery opens (its repaired index stays in memory) and searches.
    gallery = Gallery(get_settings(home=home, workers=1))
    try:
        assert len(gallery.index()) == committed
        probe = face_subset.probe(names[0])
        assert gallery.search(probe.read_bytes(), name=probe.name).to_dict()["faces"]
    finally:
        gallery.close()

    filler.unlink()  # space again: the same command finishes the job
    done = run_cli("enroll", folder, *PROVENANCE, "--workers", "1", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["images_skipped"], out["images_enrolled"], out["error_count"]) == (committed, total - committed, 0)
    _check_complete(home, expected, face_subset.probe(names[0]), names[0])


def test_disk_full_error_is_recognised() -> None:
    """The error types a full disk produces (file writes, SQLite, PostgreSQL) all become DiskFullError."""
    import errno

    from sqlalchemy.exc import OperationalError

    from facetrace.errors import DiskFullError, disk_full_error

    assert isinstance(disk_full_error(OSError(errno.ENOSPC, "No space left on device")), DiskFullError)
    assert isinstance(disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded")), DiskFullError)
    sqlite_full = sqlite3.OperationalError("database or disk is full")
    assert isinstance(disk_full_error(OperationalError("INSERT", {}, sqlite_full)), DiskFullError)
    assert disk_full_error(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_error(ValueError("x")) is None
    assert DiskFullError("x").status == 507


def test_crash_during_first_migration_leaves_no_half_made_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the kill harness: a kill -9 during the first migration left some tables and no schema
    revision (SQLite DDL ran outside the transaction), and every later open failed ("table meta already
    exists"). Now the migration is one transaction: all of it or none."""
    from alembic.operations import Operations

    from facetrace.store.db import Database

    url = f"sqlite:///{tmp_path / 'facetrace.db'}"
    create_table = Operations.create_table
    calls = {"n": 0}

    def crash_on_third(self: Operations, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash in the middle of a migration")
        return create_table(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Operations, "create_table", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Database(url)
    with sqlite3.connect(tmp_path / "facetrace.db") as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
    monkeypatch.setattr(Operations, "create_table", create_table)
    db = Database(url)  # the next open migrates from scratch
    assert db.current_revision() == db.head_revision()
    db.dispose()
