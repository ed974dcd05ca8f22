"""Retention and erasure end to end, on real faces, on SQLite + FAISS, PostgreSQL and milvus-lite.

A report (two reference photos, two contacts) is identified to a case, the family is notified, and a
stored job result names the report's person. Then the report's retention date passes and
``apply_retention`` erases it: the report's rows, templates, index entries (FAISS file / Milvus
collection, by id and by vector), media files and job-result candidates are gone, the regenerated case
PDF no longer names the person, a search with the erased photo returns no candidate for it, the
audit trail says that the erasure happened (and nothing personal), and on SQLite no byte of an erased
template, name or e-mail address is left in any file of the data home. A case is then erased the same
way. Along the way: pending notifications block erasure (unless forced), dry runs erase nothing,
reruns are harmless, and an erasure interrupted after its commit is finished by the next run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fpdf import FPDF
from sqlalchemy import func, select, text
from test_workflow_api import P, _error, _ok, api  # noqa: F401  (api is a fixture)
from test_workflow_cli import cli  # noqa: F401  (a fixture)
from wftest import Inbox, face_images, photo

from facetrace.config import Settings
from facetrace.errors import PermissionDenied
from facetrace.gallery import Gallery, read_manifest
from facetrace.gallery.quality_bands import quality_band
from facetrace.index.faiss_index import FaissIndex
from facetrace.index.milvus_index import MilvusIndex
from facetrace.store.accounts import AuditEvent, User
from facetrace.store.audit import verify_chain
from facetrace.store.db import Database
from facetrace.store.jobs import Job
from facetrace.store.models import Face, Image, Meta, Person
from facetrace.store.workflow_models import Case, Contact, Identification, Lead, Notification, Report
from facetrace.web.pdf import build_case_pdf
from facetrace.workflow import Workflow
from facetrace.workflow.erasure import ERASED_TABLES, PENDING_PREFIX, Eraser, ErasureBlocked
from facetrace.workflow.retention import apply_retention, due_records

REPORTS = ["Andrew_Weissmann", "Kelly_Clarkson", "Michael_Jordan"]
SOUGHT = "Kelly_Clarkson"
FAMILY = [
    {"name": "Jeanne Taylor", "relation": "mother", "email": "jeanne@family.example", "language": "en"},
    {"name": "Jason Clarkson", "relation": "brother", "email": "jason@family.example", "language": "en"},
]
LATER = datetime(2031, 1, 1, tzinfo=UTC)


def _setup(wf: Workflow, users: dict[str, User]) -> dict[str, Any]:
    reports = {}
    for name in REPORTS:
        reports[name] = wf.reports.create_report(
            users["ivan"],
            name=name.replace("_", " "),
            reported_by="family, by phone",
            source="tracing request form",
            legal_basis="consent of the family",
            consent=True,
            contacts=FAMILY if name == SOUGHT else [],
            photos=[photo(p) for p in face_images(name)[:2]],
            retain_until="2030-06-30" if name == SOUGHT else None,
        )["report"]
    assert reports[SOUGHT]["retain_until"] == "2030-06-30T00:00:00+00:00"
    case = wf.cases.create_case(
        users["ivan"],
        condition="deceased",
        found_place="Irpin",
        photos=[photo(face_images(SOUGHT)[-1])],
        retain_until="2030-12-31T12:00:00+02:00",
    )
    assert case["case"]["retain_until"] == "2030-12-31T10:00:00+00:00"
    (lead_id,) = case["matching"]["leads"]["created"]
    wf.reviews.add_evidence(users["olena"], lead_id, kind="dental", description="Dental records match")
    wf.reviews.review_lead(users["olena"], lead_id, decision="confirm", rationale="Face and tattoo match")
    done = wf.reviews.review_lead(users["petro"], lead_id, decision="confirm", rationale="Independent check")
    assert done["identification"]["status"] == "confirmed"
    return {"reports": reports, "case": case["case"], "lead_id": lead_id, "drafts": done["notifications"]["drafted"]}


def _gallery_rows(wf: Workflow, person_id: int) -> tuple[list[int], list[bytes], list[str]]:
    with wf.db.sessions() as s:
        faces = s.execute(select(Face.id, Face.embedding).where(Face.person_id == person_id)).all()
        media = list(s.execute(select(Image.media_path).where(Image.person_id == person_id)).scalars())
    return [int(f) for f, _ in faces], [bytes(e) for _, e in faces], media


def _pdf_text(wf: Workflow, user: User, reference: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The text set in a freshly generated case PDF (exports are generated on request, never stored)."""
    seen: list[str] = []
    original = FPDF.normalize_text

    def spy(self: FPDF, txt: str) -> str:
        seen.append(str(txt))
        return str(original(self, txt))

    monkeypatch.setattr(FPDF, "normalize_text", spy)
    service = SimpleNamespace(settings=wf.settings, gallery=wf.gallery, db=wf.db)
    data, _, _ = build_case_pdf(wf, service, user, reference)  # type: ignore[arg-type]
    monkeypatch.setattr(FPDF, "normalize_text", original)
    assert data.startswith(b"%PDF")
    return "\n".join(seen)


def _candidates(gallery: Gallery, probe: Path) -> set[str]:
    result = gallery.search(probe.read_bytes(), name=probe.name, top_k=10).to_dict()
    return {c["person"]["external_id"] for f in result["faces"] for c in f["candidates"]}


def _erasure_end_to_end(wf: Workflow, users: dict[str, User], smtp: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    world = _setup(wf, users)
    report = world["reports"][SOUGHT]
    case_ref = world["case"]["reference"]
    person_id = report["person_id"]
    external_id = f"report:{report['reference']}"
    face_ids, templates, media = _gallery_rows(wf, person_id)
    assert len(face_ids) == 2 and all((wf.gallery.media.root / m).is_file() for m in media)
    probe = face_images(SOUGHT)[-1]
    assert external_id in _candidates(wf.gallery, probe)
    case_file = _pdf_text(wf, users["olena"], case_ref, monkeypatch)
    assert "Kelly Clarkson" in case_file
    # The case face's quality band, and what it means in plain words, beside its quality.
    case_face = wf.reviews.get_lead(users["olena"], world["lead_id"], audited=False)["case_face"]
    band = quality_band(case_face["quality"], min_quality=wf.settings.min_quality)
    assert f"quality {case_face['quality']:.0f}, {band.label}. {band.advice}" in case_file
    assert f"case face (probe), quality {case_face['quality']:.0f}, {band.label}" in case_file
    # A stored job result (as a video search job keeps) that names the person.
    search = wf.gallery.search(probe.read_bytes(), name=probe.name, top_k=5).to_dict()
    with wf.db.session() as s:
        s.add(Job(kind="search_video", state="done", params={}, errors=[], result={"tracks": search["faces"]}))

    # Not due yet; then due, but the drafted notifications block it.
    assert due_records(wf.gallery, datetime(2030, 6, 29, tzinfo=UTC)) == []
    dry = apply_retention(wf.gallery, now=LATER, dry_run=True)
    assert [(d["kind"], d["id"]) for d in dry["due"]] == [
        ("report", report["id"]),
        ("case", world["case"]["id"]),
        ("person", person_id),
    ]
    assert dry["erased"] == [] and len(_gallery_rows(wf, person_id)[0]) == 2
    blocked = apply_retention(wf.gallery, now=LATER, actor="cli:operator", source="cli")
    assert blocked["erased"] == [] and len(blocked["blocked"]) == 3
    assert "notification" in blocked["blocked"][0]["reason"] and "is draft" in blocked["blocked"][0]["reason"]
    with pytest.raises(PermissionDenied):
        wf.erasure.erase_report(users["petro"], report["reference"])  # a reviewer may not erase

    # The family is notified; nothing pending any more. The case's retention date is moved on.
    for nid in world["drafts"]:
        wf.notifications.approve_notification(users["maria"], nid)
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 2
    wf.cases.update_case(users["ivan"], case_ref, retain_until="2040-01-01")
    done = apply_retention(wf.gallery, now=LATER, actor="cli:operator", source="cli")
    assert [(e["kind"], e["id"]) for e in done["erased"]] == [("report", report["id"])]
    assert [a["kind"] for a in done["already_erased"]] == ["person"]  # erased with its report
    removed = done["erased"][0]["removed"]
    assert removed["faces"] == 2 and removed["contacts"] == 2 and removed["identifications"] == 1
    assert removed["notifications"] == 2 and removed["media_files_removed"] == 2
    assert removed["job_results_scrubbed"] == 1

    # Database: the rows are gone.
    with wf.db.sessions() as s:
        assert s.get(Report, report["id"]) is None and s.get(Person, person_id) is None
        assert s.execute(select(func.count(Face.id)).where(Face.id.in_(face_ids))).scalar() == 0
        assert s.execute(select(func.count(Contact.id))).scalar() == 0
        assert s.execute(select(func.count(Notification.id))).scalar() == 0
        assert s.execute(select(func.count(Identification.id))).scalar() == 0
        assert s.execute(select(func.count(Lead.id)).where(Lead.report_id == report["id"])).scalar() == 0
        assert s.get(Case, world["case"]["id"]) is not None  # the case stays, without the lead
        job = s.execute(select(Job)).scalar_one()
        assert external_id not in str(job.result) and str(person_id) not in {
            str(c["person"]["id"]) for t in job.result["tracks"] for c in t["candidates"]
        }
        events = list(s.execute(select(AuditEvent).where(AuditEvent.action == "report.erase")).scalars())
        assert [e.outcome for e in events] == ["denied", "denied", "ok"]  # blocked, then not permitted
        erased_event = events[-1]
        assert erased_event.actor == "cli:operator" and erased_event.detail["reason"] == "retention expired"
        assert f"report:{report['id']}" in erased_event.records and f"person:{person_id}" in erased_event.records
        assert f"case:{world['case']['id']}" in erased_event.records
        for secret in ("Kelly", "jeanne@family.example", "Jeanne", report["reference"]):
            assert secret not in str(erased_event.detail) + str(erased_event.records)
        assert verify_chain(s) == []
    # Index: not by id, not by vector (the erased templates themselves as probes).
    index = wf.gallery.index()
    assert not set(face_ids) & set(index.ids().tolist())
    vectors = np.vstack([np.frombuffer(t, dtype=np.float32) for t in templates])
    _, hits = index.search(vectors, 5)
    assert not set(face_ids) & set(hits.ravel().tolist())
    if isinstance(index, FaissIndex):
        on_disk = FaissIndex.load(wf.gallery.index_path)
        assert not set(face_ids) & set(on_disk.ids().tolist())
    if isinstance(index, MilvusIndex):
        with pytest.raises(KeyError):
            index.vectors(np.array(face_ids, dtype=np.int64))
    # Media, exports, search.
    assert not any((wf.gallery.media.root / m).exists() for m in media)
    assert "Kelly Clarkson" not in _pdf_text(wf, users["olena"], case_ref, monkeypatch)
    assert external_id not in _candidates(wf.gallery, probe)
    fresh = Gallery(wf.settings)  # another process opening the gallery
    try:
        assert external_id not in _candidates(fresh, probe)
    finally:
        fresh.close()
    # Rerunning is harmless.
    again = apply_retention(wf.gallery, now=LATER)
    assert again["due"] == [] and again["erased"] == []

    # The case, erased by hand: its photo, face and media file go too.
    with wf.db.sessions() as s:
        case_images = list(
            s.execute(text("SELECT image_id FROM case_images WHERE case_id = :c"), {"c": world["case"]["id"]}).scalars()
        )
        case_media = list(s.execute(select(Image.media_path).where(Image.id.in_(case_images))).scalars())
        case_templates = [
            bytes(e) for e in s.execute(select(Face.embedding).where(Face.image_id.in_(case_images))).scalars()
        ]
    assert len(case_images) == 1 and (wf.gallery.media.root / case_media[0]).is_file()
    out = wf.erasure.erase_case(users["ivan"], case_ref, reason="request of the holding organisation")
    assert out["cases"] == 1 and out["images"] == 1 and out["faces"] == 1 and out["media_files_removed"] == 1
    with wf.db.sessions() as s:
        assert s.execute(select(func.count(Image.id)).where(Image.id.in_(case_images))).scalar() == 0
        assert s.execute(select(func.count(Face.id)).where(Face.image_id.in_(case_images))).scalar() == 0
    assert not (wf.gallery.media.root / case_media[0]).exists()

    if wf.db.engine.dialect.name == "sqlite":
        # No byte of an erased template, name or address is left in any file of the data home.
        secrets = [*templates, *case_templates, b"jeanne@family.example", b"Jason Clarkson", b"Kelly Clarkson"]
        files = [p for p in wf.settings.home.rglob("*") if p.is_file()]
        assert any(p.name == "facetrace.db" for p in files)
        for path in files:
            data = path.read_bytes()
            assert not any(t in data for t in secrets), f"erased data is still in {path.name}"
    elif wf.db.engine.dialect.name == "postgresql":
        # The manual erasure VACUUMed; the next retention run rewrites the tables (VACUUM FULL), after
        # which no page of them holds an erased template, name or address (read with pageinspect).
        assert apply_retention(wf.gallery, now=LATER)["vacuum_full"] is True
        assert apply_retention(wf.gallery, now=LATER)["vacuum_full"] is False  # only when erasures happened
        secrets = [*templates, *case_templates, b"jeanne@family.example", b"Jason Clarkson", b"Kelly Clarkson"]
        _assert_no_page_holds(wf, secrets)


def _assert_no_page_holds(wf: Workflow, secrets: list[bytes]) -> None:
    with wf.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        try:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        except Exception:  # not a superuser: the pages cannot be read
            pytest.skip("pageinspect is not available to this PostgreSQL user")
        scanned = 0
        for table in ERASED_TABLES:
            pages = conn.execute(text(f"SELECT pg_relation_size('{table}') / 8192")).scalar_one()
            for number in range(int(pages)):
                page = bytes(conn.execute(text(f"SELECT get_raw_page('{table}', {number})")).scalar_one())
                scanned += 1
                assert not any(t in page for t in secrets), f"erased data is still in a page of {table}"
        assert scanned > 0


def test_erasure_end_to_end_sqlite_faiss_and_postgresql(
    wf: Workflow, users: dict[str, User], smtp: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _erasure_end_to_end(wf, users, smtp, monkeypatch)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_erasure_end_to_end_milvus_lite(
    wf_settings: Settings, smtp: Inbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = wf_settings.model_copy(update={"vector_url": f"milvus-lite://{tmp_path}/milvus/vectors.db"})
    gallery = Gallery(settings)
    try:
        wf = Workflow(gallery, source="test")
        users = _make_users(wf)
        _erasure_end_to_end(wf, users, smtp, monkeypatch)
        assert isinstance(gallery.index(), MilvusIndex)
    finally:
        gallery.close()


def _make_users(wf: Workflow) -> dict[str, User]:
    spec = {"ivan": ["intake"], "olena": ["examiner"], "petro": ["reviewer"], "maria": ["reviewer"]}
    with wf.db.session() as session:
        for name, roles in spec.items():
            session.add(User(username=name, display_name=name.title(), password_hash="!", roles=roles, disabled=False))
    with wf.db.sessions() as session:
        return {u.username: u for u in session.execute(select(User)).scalars()}


def test_interrupted_erasure_is_finished_by_the_next_run(
    wf: Workflow, users: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    created = wf.reports.create_report(
        users["ivan"],
        name="Naoto Kan",
        reported_by="family",
        source="form",
        legal_basis="consent",
        photos=[photo(p) for p in face_images("Naoto_Kan")[:2]],
        retain_until="2020-01-01",
    )["report"]
    face_ids, _, media = _gallery_rows(wf, created["person_id"])
    assert len(face_ids) == 2

    def crash(self: Eraser, marker: str) -> int:
        raise KeyboardInterrupt("killed after the commit")

    monkeypatch.setattr(Eraser, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        apply_retention(wf.gallery)
    monkeypatch.undo()
    with wf.db.sessions() as s:  # committed, with its marker; files and index entries still there
        assert s.get(Report, created["id"]) is None
        assert s.execute(select(func.count(Meta.key)).where(Meta.key.startswith(PENDING_PREFIX))).scalar() == 1
    assert all((wf.gallery.media.root / m).is_file() for m in media)
    rerun = apply_retention(wf.gallery)
    assert rerun["interrupted_erasures_finished"] == 1 and rerun["due"] == []
    assert not any((wf.gallery.media.root / m).exists() for m in media)
    assert not set(face_ids) & set(wf.gallery.index().ids().tolist())
    with wf.db.sessions() as s:
        assert s.execute(select(func.count(Meta.key)).where(Meta.key.startswith(PENDING_PREFIX))).scalar() == 0


def test_a_lead_under_review_blocks_erasure_unless_forced(wf: Workflow, users: dict[str, User]) -> None:
    from wftest import make_world

    world = make_world(wf, users)
    wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Looks like her")
    reference = world.report["report"]["reference"]
    with pytest.raises(ErasureBlocked, match=f"lead {world.lead_id} is under review"):
        wf.erasure.erase_report(users["ivan"], reference)
    out = wf.erasure.erase_report(users["ivan"], reference, reason="erasure request of the family", force=True)
    assert out["forced"] is True and out["reports"] == 1 and out["leads"] == 1
    with wf.db.sessions() as s:
        event = s.execute(
            select(AuditEvent).where(AuditEvent.action == "report.erase", AuditEvent.outcome == "ok")
        ).scalar_one()
        assert event.actor == "ivan" and event.detail["overridden"] == [f"lead {world.lead_id} is under review"]


def test_update_and_clear_retention_dates(wf: Workflow, users: dict[str, User]) -> None:
    from wftest import make_world

    world = make_world(wf, users)
    reference = world.report["report"]["reference"]
    changed = wf.reports.update_report(users["ivan"], reference, retain_until="2031-02-03T04:05:06Z")
    assert changed["changed"] == ["retain_until"] and changed["report"]["retain_until"] == "2031-02-03T04:05:06+00:00"
    assert wf.reports.update_report(users["ivan"], reference, retain_until="2031-02-03T06:05:06+02:00")["changed"] == []
    cleared = wf.reports.update_report(users["ivan"], reference, retain_until=None)
    assert cleared["report"]["retain_until"] is None


# -- API and command line -----------------------------------------------------------------------------


def test_retention_dates_and_erasure_over_http(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:  # noqa: F811
    client, h = api
    body = {"name": "Olha K", "reported_by": "sister", "source": "form", "legal_basis": "consent"}
    report = _ok(client.post(f"{P}/reports", headers=h["ivan"], json={**body, "retain_until": "2030-01-01"}), 201)
    ref = report["report"]["reference"]
    assert report["report"]["retain_until"] == "2030-01-01T00:00:00+00:00"
    assert "not a date" in _error(
        client.patch(f"{P}/reports/{ref}", headers=h["ivan"], json={"retain_until": "soon"}), 422, "invalid"
    )
    cleared = _ok(client.patch(f"{P}/reports/{ref}", headers=h["ivan"], json={"retain_until": None}))
    assert cleared["changed"] == ["retain_until"] and cleared["report"]["retain_until"] is None
    case = _ok(
        client.post(
            f"{P}/cases", headers=h["ivan"], json={"condition": "alive", "retain_until": "2031-05-06T07:08:09Z"}
        ),
        201,
    )
    case_ref = case["case"]["reference"]
    assert _ok(client.get(f"{P}/cases/{case_ref}", headers=h["olena"]))["retain_until"] == "2031-05-06T07:08:09+00:00"
    with client.app.state.service.db.session() as session:  # type: ignore[attr-defined]
        session.add(Person(external_id="P-1", name="Someone", source="s", legal_basis="l", attributes={}))
    person = _ok(
        client.patch(f"{P}/persons/P-1", headers=h["ivan"], json={"retain_until": "2030-01-01T00:00:00+02:00"})
    )
    assert person["retain_until"] == "2029-12-31T22:00:00+00:00"

    _error(client.post(f"{P}/reports/{ref}/erase", headers=h["petro"], json={}), 403, "forbidden")
    erased = _ok(client.post(f"{P}/reports/{ref}/erase", headers=h["ivan"], json={"reason": "family's request"}))
    assert erased["kind"] == "report" and erased["reports"] == 1
    _error(client.get(f"{P}/reports/{ref}", headers=h["olena"]), 404, "not_found")
    _error(client.post(f"{P}/reports/{ref}/erase", headers=h["ivan"], json={}), 404, "not_found")
    assert _ok(client.post(f"{P}/cases/{case_ref}/erase", headers=h["olena"], json={}))["cases"] == 1


def test_read_manifest_retain_until(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "external_id,name,image,source,legal_basis,retain_until\n"
        "p1,One,a.jpg,s,l,2030-01-01\n"
        "p1,One,a.jpg,s,l,2029-06-01T12:00:00+02:00\n"
        "p2,Two,a.jpg,s,l,\n"
        "p3,Three,a.jpg,s,l,next year\n"
    )
    items, problems = read_manifest(tmp_path / "m.csv")
    by_id = {i.external_id: i for i in items}
    assert by_id["p1"].retain_until == datetime(2029, 6, 1, 10, tzinfo=UTC)  # the earliest date of its rows
    assert by_id["p2"].retain_until is None and "retain_until" not in by_id["p2"].attributes
    assert [p.message for p in problems] == ["retain_until 'next year' is not an ISO date"]


def test_retention_apply_command(enrolled_home_copy: Path, run_cli: Any) -> None:
    name = "Tariq_Aziz"
    db = Database(f"sqlite:///{enrolled_home_copy / 'facetrace.db'}")
    with db.session() as session:
        person = session.execute(select(Person).where(Person.external_id == name)).scalar_one()
        person.retain_until = datetime(2030, 1, 1, tzinfo=UTC)
        person_id = person.id
        templates = [
            bytes(e) for e in session.execute(select(Face.embedding).where(Face.person_id == person_id)).scalars()
        ]
    db.dispose()
    assert len(templates) == 2
    dry = json.loads(run_cli("retention", "apply", "--dry-run", "--now", "2030-01-02", "--json").stdout)
    assert [(d["kind"], d["reference"]) for d in dry["due"]] == [("person", name)] and dry["erased"] == []
    done = run_cli("retention", "apply", "--now", "2030-01-02", "--json")
    assert done.returncode == 0, done.stderr
    erased = json.loads(done.stdout)["erased"]
    assert [(e["kind"], e["id"], e["removed"]["faces"]) for e in erased] == [("person", person_id, 2)]
    for path in (p for p in enrolled_home_copy.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not any(t in data for t in templates), f"an erased template is still in {path.name}"
    db = Database(f"sqlite:///{enrolled_home_copy / 'facetrace.db'}")
    with db.sessions() as session:
        assert session.get(Person, person_id) is None
        (event,) = session.execute(select(AuditEvent).where(AuditEvent.action == "person.erase")).scalars()
        assert event.actor.startswith("cli:") and event.detail["reason"] == "retention expired"  # type: ignore[union-attr]
    db.dispose()
    assert json.loads(run_cli("retention", "apply", "--now", "2030-01-02", "--json").stdout)["due"] == []
    bad = run_cli("retention", "apply", "--now", "yesterday")
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and len(bad.stderr.strip().splitlines()) == 1


def test_report_retention_and_erasure_from_the_shell(cli: Callable[..., Any]) -> None:  # noqa: F811
    added = cli(
        "report", "add", "--as", "ivan", "--name", "Olha K", "--reported-by", "sister", "--source", "form",
        "--legal-basis", "consent", "--retain-until", "2030-01-01",
    )  # fmt: skip
    reference = added["report"]["reference"]
    assert added["report"]["retain_until"] == "2030-01-01T00:00:00+00:00"
    erased = cli("report", "erase", reference, "--as", "olena", "--reason", "family's request", "--yes")
    assert erased["kind"] == "report" and erased["reports"] == 1
    again = cli("report", "erase", reference, "--as", "olena", "--yes", ok=False)
    assert again.returncode == 1 and f"no report '{reference}'" in again.stderr
