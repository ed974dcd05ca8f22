"""``facetrace backup`` / ``facetrace restore``: a round trip gives the same gallery (rows, media files,
audit trail, identical search results), also across SQLite and PostgreSQL; a corrupt member, an unsafe
member name or a non-empty target is refused with a clear error and nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from facetrace.config import get_settings
from facetrace.gallery import Gallery
from facetrace.store.audit import append_event, verify_chain
from facetrace.store.backup import BackupError, create_backup, restore_backup, verify_archive
from facetrace.store.db import Database

if TYPE_CHECKING:
    from conftest import FaceSubset

RunCli = Callable[..., CompletedProcess[str]]
POSTGRES_ENV = "FACETRACE_TEST_POSTGRES_URL"


def _results(gallery: Gallery, probes: list[Path]) -> list[Any]:
    out = []
    for probe in probes:
        result = gallery.search(probe.read_bytes(), name=probe.name, top_k=5).to_dict()
        out.append(
            [
                [(c["person"]["external_id"], c["score"], c["match"], c["fpir"]) for c in f["candidates"]]
                for f in result["faces"]
            ]
        )
        out.append(result["policy"])
    return out


def _probes(face_subset: FaceSubset) -> list[Path]:
    return [face_subset.probe(n) for n in face_subset.gallery_identities[:3]] + [
        face_subset.probe(face_subset.other_identities[0])
    ]


@pytest.fixture(scope="module")
def source_home(enrolled_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the enrolled gallery with an audit event and a calibration file (module-wide; read only)."""
    home = tmp_path_factory.mktemp("backup-source") / "home"
    shutil.copytree(enrolled_home, home, ignore=shutil.ignore_patterns("*-shm"))
    shutil.copyfile(
        Path(__file__).resolve().parents[1] / "facetrace" / "gallery" / "calibration_default.json",
        home / "calibration.json",
    )
    database = Database(f"sqlite:///{home / 'facetrace.db'}")
    with database.session() as session:
        append_event(session, actor="cli:tester", action="person.view", records=["person:1"], source="cli")
    database.dispose()
    return home


@pytest.fixture(scope="module")
def archive(source_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compressed backup of ``source_home``."""
    out = tmp_path_factory.mktemp("backups") / "gallery.tar.gz"
    result = create_backup(get_settings(home=source_home, database_url=None, calibration_path=None), out)
    assert result["rows"]["faces"] == 40 and result["rows"]["persons"] == 20 and result["missing_media"] == []
    assert result["schema_revision"] == Database(f"sqlite:///{source_home / 'facetrace.db'}").head_revision()
    assert out.is_file() and not list(out.parent.glob(".*partial"))
    return out


def test_round_trip_sqlite(
    archive: Path,
    source_home: Path,
    enrolled_gallery: Gallery,
    face_subset: FaceSubset,
    tmp_path: Path,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command writes the same members as the function (the archive of the fixture), and refuses to
    # overwrite a file.
    monkeypatch.setenv("FACETRACE_HOME", str(source_home))
    by_cli = tmp_path / "cli.tar"
    done = run_cli("backup", by_cli, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == json.loads(json.dumps(_manifest(archive)["rows"]))
    assert set(_manifest(by_cli)["members"]) == set(_manifest(archive)["members"])
    again = run_cli("backup", by_cli)
    assert again.returncode == 1 and "exists already" in again.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["format"] == "facetrace-backup/1" and manifest["facetrace_version"]
    assert set(manifest["members"]) == set(names) - {"manifest.json"}
    assert sum(n.startswith("media/") for n in names) == 40
    assert "home/calibration.json" in names and any(n.startswith("home/index/") for n in names)
    assert not any("facetrace.db" in n for n in names)
    with tarfile.open(archive) as tar:
        for name, info in manifest["members"].items():
            data = tar.extractfile(name).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["size"]

    home = tmp_path / "restored"
    done = run_cli("restore", archive, "--home", home, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rows"]["faces"] == 40 and result["index"]["count"] == 40
    restored = Gallery(get_settings(home=home, workers=1, calibration_path=None))
    try:
        assert _results(restored, _probes(face_subset)) == _results(enrolled_gallery, _probes(face_subset))
        src_media = sorted(
            p.relative_to(enrolled_gallery.media.root) for p in enrolled_gallery.media.root.rglob("*.jpg")
        )
        assert sorted(p.relative_to(restored.media.root) for p in restored.media.root.rglob("*.jpg")) == src_media
        with restored.db.sessions() as session:
            assert verify_chain(session) == []
            actions = [r[0] for r in session.execute(text("SELECT action FROM audit_events ORDER BY id"))]
        assert actions == ["person.view", "backup.restore"]  # backup events stay in the source's trail
        assert restored.db.current_revision() == restored.db.head_revision()
    finally:
        restored.close()
    # Into a home that is not empty: refused, nothing changed.
    again = run_cli("restore", archive, "--home", home, "--json")
    assert again.returncode == 1 and "not empty" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def _manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        return dict(json.loads(tar.extractfile("manifest.json").read()))  # type: ignore[union-attr]


def _rewrite(
    archive: Path, out: Path, change: Callable[[tarfile.TarInfo, bytes], tuple[tarfile.TarInfo, bytes] | None]
) -> Path:
    """Copy ``archive`` to ``out`` (uncompressed), passing each member through ``change``."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            changed = change(member, data)
            if changed is not None:
                info, body = changed
                info.size = len(body)
                dst.addfile(info, io.BytesIO(body))
    return out


def test_a_corrupt_member_is_refused_and_nothing_is_written(archive: Path, tmp_path: Path, run_cli: RunCli) -> None:
    def flip(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if info.name.startswith("media/") and not flip.done:  # type: ignore[attr-defined]
            flip.done = True  # type: ignore[attr-defined]
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        return info, data

    flip.done = False  # type: ignore[attr-defined]
    bad = _rewrite(archive, tmp_path / "bad.tar", flip)
    home = tmp_path / "never"
    done = run_cli("restore", bad, "--home", home)
    assert done.returncode == 1 and "corrupt" in done.stderr and "Traceback" not in done.stderr
    assert not home.exists()
    # A truncated archive too.
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(BackupError):
        restore_backup(cut, home)
    assert not home.exists()


@pytest.mark.parametrize(
    "evil",
    ["../escaped.txt", "/etc/absolute.txt", "media/../../escaped.txt", "elsewhere/file.txt", "symlink"],
)
def test_unsafe_members_are_refused(archive: Path, tmp_path: Path, evil: str) -> None:
    def add_evil(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if info.name != "manifest.json":
            return info, data
        manifest = json.loads(data)
        name = "home/templates/link.txt" if evil == "symlink" else evil
        manifest["members"][name] = {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}
        return info, json.dumps(manifest).encode()

    bad = _rewrite(archive, tmp_path / "evil.tar", add_evil)
    with tarfile.open(bad, "a") as tar:
        if evil == "symlink":
            link = tarfile.TarInfo("home/templates/link.txt")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        else:
            info = tarfile.TarInfo(evil)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    home = tmp_path / "target"
    with pytest.raises(BackupError, match="refused"):
        verify_archive(bad)
    with pytest.raises(BackupError, match="refused"):
        restore_backup(bad, home)
    assert not home.exists() and not (tmp_path / "escaped.txt").exists()


def test_round_trip_through_postgresql(
    archive: Path,
    enrolled_gallery: Gallery,
    face_subset: FaceSubset,
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite archive -> PostgreSQL; then a backup of the PostgreSQL gallery (taken while a gallery on it
    # is open) -> SQLite again. Every step searches the same.
    pg_home = tmp_path / "pg-home"
    result = restore_backup(archive, pg_home, database_url=postgres_url)
    assert result["rows"]["faces"] == 40 and result["database"].startswith("postgresql")
    expected = _results(enrolled_gallery, _probes(face_subset))
    pg_settings = get_settings(home=pg_home, database_url=postgres_url, workers=1, calibration_path=None)
    pg = Gallery(pg_settings)
    try:
        assert _results(pg, _probes(face_subset)) == expected
        with pg.db.sessions() as session:
            assert verify_chain(session) == []
        # New rows get fresh ids (the sequences were moved past the restored ones).
        newcomer = face_subset.other_identities[1]
        assert pg.enroll(face_subset.enroll_items([newcomer])).images_enrolled == 2
        pg.delete_person(newcomer)
        second = tmp_path / "from-pg.tar"
        create_backup(pg_settings, second)
    finally:
        pg.close()
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(second, tmp_path / "other-home", database_url=postgres_url)
    assert not (tmp_path / "other-home").exists()
    back = tmp_path / "back-home"
    restore_backup(second, back)
    sqlite = Gallery(get_settings(home=back, workers=1, calibration_path=None))
    try:
        assert _results(sqlite, _probes(face_subset)) == expected
    finally:
        sqlite.close()
