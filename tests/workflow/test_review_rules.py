"""The identification rules, on SQLite and PostgreSQL: two-person rule, evidence policy, roles,
standing rejections, one case per report, registered contacts only, and the database constraints
behind them. Records are built without the face pipeline (the lead is inserted directly)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from wftest import identify, insert_lead, make_world

from facetrace.errors import ConflictError, NotFoundError, PermissionDenied, PolicyError
from facetrace.store.accounts import AuditEvent, User
from facetrace.store.audit import verify_chain
from facetrace.store.workflow_models import Identification, Lead, Notification, Review
from facetrace.workflow import InvalidInput, Workflow


def _events(wf: Workflow, action: str) -> list[AuditEvent]:
    with wf.db.sessions() as session:
        return list(session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


def _reviews(wf: Workflow, lead_id: int) -> list[Review]:
    with wf.db.sessions() as session:
        return list(session.execute(select(Review).where(Review.lead_id == lead_id)).scalars())


def test_two_person_rule_and_evidence_policy(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    first = wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Same face, same scar")
    assert first["identification"] is None
    assert "second, different user" in first["waiting_for"]
    assert first["lead"]["status"] == "under_review"

    # The same user can never supply the second confirmation.
    with pytest.raises(PolicyError, match="already confirmed"):
        wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Still sure")
    denied = [e for e in _events(wf, "lead.review") if e.outcome == "denied"]
    assert [(e.actor, e.records) for e in denied] == [("olena", [f"lead:{world.lead_id}"])]

    # A reviewer's confirmation is refused while the evidence policy is not met; nothing is recorded.
    assert wf.settings.min_evidence_items == 1
    with pytest.raises(PolicyError, match="evidence"):
        wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Agree")
    assert len(_reviews(wf, world.lead_id)) == 1

    evidence = wf.reviews.add_evidence(
        users["olena"], world.lead_id, kind="dental", description="Dental chart matches", reference="LAB-77"
    )
    assert evidence["recorded_by"] == "olena"
    result = wf.reviews.review_lead(
        users["petro"], world.lead_id, decision="confirm", rationale="Agree; dental matches"
    )
    ident = result["identification"]
    assert ident is not None and ident["status"] == "confirmed"
    assert (ident["first_confirmed_by_id"], ident["second_confirmed_by_id"]) == (users["olena"].id, users["petro"].id)
    assert ident["evidence_count"] == 1
    assert result["lead"]["status"] == "identified"
    assert len(result["notifications"]["drafted"]) == 1
    case = wf.cases.get_case(users["olena"], world.case["case"]["reference"])
    report = wf.reports.get_report(users["olena"], world.report["report"]["reference"])
    assert case["status"] == "identified"
    assert report["status"] == "identified_deceased"
    # Reading a case file is audited too.
    assert [(e.actor, e.records) for e in _events(wf, "case.view")] == [("olena", [f"case:{case['id']}"])]
    # An identified lead takes no more reviews.
    with pytest.raises(ConflictError):
        wf.reviews.review_lead(users["maria"], world.lead_id, decision="reject", rationale="Too late")
    with wf.db.sessions() as session:
        assert verify_chain(session) == []


def test_a_user_holding_both_roles_still_counts_once(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    wf.reviews.add_evidence(users["taras"], world.lead_id, kind="documents", description="ID card")
    wf.reviews.review_lead(users["taras"], world.lead_id, decision="confirm", rationale="Match")
    with pytest.raises(PolicyError, match="two-person rule"):
        wf.reviews.review_lead(users["taras"], world.lead_id, decision="confirm", rationale="Match again")
    # An intervening other decision does not let taras count twice either.
    wf.reviews.review_lead(users["taras"], world.lead_id, decision="inconclusive", rationale="Let me look again")
    again = wf.reviews.review_lead(users["taras"], world.lead_id, decision="confirm", rationale="Match after all")
    assert again["identification"] is None
    done = wf.reviews.review_lead(users["maria"], world.lead_id, decision="confirm", rationale="Independent match")
    assert done["identification"]["first_confirmed_by_id"] == users["taras"].id
    assert done["identification"]["second_confirmed_by_id"] == users["maria"].id


def test_second_confirmation_needs_the_reviewer_role(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    wf.reviews.add_evidence(users["petro"], world.lead_id, kind="fingerprints", description="Two prints match")
    wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Match")
    examiner = wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Match too")
    assert examiner["identification"] is None
    assert "reviewer role" in examiner["waiting_for"]
    done = wf.reviews.review_lead(users["maria"], world.lead_id, decision="confirm", rationale="Agree")
    assert done["identification"]["first_confirmed_by_id"] == users["petro"].id
    assert done["identification"]["second_confirmed_by_id"] == users["maria"].id


def test_a_standing_rejection_blocks_confirmation(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    wf.reviews.add_evidence(users["olena"], world.lead_id, kind="witness", description="Neighbour recognised her")
    rejected = wf.reviews.review_lead(users["olena"], world.lead_id, decision="reject", rationale="Ears differ")
    assert rejected["lead"]["status"] == "rejected"
    wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="I think it matches")
    with pytest.raises(PolicyError, match="standing rejection by olena"):
        wf.reviews.review_lead(users["maria"], world.lead_id, decision="confirm", rationale="Matches")
    # olena revises her review (history kept); then a reviewer can establish it.
    wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="The ear was a shadow")
    done = wf.reviews.review_lead(users["maria"], world.lead_id, decision="confirm", rationale="Matches")
    assert done["identification"] is not None
    assert [r.decision for r in _reviews(wf, world.lead_id)] == ["reject", "confirm", "confirm", "confirm"]


def test_rationale_and_decision_are_checked(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    with pytest.raises(InvalidInput, match="rationale"):
        wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="   ")
    with pytest.raises(InvalidInput, match="decision"):
        wf.reviews.review_lead(users["olena"], world.lead_id, decision="maybe", rationale="Hmm")
    with pytest.raises(InvalidInput, match="evidence kind"):
        wf.reviews.add_evidence(users["olena"], world.lead_id, kind="horoscope", description="Stars align")
    with pytest.raises(NotFoundError):
        wf.reviews.review_lead(users["olena"], 999, decision="confirm", rationale="No such lead")
    assert _reviews(wf, world.lead_id) == []


def test_wrong_roles_are_refused_and_audited(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    with pytest.raises(PermissionDenied, match="examiner or reviewer"):
        wf.reviews.review_lead(users["ivan"], world.lead_id, decision="confirm", rationale="I took the report")
    with pytest.raises(PermissionDenied):
        wf.reports.create_report(users["anna"], name="X", reported_by="Y", source="Z", legal_basis="W")
    with pytest.raises(PermissionDenied, match="disabled"):
        wf.reviews.review_lead(users["dmytro"], world.lead_id, decision="confirm", rationale="Disabled account")
    with pytest.raises(PermissionDenied):
        wf.reviews.add_evidence(users["anna"], world.lead_id, kind="dna", description="Auditors do not record evidence")
    with pytest.raises(PermissionDenied):  # auditors read the audit trail, not the case files
        wf.reports.get_report(users["anna"], world.report["report"]["reference"])
    ident = identify(wf, users, world)["identification"]
    note_id = wf.notifications.list_notifications(users["olena"])[0]["id"]
    with pytest.raises(PermissionDenied, match="reviewer"):
        wf.notifications.approve_notification(users["olena"], note_id)
    with pytest.raises(PermissionDenied, match="reviewer"):
        wf.identifications.withdraw_identification(users["olena"], ident["id"], reason="Examiners cannot withdraw")
    with pytest.raises(PermissionDenied):
        wf.outbox.send_notifications(users["ivan"])
    with wf.db.sessions() as session:
        denied = list(session.execute(select(AuditEvent).where(AuditEvent.outcome == "denied")).scalars())
        assert {(e.actor, e.action) for e in denied} == {
            ("ivan", "lead.review"),
            ("anna", "report.create"),
            ("dmytro", "lead.review"),
            ("anna", "evidence.add"),
            ("anna", "report.view"),
            ("olena", "notification.approve"),
            ("olena", "identification.withdraw"),
            ("ivan", "notification.send"),
        }
        assert verify_chain(session) == []


def test_a_case_and_a_report_are_linked_at_most_once(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    identify(wf, users, world)
    # A second case leads to the same report: it cannot be confirmed while the first stands.
    other_case = wf.cases.create_case(users["ivan"], condition="deceased", found_place="Bucha")
    lead2 = insert_lead(wf, other_case["case"]["id"], world.report["report"]["id"])
    wf.reviews.add_evidence(users["olena"], lead2, kind="personal_effects", description="Wedding ring")
    wf.reviews.review_lead(users["olena"], lead2, decision="confirm", rationale="Similar")
    with pytest.raises(ConflictError, match="already identified"):
        wf.reviews.review_lead(users["maria"], lead2, decision="confirm", rationale="Similar")
    # Once the first identification is withdrawn, the report is free again.
    ident_id = wf.identifications.list_identifications(users["olena"])[0]["id"]
    withdrawn = wf.identifications.withdraw_identification(users["maria"], ident_id, reason="DNA excluded her")
    assert withdrawn["identification"]["status"] == "withdrawn"
    assert wf.reports.get_report(users["olena"], world.report["report"]["reference"])["status"] == "missing"
    assert wf.reviews.get_lead(users["olena"], world.lead_id)["flag"].startswith(f"identification {ident_id} withdrawn")
    done = wf.reviews.review_lead(users["maria"], lead2, decision="confirm", rationale="Ring engraved with her name")
    assert done["identification"]["report_id"] == world.report["report"]["id"]
    # The withdrawn lead is closed to reviews.
    with pytest.raises(ConflictError):
        wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Again")


def test_only_registered_contacts_can_be_notified(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(
        wf,
        users,
        contacts=[
            {"name": "Iryna", "relation": "sister", "email": "iryna@family.example", "language": "uk"},
            {"name": "Bohdan", "relation": "father", "phone": "+380 67 000 0000", "language": "uk"},
        ],
    )
    other = make_world(wf, users, name="Someone Else")
    ident = identify(wf, users, world)
    assert ident["notifications"]["contacts_without_email"] == [world.report["contacts"][1]["id"]]
    stranger = other.report["contacts"][0]["id"]
    with pytest.raises(PolicyError, match="not a registered contact"):
        wf.notifications.draft_notification(users["petro"], ident["identification"]["id"], stranger)
    with pytest.raises(InvalidInput, match="no e-mail"):
        wf.notifications.draft_notification(
            users["petro"], ident["identification"]["id"], world.report["contacts"][1]["id"]
        )
    with pytest.raises(ConflictError, match="already exists"):
        wf.notifications.draft_notification(
            users["petro"], ident["identification"]["id"], world.report["contacts"][0]["id"]
        )
    # A contact registered after the confirmation can be drafted explicitly.
    late = wf.reports.add_contact(
        users["ivan"], world.report["report"]["reference"], name="Max", relation="son", email="max@x.example"
    )
    note = wf.notifications.draft_notification(users["olena"], ident["identification"]["id"], late["id"])
    assert note["recipient"] == "max@x.example" and note["language"] == "en"
    with pytest.raises(InvalidInput):
        wf.reports.add_contact(users["ivan"], world.report["report"]["reference"], name="No way", relation="friend")
    with pytest.raises(InvalidInput, match="e-mail"):
        wf.reports.add_contact(
            users["ivan"], world.report["report"]["reference"], name="A", relation="b", email="not-an-email"
        )


def test_notification_approval_rules(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    identify(wf, users, world)  # petro's confirmation drafted the notification
    note = wf.notifications.list_notifications(users["olena"])[0]
    assert note["status"] == "draft" and note["drafted_by_id"] == users["petro"].id
    with pytest.raises(PolicyError, match="other than the drafter"):
        wf.notifications.approve_notification(users["petro"], note["id"])
    with pytest.raises(InvalidInput, match="not photos of the identified case"):
        wf.notifications.approve_notification(users["maria"], note["id"], include_images=[12345])
    approved = wf.notifications.approve_notification(users["maria"], note["id"])
    assert approved["status"] == "approved" and approved["attachments"] == []
    with pytest.raises(ConflictError, match="not a draft"):
        wf.notifications.approve_notification(users["taras"], note["id"])
    cancelled = wf.notifications.cancel_notification(users["taras"], note["id"], reason="Family asked for a phone call")
    assert cancelled["status"] == "cancelled"
    redrafted = wf.notifications.draft_notification(users["olena"], note["identification_id"], note["contact_id"])
    assert redrafted["status"] == "draft" and redrafted["message_id"] != note["message_id"]


def test_database_constraints_back_the_rules(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    ident_id = identify(wf, users, world)["identification"]["id"]
    case_id, report_id = world.case["case"]["id"], world.report["report"]["id"]
    with pytest.raises(IntegrityError), wf.db.session() as session:  # one lead per (case, report)
        session.add(
            Lead(
                case_id=case_id,
                report_id=report_id,
                status="open",
                score=0.9,
                fmr=0.1,
                fpir=0.1,
                threshold=0.9,
                review_fpir=0.1,
                gallery_size=1,
                model_id="m",
                case_box=[],
                report_box=[],
                case_quality=1.0,
                report_quality=1.0,
            )
        )
    review_id = _reviews(wf, world.lead_id)[0].id
    other_case = wf.cases.create_case(users["ivan"], condition="alive")
    lead2 = insert_lead(wf, other_case["case"]["id"], report_id)
    base = {
        "lead_id": lead2,
        "case_id": other_case["case"]["id"],
        "report_id": report_id,
        "first_review_id": review_id,
        "second_review_id": review_id,
        "evidence_count": 1,
        "confirmed_at": datetime.now(UTC),
    }
    # The same user twice.
    with pytest.raises(IntegrityError), wf.db.session() as session:
        uid = users["petro"].id
        session.add(Identification(status="withdrawn", first_confirmed_by_id=uid, second_confirmed_by_id=uid, **base))
    # A second confirmed identification of the same report (partial unique index).
    with pytest.raises(IntegrityError), wf.db.session() as session:
        session.add(
            Identification(
                status="confirmed",
                first_confirmed_by_id=users["olena"].id,
                second_confirmed_by_id=users["maria"].id,
                **base,
            )
        )
    # A notification approved by its drafter.
    with pytest.raises(IntegrityError), wf.db.session() as session:
        note = session.execute(select(Notification).where(Notification.identification_id == ident_id)).scalar_one()
        note.approved_by_id = note.drafted_by_id
        note.status = "approved"


def test_second_reviewer_cannot_see_the_first_decision_before_deciding(wf: Workflow, users: dict[str, User]) -> None:
    """Blind confirmation on every channel: get_lead (used by the API, the CLI and the web) hides other
    examiners' decisions from a user who has not decided yet, and shows them once they have."""
    world = make_world(wf, users)
    wf.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Same face, same scar")
    before = wf.reviews.get_lead(users["petro"], world.lead_id)
    assert before["blind"] and before["reviews"] == [] and before["hidden_reviews"] == 1
    assert before["status"] == "under_review"
    own = wf.reviews.get_lead(users["olena"], world.lead_id)
    assert not own["blind"] and [r["decision"] for r in own["reviews"]] == ["confirm"]
    wf.reviews.review_lead(users["petro"], world.lead_id, decision="inconclusive", rationale="Photo too dark to say")
    after = wf.reviews.get_lead(users["petro"], world.lead_id)
    assert not after["blind"] and sorted(r["decision"] for r in after["reviews"]) == ["confirm", "inconclusive"]
