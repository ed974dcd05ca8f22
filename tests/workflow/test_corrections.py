"""Corrections of reports, cases and contacts, on SQLite and PostgreSQL: the audit event of each
names the fields changed, with the values before and after for the fields that are not personal;
names, descriptions and contact details (encrypted at rest) never enter the audit trail, which
outlives an erasure."""

from __future__ import annotations

import json

from sqlalchemy import select
from wftest import make_world

from facetrace.store.accounts import AuditEvent, User
from facetrace.workflow import Workflow


def _last_event(wf: Workflow, action: str) -> AuditEvent:
    with wf.db.sessions() as session:
        return session.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id.desc())
        ).scalar_one()


def test_a_report_correction_is_audited_with_before_and_after_but_no_personal_value(
    wf: Workflow, users: dict[str, User]
) -> None:
    world = make_world(wf, users, name="Olha Kovalenko")
    reference = world.report["report"]["reference"]
    result = wf.reports.update_report(
        users["ivan"],
        reference,
        name="Olha Kovalenko-Shevchenko",
        description="Scar on the left hand",
        status="closed",
        consent=False,
        retain_until="2031-02-03",
    )
    assert result["changed"] == ["name", "description", "consent", "retain_until", "status", "consent_date"]
    event = _last_event(wf, "report.update")
    assert event.actor == "ivan" and event.records == [f"report:{world.report['report']['id']}"]
    assert event.detail["changed"] == result["changed"]
    assert event.detail["before"] == {
        "consent": True,
        "consent_date": "2024-03-02",
        "retain_until": None,
        "status": "missing",
    }
    assert event.detail["after"] == {
        "consent": False,
        "consent_date": None,
        "retain_until": "2031-02-03T00:00:00+00:00",
        "status": "closed",
    }
    trail = json.dumps(event.detail)
    assert "Olha" not in trail and "Scar" not in trail  # personal values stay out of the trail


def test_a_case_correction_keeps_its_description_out_of_the_trail(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    reference = world.case["case"]["reference"]
    wf.cases.update_case(
        users["olena"], reference, found_place="Bucha, Ukraine", description="Tattoo of an anchor", status="closed"
    )
    event = _last_event(wf, "case.update")
    assert event.detail["changed"] == ["found_place", "description", "status"]
    assert event.detail["before"] == {"found_place": "Irpin, Ukraine", "status": "open"}
    assert event.detail["after"] == {"found_place": "Bucha, Ukraine", "status": "closed"}
    assert "anchor" not in json.dumps(event.detail)


def test_a_contact_correction_never_writes_contact_details_into_the_trail(wf: Workflow, users: dict[str, User]) -> None:
    world = make_world(wf, users)
    contact = world.report["contacts"][0]
    wf.reports.update_contact(
        users["ivan"], contact["id"], name="Iryna Petrenko", email="iryna.p@family.example", relation="cousin"
    )
    event = _last_event(wf, "contact.update")
    assert event.records == [f"report:{world.report['report']['id']}", f"contact:{contact['id']}"]
    assert event.detail["changed"] == ["name", "relation", "email"]
    assert event.detail["before"] == {"relation": "sister"} and event.detail["after"] == {"relation": "cousin"}
    trail = json.dumps(event.detail)
    assert "family.example" not in trail and "Iryna" not in trail
