"""Reconciliation beyond the face, end to end through the workflow on SQLite and PostgreSQL (real
faces, real databases): exclusions keep an incompatible report from a case's leads and say why; a
case without a face finds its report by its marks; a rejected lead is never re-created and can be
reopened; a preliminary identification cannot notify under the default policy; erasure removes
mark photos; bad facts are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from test_settings_notifications import mail_settings, save
from wftest import Inbox, face_images, make_world, photo

from facetrace.config import get_settings
from facetrace.errors import ConflictError, NotFoundError, PermissionDenied, PolicyError
from facetrace.gallery import Gallery
from facetrace.store.accounts import User
from facetrace.store.backup import create_backup, restore_backup
from facetrace.store.models import Image
from facetrace.store.reconciliation_models import Mark, MarkPhoto
from facetrace.store.workflow_models import Lead
from facetrace.workflow import Workflow
from facetrace.workflow.common import InvalidInput

PROVENANCE = {"reported_by": "her mother", "source": "hotline", "legal_basis": "consent of the family"}


def kelly_report(wf: Workflow, users: dict[str, User], **extra: object) -> dict:
    return wf.reports.create_report(
        users["ivan"],
        name="Kelly Clarkson",
        date_of_birth="1982-04-24",
        photos=[photo(face_images("Kelly_Clarkson")[0])],
        **PROVENANCE,
        **extra,  # type: ignore[arg-type]
    )


def test_a_case_excluded_by_sex_gets_no_lead_and_the_exclusion_is_explained(
    wf: Workflow, users: dict[str, User]
) -> None:
    report = kelly_report(wf, users)["report"]
    wf.reconciliation.set_descriptors(users["ivan"], "report", report["reference"], {"sex": "female", "height": 158})
    case = wf.cases.create_case(users["ivan"], condition="deceased", found_at="2024-04-11")["case"]
    wf.reconciliation.set_descriptors(
        users["olena"], "case", case["reference"], {"sex": "male", "age_min": 30, "age_max": 50}
    )
    matched = wf.cases.add_case_photos(users["ivan"], case["reference"], [photo(face_images("Kelly_Clarkson")[-1])])
    assert matched["matching"]["leads"]["created"] == []  # the same face, but the recorded sexes differ
    facts = wf.reconciliation.facts(users["olena"], "case", case["reference"])
    (exclusion,) = facts["exclusions"]
    assert exclusion["report"] == report["reference"]
    assert exclusion["reasons"] == ["sex: the report says female, the case says male"]
    # An examiner widens the search past the exclusion: the lead appears, and the widening is audited.
    with pytest.raises(PermissionDenied):
        wf.matching.match_case(users["ivan"], case["reference"], widen=True)
    widened = wf.matching.match_case(users["olena"], case["reference"], widen=True)
    assert widened["widened"] and len(widened["leads"]["created"]) == 1
    (lead_id,) = widened["leads"]["created"]
    agreement = wf.reconciliation.lead_agreement(users["olena"], lead_id)
    assert [e["rule"] for e in agreement["exclusions"]] == ["sex"]
    assert {f["field"]: f["verdict"] for f in agreement["fields"]}["sex"] == "disagrees"


def test_the_compatible_gallery_is_smaller_so_its_threshold_is_lower(wf: Workflow, users: dict[str, User]) -> None:
    for name in ("Bill_Paxton", "Ciro_Gomes", "Aaron_Peirsol"):
        created = wf.reports.create_report(
            users["ivan"], name=name.replace("_", " "), photos=[photo(face_images(name)[0])], **PROVENANCE
        )["report"]
        wf.reconciliation.set_descriptors(users["ivan"], "report", created["reference"], {"sex": "male"})
    kelly_report(wf, users)
    case = wf.cases.create_case(users["ivan"], condition="deceased")["case"]
    before = wf.matching.match_case(users["olena"], case["reference"])
    wf.reconciliation.set_descriptors(users["olena"], "case", case["reference"], {"sex": "female"})
    after = wf.matching.match_case(users["olena"], case["reference"])
    assert before["gallery_size"] == 4 and after["gallery_size"] == 1
    assert after["threshold"] < before["threshold"]


def test_a_case_without_a_face_finds_its_report_by_its_marks(wf: Workflow, users: dict[str, User]) -> None:
    report = kelly_report(wf, users)["report"]
    wf.reconciliation.add_mark(
        users["ivan"],
        "report",
        report["reference"],
        {"type": "tattoo", "region": "forearm", "side": "left", "aspect": "outer", "keywords": "якорь, МАМА"},
    )
    other = wf.reports.create_report(users["ivan"], name="Someone Else", **PROVENANCE)["report"]
    wf.reconciliation.add_mark(users["ivan"], "report", other["reference"], {"type": "scar", "region": "cheek"})
    case = wf.cases.create_case(users["ivan"], condition="deceased")["case"]  # no usable face
    added = wf.reconciliation.add_mark(
        users["olena"],
        "case",
        case["reference"],
        {"type": "tattoo", "region": "forearm", "side": "left", "description": "anchor and the letters MAMA"},
    )
    (lead_id,) = added["matching"]["leads"]["created"]
    lead = wf.reviews.get_lead(users["olena"], lead_id)
    assert lead["report"]["reference"] == report["reference"]
    assert lead["basis"] == "marks" and lead["case_face"] is None
    assert lead["secondary"]["marks"][0]["shared_words"] == ["МАМА"]
    found = wf.reconciliation.search(
        users["olena"],
        target="reports",
        marks=[{"type": "tattoo", "region": "forearm", "side": "left", "keywords": "mama"}],
    )
    assert [r["reference"] for r in found["results"]] == [report["reference"]]


def test_a_rejected_lead_stays_rejected_after_new_photos_until_a_reviewer_reopens_it(
    wf: Workflow, users: dict[str, User]
) -> None:
    report = kelly_report(wf, users)["report"]
    images = face_images("Kelly_Clarkson")
    case = wf.cases.create_case(users["ivan"], condition="deceased", photos=[photo(images[1])])
    (lead_id,) = case["matching"]["leads"]["created"]
    wf.reviews.review_lead(users["olena"], lead_id, decision="reject", rationale="Different ear shape")
    wf.reviews.review_lead(users["petro"], lead_id, decision="reject", rationale="Agree: different ears")
    again = wf.cases.add_case_photos(users["ivan"], case["case"]["reference"], [photo(images[-1])])
    assert again["matching"]["leads"]["created"] == [] and again["matching"]["leads"]["updated"] == []
    wf.reconciliation.set_descriptors(users["ivan"], "report", report["reference"], {"sex": "female"})
    with wf.db.sessions() as session:
        leads = list(session.execute(select(Lead)).scalars())
    assert [(lead.id, lead.status) for lead in leads] == [(lead_id, "rejected")]
    for kind, ref in (("report", report["reference"]), ("case", case["case"]["reference"])):
        (listed,) = wf.reconciliation.facts(users["olena"], kind, ref)["rejected_leads"]
        assert listed["lead_id"] == lead_id
        assert {(r["by"], r["rationale"]) for r in listed["rejections"]} == {
            ("olena", "Different ear shape"),
            ("petro", "Agree: different ears"),
        }
    with pytest.raises(PermissionDenied):
        wf.reconciliation.reopen_lead(users["olena"], lead_id, rationale="New dental chart")
    with pytest.raises(InvalidInput):
        wf.reconciliation.reopen_lead(users["petro"], lead_id, rationale=" ")
    reopened = wf.reconciliation.reopen_lead(users["petro"], lead_id, rationale="New dental chart arrived")
    assert reopened["status"] == "open" and reopened["reopen_rationale"] == "New dental chart arrived"
    with pytest.raises(ConflictError):
        wf.reconciliation.reopen_lead(users["petro"], lead_id, rationale="again")
    # The old rejections no longer stand: one confirmation is not blocked by them.
    review = wf.reviews.review_lead(users["olena"], lead_id, decision="confirm", rationale="Dental chart matches")
    assert review["lead"]["status"] == "under_review"


def test_a_preliminary_identification_cannot_notify_until_a_primary_result(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    save(wf, **mail_settings(smtp))
    world = make_world(wf, users)
    wf.reviews.add_evidence(users["olena"], world.lead_id, kind="documents", description="Passport with the body")
    wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Same face, same scar")
    done = wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Agree")
    ident = done["identification"]
    assert ident["level"] == "preliminary"
    assert done["notifications"]["drafted"] == [] and "preliminary" in done["notifications"]["held"]
    contact_id = wf.reports.get_report(users["olena"], world.report["report"]["reference"])["contacts"][0]["id"]
    with pytest.raises(PolicyError, match="preliminary"):
        wf.notifications.draft_notification(users["olena"], ident["id"], contact_id)
    added = wf.reviews.add_evidence(
        users["olena"], world.lead_id, kind="dna", description="DNA match report", reference="LAB-77"
    )
    assert added["identification"]["level"] == "confirmed"
    assert "LAB-77" in added["identification"]["level_basis"]
    (nid,) = added["identification"]["notifications"]["drafted"]
    body = wf.notifications.get_notification(users["petro"], nid)["body"]
    assert "Ідентифікацію підтверджено порівнянням первинних ідентифікаторів" in body  # the contact reads Ukrainian


def test_an_admin_exception_confirms_with_its_rationale(wf: Workflow, users: dict[str, User], smtp: Inbox) -> None:
    save(wf, **mail_settings(smtp))
    with wf.db.session() as session:
        admin = User(username="root", display_name="Root", password_hash="!", roles=["admin"], disabled=False)
        session.add(admin)
    with wf.db.sessions() as session:
        admin = session.execute(select(User).where(User.username == "root")).scalar_one()
    world = make_world(wf, users)
    wf.reviews.add_evidence(users["olena"], world.lead_id, kind="witness", description="Neighbour recognised her")
    wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Match")
    ident = wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Match")[
        "identification"
    ]
    with pytest.raises(PermissionDenied):
        wf.identifications.confirm_by_exception(users["petro"], ident["id"], rationale="No DNA possible")
    out = wf.identifications.confirm_by_exception(admin, ident["id"], rationale="No relative left to give DNA")
    assert out["identification"]["level"] == "confirmed"
    assert "No relative left to give DNA" in out["identification"]["level_basis"]
    (nid,) = out["notifications"]["drafted"]
    body = wf.notifications.get_notification(users["petro"], nid)["body"]
    assert "Ідентифікацію підтверджено." in body and "первинних" not in body  # not by a primary identifier


def test_erasure_removes_mark_photos(wf: Workflow, users: dict[str, User], tmp_path: Path) -> None:
    report = kelly_report(wf, users)["report"]
    tattoo = photo(face_images("Bill_Paxton")[0])  # any real JPEG stands in for a tattoo photo
    added = wf.reconciliation.add_mark(
        users["ivan"], "report", report["reference"], {"type": "tattoo", "region": "chest"}, photos=[tattoo]
    )
    (image_id,) = added["mark"]["photo_image_ids"]
    with wf.db.sessions() as session:
        media = session.get(Image, image_id).media_path  # type: ignore[union-attr]
    assert wf.gallery.media.path(media).exists()
    wf.erasure.erase_report(users["ivan"], report["reference"], reason="family withdrew consent")
    with wf.db.sessions() as session:
        assert session.get(Image, image_id) is None
        assert session.execute(select(Mark)).first() is None
        assert session.execute(select(MarkPhoto)).first() is None
    with pytest.raises(NotFoundError, match="missing"):
        wf.gallery.media.path(media)  # the file is gone too


@pytest.mark.parametrize(
    ("kind", "facts", "field"),
    [
        ("case", {"age_min": 40, "age_max": 30}, "age_min, age_max"),
        ("case", {"height_min": 900}, "height_min"),
        ("report", {"sex": "unknown-code"}, "sex"),
        ("report", {"age_min": 20}, "age_min"),
    ],
)
def test_impossible_descriptors_are_refused_naming_the_field(
    wf: Workflow, users: dict[str, User], kind: str, facts: dict, field: str
) -> None:
    report = wf.reports.create_report(users["ivan"], name="A B", **PROVENANCE)["report"]
    case = wf.cases.create_case(users["ivan"], condition="deceased")["case"]
    ref = report["reference"] if kind == "report" else case["reference"]
    with pytest.raises(InvalidInput, match=field):
        wf.reconciliation.set_descriptors(users["ivan"], kind, ref, facts)


def test_bad_marks_and_dates_are_refused(wf: Workflow, users: dict[str, User]) -> None:
    report = wf.reports.create_report(users["ivan"], name="A B", **PROVENANCE)["report"]
    with pytest.raises(InvalidInput, match="mark region"):
        wf.reconciliation.add_mark(users["ivan"], "report", report["reference"], {"type": "tattoo", "region": "wing"})
    with pytest.raises(InvalidInput, match="mark photo"):
        wf.reconciliation.add_mark(
            users["ivan"],
            "report",
            report["reference"],
            {"type": "scar", "region": "knee"},
            photos=[photo(Path(__file__))],  # not an image
        )
    with pytest.raises(InvalidInput, match="date of birth"):
        wf.reports.create_report(users["ivan"], name="C D", date_of_birth="2999-01-01", **PROVENANCE)
    with pytest.raises(InvalidInput, match="case kind"):
        wf.reconciliation.set_case_kind(users["ivan"], "C-1", "zombie")


def test_backup_and_restore_keep_every_fact_and_mark_photo(
    wf: Workflow, users: dict[str, User], tmp_path: Path
) -> None:
    report = kelly_report(wf, users, descriptors={"sex": "female", "height": 158, "eye_colour": "brown"})["report"]
    ref = report["reference"]
    tattoo = photo(face_images("Bill_Paxton")[0])
    wf.reconciliation.add_mark(
        users["ivan"], "report", ref, {"type": "tattoo", "region": "wrist", "keywords": "star"}, photos=[tattoo]
    )
    wf.reconciliation.add_effect(users["ivan"], "report", ref, {"kind": "jewellery", "inscription": "K & M 2001"})
    wf.reconciliation.add_primary_reference(
        users["ivan"], "report", ref, {"kind": "dna", "status": "collected", "holder": "Kyiv DNA lab"}
    )
    case = wf.cases.create_case(users["ivan"], kind="detained", descriptors={"sex": "female", "age_min": 35})["case"]
    before = {
        "report": wf.reconciliation.facts(users["olena"], "report", ref),
        "case": wf.reconciliation.facts(users["olena"], "case", case["reference"]),
    }
    archive = tmp_path / "backup.tar"
    create_backup(wf.settings, archive)
    home = tmp_path / "restored"
    restore_backup(archive, home)
    gallery = Gallery(get_settings(home=home, workers=1, database_url=None, calibration_path=None))
    try:
        restored = Workflow(gallery)
        after = {
            "report": restored.reconciliation.facts(users["olena"], "report", ref),
            "case": restored.reconciliation.facts(users["olena"], "case", case["reference"]),
        }
        assert after == before
        assert after["case"]["kind"] == "detained" and after["report"]["descriptors"]["height_min"] == 158
        (image_id,) = after["report"]["marks"][0]["photo_image_ids"]
        with gallery.db.sessions() as session:
            media = session.get(Image, image_id).media_path  # type: ignore[union-attr]
        assert gallery.media.read(media) == tattoo.data
    finally:
        gallery.close()
