"""``facetrace doctor``: each check passes on a sound data home and fails, clearly, on what it is meant to
find (damaged or stale index, missing or altered photos, unreachable SMTP, wrong schema revision, low disk
space, wrong calibration, missing model files, bad settings); ``--fix`` repairs what can be repaired."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller

from facetrace.config import Settings, get_settings
from facetrace.index.faiss_index import FaissIndex
from facetrace.ops.doctor import DoctorOptions, DoctorReport, run_doctor

RunCli = Callable[..., Any]
# Disk thresholds off, so that a full shared disk does not decide these tests.
NO_DISK = {"disk_warn_percent": 0.0, "disk_fail_percent": 0.0, "disk_warn_mb": 0}


def _settings(home: Path, **overrides: Any) -> Settings:
    return get_settings(home=home, workers=1, **overrides)


def _doctor(home: Path, *only: str, settings: Settings | None = None, **options: Any) -> DoctorReport:
    return run_doctor(
        settings or _settings(home), DoctorOptions(only=only or None, actor="test", **{**NO_DISK, **options})
    )


def _index_file(home: Path) -> Path:
    return next((home / "index").glob("*.faiss"))


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "facetrace.db", timeout=30)


def _face_ids(home: Path) -> list[int]:
    with _db(home) as conn:
        return sorted(r[0] for r in conn.execute("SELECT id FROM faces WHERE person_id IS NOT NULL"))


def _first_image(home: Path) -> tuple[int, int, str]:
    with _db(home) as conn:
        return conn.execute("SELECT id, person_id, media_path FROM images ORDER BY id LIMIT 1").fetchone()


def test_sound_home_is_all_ok_and_cli_reports_it(enrolled_home_copy: Path, run_cli: RunCli) -> None:
    report = _doctor(enrolled_home_copy)
    assert report.status == "ok" and report.exit_code == 0, report.as_dict()
    names = [c.name for c in report.checks]
    assert names == ["config", "disk", "database", "models", "calibration", "index", "media", "outbox", "smtp"]
    assert report.check("smtp").status == "skip"  # nothing configured, no notifications
    assert report.check("index").detail["vectors_checked"] == 40  # a gallery this small: every template

    done = run_cli("doctor", "--json", "--disk-warn-percent", "0", "--disk-fail-percent", "0", "--disk-warn-mb", "0")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "ok" and {c["name"] for c in out["checks"]} >= {"index", "media", "models"}
    table = run_cli("doctor", "--check", "index", "--check", "database")
    assert table.returncode == 0 and "index holds the database's 40 template(s)" in table.stdout


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no_sidecar", "flipped_vectors"])
def test_damaged_index_is_found_and_rebuilt(enrolled_home_copy: Path, damage: str) -> None:
    home = enrolled_home_copy
    path = _index_file(home)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(data))
    elif damage == "no_sidecar":
        path.with_suffix(".json").unlink()
    else:  # bit rot inside the vectors: the file still loads, its ids are right, its templates are not
        for offset in range(len(data) // 3, len(data) // 3 + 600):
            data[offset] ^= 0x5A
        path.write_bytes(data)
    found = _doctor(home, "index").check("index")
    assert found.status == "fail", found
    assert found.detail["problem"] == ("vectors" if damage == "flipped_vectors" else "corrupt")
    assert "--fix" in found.message or "rebuilt from the database" in found.message

    fixed = _doctor(home, "index", fix=True).check("index")
    assert fixed.status == "ok" and fixed.fixed, fixed
    index = FaissIndex.load(path)
    assert sorted(index.ids().tolist()) == _face_ids(home)


def test_index_out_of_line_with_the_database(enrolled_home_copy: Path, run_cli: RunCli) -> None:
    """An index file holding an erased template is a failure (the face could still be found); one lacking
    templates (e.g. after a crash before the save) is a warning; --fix repairs both."""
    home = enrolled_home_copy
    with _db(home) as conn:  # erase one face behind the index's back
        conn.execute("PRAGMA foreign_keys = ON")
        erased = conn.execute("SELECT id FROM faces ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM faces WHERE id = ?", (erased,))
    extra = _doctor(home, "index").check("index")
    assert extra.status == "fail" and extra.detail["extra"] == 1, extra

    index = FaissIndex.load(_index_file(home))
    index.remove(np.array(_face_ids(home)[:3]))  # and three templates that never reached the file
    index.save()
    done = run_cli("doctor", "--check", "index", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["checks"][0]["detail"]["missing"] == 3

    fixed = run_cli("doctor", "--check", "index", "--fix", "--json")
    assert fixed.returncode == 0, fixed.stdout
    assert sorted(FaissIndex.load(_index_file(home)).ids().tolist()) == _face_ids(home)


def test_missing_and_altered_photos_are_reported_recorded_and_quarantined(enrolled_home_copy: Path) -> None:
    home = enrolled_home_copy
    media = home / "media"
    with _db(home) as conn:
        (lost_id, lost_person, lost_rel), (bad_id, bad_person, bad_rel) = conn.execute(
            "SELECT id, person_id, media_path FROM images ORDER BY id LIMIT 2"
        ).fetchall()
    (media / lost_rel).unlink()
    with open(media / bad_rel, "ab") as handle:
        handle.write(b"tampered")
    stale = media / "ab" / "cd" / ("ab" * 32 + ".jpg")  # left by an interrupted enrollment
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    (media / ".tmp-abc").write_bytes(b"partial")

    report = _doctor(home, "media", full_media=True).check("media")
    assert report.status == "fail", report
    assert f"image {lost_id} of person {lost_person}" in report.message
    assert report.detail["missing"] == [{"image_id": lost_id, "person_id": lost_person, "path": lost_rel}]
    assert report.detail["altered"] == [{"image_id": bad_id, "person_id": bad_person, "path": bad_rel}]
    assert report.detail["unreferenced_files"] == 1 and report.detail["temporary_files"] == 1

    # A young unreferenced file may belong to an enrollment in progress: kept.
    _doctor(home, "media", fix=True, full_media=True)
    assert stale.exists()
    fixed = _doctor(home, "media", fix=True, full_media=True, orphan_min_age_s=0).check("media")
    assert not stale.exists() and not (media / ".tmp-abc").exists()
    assert (media / ".quarantine" / bad_rel).read_bytes().endswith(b"tampered")  # kept aside, not deleted
    # Known now: a warning (the templates still search; the photos need a backup), not a failure.
    assert fixed.status == "warn" and fixed.detail["missing_count"] == 2 and fixed.detail["missing_recorded"] == 2
    with _db(home) as conn:
        events = conn.execute(
            "SELECT action, records FROM audit_events WHERE action LIKE 'media.%' ORDER BY id"
        ).fetchall()
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 40  # no record deleted
    assert [(a, json.loads(r)) for a, r in events] == [
        ("media.altered", [f"image:{bad_id}", f"person:{bad_person}"]),
        ("media.missing", [f"image:{lost_id}", f"person:{lost_person}"]),
    ]  # once each, though --fix ran twice

    # The templates are in the database: the gallery still searches, and finds the person.
    from facetrace.gallery import Gallery

    gallery = Gallery(_settings(home))
    try:
        assert len(gallery.index()) == 40
    finally:
        gallery.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Inbox:
    """An aiosmtpd handler that counts messages."""

    received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received += 1
        return "250 OK"


def test_smtp_reachable_and_unreachable(enrolled_home_copy: Path) -> None:
    home = enrolled_home_copy
    closed = _free_port()  # nothing listens there
    down = _doctor(home, "smtp", settings=_settings(home, smtp_host="127.0.0.1", smtp_port=closed)).check("smtp")
    assert down.status == "fail" and f"127.0.0.1:{closed}" in down.message, down

    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        up = _doctor(home, "smtp", settings=_settings(home, smtp_host="127.0.0.1", smtp_port=port))
    finally:
        controller.stop()
    assert up.check("smtp").status == "ok" and inbox.received == 0  # greeted, nothing sent


@pytest.mark.parametrize("revision", ["0003", "9999"])
def test_schema_revision_behind_or_unknown(enrolled_home_copy: Path, revision: str) -> None:
    home = enrolled_home_copy
    with _db(home) as conn:
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    found = _doctor(home, "database").check("database")
    assert found.detail["revision"] == revision and found.detail["head"] == head
    if revision == "9999":
        assert found.status == "fail" and "unknown to this facetrace" in found.message
        return
    assert found.status == "warn" and "behind" in found.message
    with _db(home) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (head,))
    assert _doctor(home, "database").check("database").status == "ok"


def test_schema_behind_is_migrated_by_fix(tmp_home: Path) -> None:
    from facetrace.store.db import Database

    db = Database(f"sqlite:///{tmp_home / 'facetrace.db'}", migrate=False)
    db.migrate("0003")
    db.dispose()
    fixed = _doctor(tmp_home, "database", fix=True).check("database")
    assert fixed.status == "ok" and fixed.fixed and fixed.fixed[0].startswith("migrated the schema"), fixed


def test_low_disk_space_thresholds(enrolled_home_copy: Path, run_cli: RunCli) -> None:
    warn = _doctor(enrolled_home_copy, "disk", disk_warn_percent=100.0).check("disk")
    assert warn.status == "warn" and "under 100.0%" in warn.message
    fail = _doctor(enrolled_home_copy, "disk", disk_fail_percent=100.0).check("disk")
    assert fail.status == "fail" and "writes will fail" in fail.message
    done = run_cli("doctor", "--check", "disk", env={"FACETRACE_DOCTOR_DISK_WARN_PERCENT": "100"})
    assert done.returncode == 1 and "warn" in done.stdout


def test_calibration_of_another_model(enrolled_home_copy: Path, tmp_path: Path) -> None:
    from facetrace.gallery.calibration import Calibration

    calibration = Calibration.load().to_dict()
    calibration["model_id"] = "some-other-model"
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration))
    found = _doctor(enrolled_home_copy, "calibration", settings=_settings(enrolled_home_copy, calibration_path=path))
    assert found.check("calibration").status == "warn"
    assert "some-other-model" in found.check("calibration").message


def test_missing_model_file(enrolled_home_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import facetrace.vision.models as models
    from facetrace.errors import ConfigError

    real = models.model_path

    def without_landmarks(name: str) -> Path:
        if name.startswith("shape_predictor_68"):
            raise ConfigError(f"model file {name} is missing from face_recognition_models")
        return real(name)

    monkeypatch.setattr(models, "model_path", without_landmarks)
    found = _doctor(enrolled_home_copy, "models").check("models")
    assert found.status == "fail" and "shape_predictor_68_face_landmarks.dat" in found.message


def test_bad_settings(enrolled_home_copy: Path, run_cli: RunCli) -> None:
    found = _doctor(enrolled_home_copy, settings=_settings(enrolled_home_copy, policy_fpir=2.0))
    assert found.check("config").status == "fail" and "FACETRACE_POLICY_FPIR" in found.check("config").message
    assert found.check("index").status == "skip"  # nothing else is judged on a configuration that cannot work
    done = run_cli("doctor", "--json", env={"FACETRACE_WORKERS": "many"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    out = json.loads(done.stdout)
    assert out["checks"][0]["status"] == "fail" and "FACETRACE_WORKERS" in out["checks"][0]["message"]
    unknown = run_cli("doctor", "--check", "nonsense")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown check")


def test_damaged_vectors_are_rebuilt_when_the_gallery_opens(
    enrolled_home_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that loads, with the right ids but damaged templates, is noticed on open (a sample is compared
    with the database) and rebuilt from the database: searches do not run on garbage."""
    from facetrace.gallery import Gallery

    home = enrolled_home_copy
    path = _index_file(home)
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 10, len(data) * 8 // 10):  # most of the vectors
        data[offset] ^= 0x5A
    path.write_bytes(data)
    gallery = Gallery(_settings(home))
    try:
        with caplog.at_level("WARNING"):
            index = gallery.index()
        assert "holds damaged templates" in caplog.text
        ids = np.array(_face_ids(home))
        assert sorted(index.ids().tolist()) == ids.tolist()
        assert np.allclose(index.vectors(ids), gallery.stored_templates(ids), atol=1e-6)
    finally:
        gallery.close()
    assert _doctor(home, "index").check("index").status == "ok"  # and the file was saved sound


def test_damaged_sqlite_file(enrolled_home_copy: Path) -> None:
    home = enrolled_home_copy
    with _db(home) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(home / "facetrace.db", "r+b") as handle:  # scribble over pages in the middle of the file
        handle.seek(size * (pages // 2))
        handle.write(b"\xa5" * size * 3)
    report = _doctor(home, "database", "index", "media")
    database = report.check("database")
    assert database.status == "fail", database
    assert "restore the last backup" in database.message or "cannot use the database" in database.message
    assert report.check("index").status == report.check("media").status == "skip"


def test_database_that_does_not_answer(tmp_home: Path) -> None:
    settings = _settings(tmp_home, database_url="postgresql+psycopg://facetrace@127.0.0.1:9/none?connect_timeout=2")
    report = _doctor(tmp_home, "database", "index", settings=settings)
    assert report.check("database").status == "fail"
    assert "cannot use the database" in report.check("database").message
    assert report.check("index").status == "skip" and report.exit_code == 2
