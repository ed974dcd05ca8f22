"""Contact details and notifications encrypted at rest, on SQLite and PostgreSQL: stored as ciphertext
(long values fit: migration 0005), read back and sent in plaintext, rotated with the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text
from wftest import Inbox, face_images, identify, make_world

from facetrace.config import Settings
from facetrace.crypto import generate_key, key_id, key_id_of, read_key_file, write_key_file
from facetrace.gallery import EnrollItem
from facetrace.store.accounts import User
from facetrace.store.crypto import attach_keyring
from facetrace.store.models import Face, Person
from facetrace.store.rotation import pending, rotate
from facetrace.store.schema import encrypted_columns
from facetrace.workflow import Workflow

LONG_EMAIL = "a" * 60 + "." + "b" * 60 + "@" + "family-of-the-missing-person." * 6 + "example"  # 311 characters
FAMILY = [
    {"name": "Iryna Kovalenko", "relation": "sister", "email": "iryna@family.example", "language": "uk"},
    {"name": "Taras " + "Kovalenko-" * 28, "relation": "brother", "email": LONG_EMAIL, "language": "en"},
    {"name": "Bohdan Kovalenko", "relation": "father", "phone": "+380 67 000 0000 ext. 12345678901234567890"},
]


@pytest.fixture()
def key_files(tmp_path: Path) -> list[Path]:
    paths = []
    for n in (1, 2):
        write_key_file(tmp_path / f"k{n}.key", generate_key())
        paths.append(tmp_path / f"k{n}.key")
    return paths


@pytest.fixture()
def wf_settings(wf_settings: Settings, key_files: list[Path]) -> Settings:
    """The workflow's settings with an encryption key."""
    return wf_settings.model_copy(update={"key_file": key_files[0]})


def test_contacts_and_notifications_are_encrypted(
    wf: Workflow, users: dict[str, User], smtp: Inbox, key_files: list[Path], backend: str
) -> None:
    assert wf.gallery.settings.encrypted
    world = make_world(wf, users, contacts=FAMILY)
    drafted = identify(wf, users, world)["notifications"]["drafted"]
    assert len(drafted) == 2
    for nid in drafted:
        wf.notifications.approve_notification(users["maria"], nid)
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 2
    assert sorted(r for e in smtp.envelopes for r in e.rcpt_tos) == sorted(["iryna@family.example", LONG_EMAIL])
    (sister,) = smtp.to("iryna@family.example")
    assert "Iryna Kovalenko" in sister.get_body(preferencelist=("plain",)).get_content()

    report = wf.reports.get_report(users["olena"], world.report["report"]["id"])
    assert [c["email"] for c in report["contacts"]] == [c.get("email") for c in FAMILY]
    assert report["contacts"][2]["phone"] == FAMILY[2]["phone"]
    note = wf.notifications.get_notification(users["olena"], drafted[0])
    assert note["recipient"] == "iryna@family.example" and "Iryna Kovalenko" in note["body"]

    def raw_values() -> list[str]:
        values = []
        with wf.db.engine.connect() as conn:
            for column in encrypted_columns():
                if column.table in ("contacts", "notifications"):
                    sql = f"SELECT {column.column} FROM {column.table} WHERE {column.column} IS NOT NULL"
                    values += [str(v) for (v,) in conn.execute(text(sql))]
        return values

    stored = raw_values()
    assert len(stored) == 3 + 2 + 1 + 2 * 3  # names, e-mails, a phone; two (recipient, subject, body)
    assert all(v.startswith("fte1:") for v in stored)
    for secret in ("iryna@family", "Iryna", LONG_EMAIL[:20], "+380 67"):
        assert not any(secret in v for v in stored)
    if backend == "sqlite":
        wf.db.purge_deleted()
        database = wf.gallery.settings.home / "facetrace.db"
        data = database.read_bytes()
        for secret in (b"iryna@family.example", LONG_EMAIL.encode(), b"+380 67 000 0000"):
            assert secret not in data

    # Rotation to the second key: everything moves, and reads need only the new key.
    new = key_files[1]
    keyring = wf.gallery.settings.model_copy(update={"key_file": new}).keyring.plus(wf.db.keyring)
    settings = wf.gallery.settings
    outcome = rotate(wf.db, keyring, media_dir=settings.media_dir, index_dir=settings.index_dir, actor="test")
    assert outcome.columns["contacts.email"]["resealed"] == 2
    assert outcome.columns["notifications.body"]["resealed"] == 2
    only_new = settings.model_copy(update={"key_file": new}).keyring
    assert sum(pending(wf.db, only_new).values()) == 0
    assert raw_values() != stored and all(v.startswith("fte1:") for v in raw_values())
    attach_keyring(wf.db.engine, only_new)
    again = wf.reports.get_report(users["olena"], world.report["report"]["id"])
    assert [c["email"] for c in again["contacts"]] == [c.get("email") for c in FAMILY]
    assert key_id(read_key_file(new)).hex() == outcome.key_id


def test_templates_are_encrypted_on_each_backend(wf: Workflow, key_files: list[Path]) -> None:
    gallery = wf.gallery
    first, second = face_images("Ashanti")[:2]
    outcome = gallery.enroll([EnrollItem("P-1", "Ashanti", [first], "test", "consent", {"contacts": [FAMILY[0]]})])
    assert outcome.images_enrolled == 1, outcome.errors
    with wf.db.engine.connect() as conn:
        (raw,) = conn.execute(text("SELECT embedding FROM faces")).one()
        (meta,) = conn.execute(text("SELECT metadata FROM persons")).one()
    assert key_id_of(bytes(raw)) == key_id(read_key_file(key_files[0]))
    assert "iryna" not in str(meta) and str(meta).strip('"').startswith("fte1:")
    (template,) = [v for _, _, v in gallery.iter_faces()]
    assert template.tobytes() not in bytes(raw) and template.shape == (128,)
    assert gallery.get_person("P-1")["metadata"]["contacts"] == [FAMILY[0]]
    best = gallery.search(second.read_bytes(), top_k=1).to_dict()["faces"][0]["candidates"][0]
    assert best["person"]["external_id"] == "P-1" and best["similarity"] > 0.9, best

    settings = gallery.settings
    new = settings.model_copy(update={"key_file": key_files[1]}).keyring
    outcome = rotate(
        wf.db, new.plus(wf.db.keyring), media_dir=settings.media_dir, index_dir=settings.index_dir, actor="test"
    )
    assert outcome.columns["persons.metadata"]["resealed"] == 1 and outcome.columns["faces.embedding"]["resealed"] == 1
    assert outcome.media == {"resealed": 1, "current": 0} and outcome.index_files["resealed"] == 1
    assert sum(pending(wf.db, new).values()) == 0
    attach_keyring(wf.db.engine, new)
    with wf.db.sessions() as session:
        person = session.execute(select(Person)).scalar_one()
        assert person.attributes == {"contacts": [FAMILY[0]]}
        (face,) = session.execute(select(Face)).scalars()
        assert np.array_equal(face.vector(), template)
