"""The upgrade path: a gallery created with the first released schema (Alembic revision 0001, rows
inserted as 0001 defines them) is opened by the current code, migrated to the newest revision with its
data intact, searches as before and its index is rebuilt from the database; a backup taken at 0001
restores to the newest revision; and every migration steps down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from test_backup import _probes, _results

from facetrace.config import get_settings
from facetrace.gallery import Gallery
from facetrace.store.backup import create_backup, restore_backup
from facetrace.store.db import Database, alembic_config
from facetrace.store.names import name_key

if TYPE_CHECKING:
    from conftest import FaceSubset

# The tables and columns of revision 0001, as it defines them.
SCHEMA_0001 = {
    "persons": (
        "id",
        "external_id",
        "name",
        "metadata",
        "source",
        "legal_basis",
        "collected_at",
        "created_at",
        "updated_at",
    ),
    "images": ("id", "person_id", "sha256", "media_path", "original_name", "width", "height", "created_at"),
    "faces": (
        "id",
        "image_id",
        "person_id",
        "box",
        "landmarks",
        "detector",
        "quality",
        "quality_detail",
        "model_id",
        "embedding",
        "created_at",
    ),
    "meta": ("key", "value"),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: the home's SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old-home' / 'facetrace.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _create_0001_gallery(enrolled_home: Path, home: Path, url: str) -> dict[str, int]:
    """Create a gallery at revision 0001 with the enrolled gallery's rows and media; return row counts."""
    old = Database(url, migrate=False)
    old.migrate("0001")
    assert old.current_revision() == "0001"
    source = create_engine(f"sqlite:///{enrolled_home / 'facetrace.db'}")
    counts = {}
    try:
        with source.connect() as src, old.engine.begin() as dst:
            for table, columns in SCHEMA_0001.items():
                names = ", ".join(f'"{c}"' for c in columns)
                rows = [dict(r._mapping) for r in src.execute(text(f"SELECT {names} FROM {table}"))]
                params = ", ".join(f":{c}" for c in columns)
                if rows:
                    dst.execute(text(f"INSERT INTO {table} ({names}) VALUES ({params})"), rows)
                counts[table] = len(rows)
            if old.engine.dialect.name == "postgresql":
                for table in ("persons", "images", "faces"):
                    dst.execute(
                        text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                    )
    finally:
        source.dispose()
        old.dispose()
    shutil.copytree(enrolled_home / "media", home / "media")
    return counts


def test_a_0001_gallery_opens_migrated_and_searches_as_before(
    enrolled_home: Path, enrolled_gallery: Gallery, face_subset: FaceSubset, tmp_path: Path, target_url: str
) -> None:
    home = tmp_path / "old-home"
    home.mkdir(exist_ok=True)
    counts = _create_0001_gallery(enrolled_home, home, target_url)
    assert counts["persons"] == 20 and counts["faces"] == 40
    settings = get_settings(home=home, database_url=target_url, workers=1, calibration_path=None)
    # A backup taken before the upgrade keeps revision 0001 and restores at the newest one.
    archive = tmp_path / "at-0001.tar"
    assert create_backup(settings, archive)["schema_revision"] == "0001"
    expected = _results(enrolled_gallery, _probes(face_subset))

    gallery = Gallery(settings)  # the current code: migrates to the newest revision on open
    try:
        assert gallery.db.current_revision() == gallery.db.head_revision() != "0001"
        stats = gallery.stats()
        assert (stats["persons"], stats["images"], stats["faces"]) == (20, 40, 40)
        assert len(gallery.index()) == 40  # no index file yet: built from the database
        assert _results(gallery, _probes(face_subset)) == expected
        person = gallery.get_person(face_subset.gallery_identities[0])
        assert person["retain_until"] is None and len(person["images"]) == 2
        with gallery.db.engine.connect() as conn:  # 0006 filled the name keys of the old rows
            keys = dict(conn.execute(text("SELECT name, name_key FROM persons")).all())
        assert len(keys) == 20 and all(key and key == name_key(name) for name, key in keys.items())
    finally:
        gallery.close()

    restored = tmp_path / "restored"
    result = restore_backup(archive, restored)
    assert result["from_revision"] == "0001" and result["schema_revision"] == Database(target_url).head_revision()
    again = Gallery(get_settings(home=restored, workers=1, calibration_path=None))
    try:
        assert _results(again, _probes(face_subset)) == expected
    finally:
        again.close()


def test_every_migration_steps_down_and_up(
    enrolled_home: Path, enrolled_gallery: Gallery, face_subset: FaceSubset, tmp_path: Path, target_url: str
) -> None:
    from alembic import command

    home = tmp_path / "old-home"
    home.mkdir(exist_ok=True)
    _create_0001_gallery(enrolled_home, home, target_url)
    db = Database(target_url)  # to the newest revision
    script = ScriptDirectory.from_config(alembic_config(target_url))
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert chain[0] == "0001" and db.current_revision() == chain[-1]

    def step(direction: str, revision: str) -> None:
        with db.engine.begin() as conn:
            cfg = alembic_config(target_url)
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
        assert db.current_revision() == {"base": None, "head": chain[-1]}.get(revision, revision)

    def persons() -> Any:
        with db.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM persons")).scalar()

    for revision in reversed(chain[:-1]):  # down to 0001, one step at a time: the gallery's rows stay
        step("downgrade", revision)
        assert persons() == 20
    step("downgrade", "base")
    with db.engine.connect() as conn:
        assert not [t for t in db.engine.dialect.get_table_names(conn) if t != "alembic_version"]
    step("upgrade", "head")
    db.dispose()
    # Up again from an empty schema: a new gallery works.
    gallery = Gallery(get_settings(home=tmp_path / "fresh", database_url=target_url, workers=1, calibration_path=None))
    try:
        assert gallery.enroll(face_subset.enroll_items(face_subset.gallery_identities[:2])).images_enrolled == 4
    finally:
        gallery.close()
