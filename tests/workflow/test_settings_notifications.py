"""Settings saved in the database drive notifications and the review policy (issue 15, items 2 and 4), on
SQLite and PostgreSQL, with a real SMTP server on loopback: nothing is drafted or approved while the
organisation or mail settings are missing; a saved change applies to the next notification without a
restart, and a draft written before it is rendered again; the review policy's values apply at once; a
team with one reviewer is told why nobody can approve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from wftest import Inbox, identify, make_world

from facetrace.config import Settings, get_settings
from facetrace.errors import ConflictError, PolicyError
from facetrace.store import settings_store
from facetrace.store.accounts import User
from facetrace.store.audit import list_events
from facetrace.workflow import Workflow
from facetrace.workflow.drafting import SettingsMissing


@pytest.fixture()
def wf_settings(tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh data home whose deployment sets neither the organisation nor the mail server."""
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL", "FACETRACE_CALIBRATION_PATH"):
        monkeypatch.delenv(name, raising=False)
    for key in settings_store.KEYS:
        monkeypatch.delenv(settings_store.env_name(key), raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("FACETRACE_HOME", str(home))
    return get_settings(home=home, workers=1, database_url=database_url, smtp_timeout=10.0)


def save(wf: Workflow, **values: Any) -> list[str]:
    """Save settings as an admin would (the table the settings page writes)."""
    with wf.db.session() as session:
        return settings_store.save_values(session, values, "root")


def mail_settings(smtp: Inbox, organisation: str = "Tracing Service Lviv") -> dict[str, Any]:
    return {
        "organisation_name": organisation,
        "organisation_contact": "+380 32 000 00 00",
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_sender": "notify@ident.example.org",
    }


def contact_id(wf: Workflow, users: dict[str, User], world: Any) -> int:
    report = wf.reports.get_report(users["olena"], world.report["report"]["id"])
    return int(report["contacts"][0]["id"])


def test_nothing_is_drafted_or_approved_while_settings_are_missing(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    world = make_world(wf, users)
    result = identify(wf, users, world)
    assert result["identification"]["status"] == "confirmed"  # the identification stands
    drafts = result["notifications"]
    assert drafts["drafted"] == [] and len(drafts["draft_errors"]) == 1
    error = drafts["draft_errors"][0]["error"]
    assert "/admin/settings" in error and "FACETRACE_SMTP_HOST" in error and "organisation name" in error

    ident_id, cid = result["identification"]["id"], contact_id(wf, users, world)
    with pytest.raises(SettingsMissing) as refused:
        wf.notifications.draft_notification(users["petro"], ident_id, cid)
    assert refused.value.status == 409 and "smtp server" in refused.value.message.lower()

    save(wf, **mail_settings(smtp))
    note = wf.notifications.draft_notification(users["petro"], ident_id, cid)
    assert "Tracing Service Lviv" in note["body"] and "facetrace@localhost" not in note["body"]

    save(wf, smtp_host=None)  # removed again: back to the placeholder default
    with pytest.raises(SettingsMissing):
        wf.notifications.approve_notification(users["maria"], note["id"])
    assert wf.notifications.get_notification(users["olena"], note["id"])["status"] == "draft"
    assert smtp.envelopes == []


def test_a_saved_change_applies_to_the_next_notification_without_restart(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    save(wf, **mail_settings(smtp))
    world = make_world(wf, users)
    (nid,) = identify(wf, users, world)["notifications"]["drafted"]
    assert "Tracing Service Lviv" in wf.notifications.get_notification(users["olena"], nid)["body"]

    assert save(wf, organisation_name="Tracing Service Odesa") == ["organisation_name"]
    # The draft was written with the old name: approval renders it again and stops, so the approver
    # reads the letter that will really go out.
    with pytest.raises(ConflictError, match="read the new letter"):
        wf.notifications.approve_notification(users["maria"], nid)
    shown = wf.notifications.get_notification(users["maria"], nid)
    assert "Tracing Service Odesa" in shown["body"] and "Lviv" not in shown["body"]
    wf.notifications.approve_notification(users["maria"], nid)
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 1

    (message,) = smtp.messages
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "Tracing Service Odesa" in body and "Lviv" not in body
    assert "Tracing Service Odesa" in message["From"] and "notify@ident.example.org" in message["From"]
    with wf.db.sessions() as session:
        rerendered, _ = list_events(session, action="notification.rerender")
    assert rerendered and f"notification:{nid}" in rerendered[0].records


def test_the_saved_review_policy_applies_at_once(wf: Workflow, users: dict[str, User], smtp: Inbox) -> None:
    save(wf, **mail_settings(smtp), review_fpir=0.05, min_evidence_items=3)
    assert wf.matching.review_threshold()["review_fpir"] == 0.05
    world = make_world(wf, users)
    with pytest.raises(PolicyError, match="at least 3"):
        identify(wf, users, world)  # two items: a passport and a DNA report
    save(wf, min_evidence_items=2)
    assert wf.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Agree")[
        "identification"
    ]


def test_a_team_with_one_reviewer_is_told_why_it_cannot_approve(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    save(wf, **mail_settings(smtp))
    with wf.db.session() as session:
        for name in ("maria", "taras"):  # petro stays the only enabled reviewer
            session.get(User, users[name].id).disabled = True  # type: ignore[union-attr]
    (nid,) = identify(wf, users, make_world(wf, users))["notifications"]["drafted"]
    blockers = wf.notifications.approval_blockers(users["petro"], nid)
    assert blockers == {"settings_missing": None, "approver_roles": ["reviewer"], "others_who_may_approve": []}
    with pytest.raises(PolicyError, match="whoever drafted it cannot approve it"):
        wf.notifications.approve_notification(users["petro"], nid)

    save(wf, notification_approvers="examiner_or_reviewer")  # the review policy lets examiners approve
    assert wf.notifications.approval_blockers(users["petro"], nid)["others_who_may_approve"] == ["olena"]
    assert wf.notifications.approve_notification(users["olena"], nid)["status"] == "approved"


def test_the_drafter_may_edit_a_draft_and_the_approver_sees_the_changes(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    save(wf, **mail_settings(smtp))
    (nid,) = identify(wf, users, make_world(wf, users))["notifications"]["drafted"]
    drafted = wf.notifications.get_notification(users["petro"], nid)
    assert drafted["edited_at"] is None and wf.notifications.changes_from_rendered(users["maria"], nid) == []
    with pytest.raises(PolicyError, match="only the drafter"):
        wf.notifications.edit_draft(users["maria"], nid, body="Not mine to change")
    added = "We are very sorry for your loss."
    edited = wf.notifications.edit_draft(users["petro"], nid, body=drafted["body"] + "\n" + added)
    assert edited["edited_at"] and added in edited["body"] and edited["body_html"] is None
    assert f"+{added}" in wf.notifications.changes_from_rendered(users["maria"], nid)

    # A later change of the settings does not overwrite the edited text: the approver is shown the difference.
    save(wf, organisation_name="Tracing Service Odesa")
    shown = wf.notifications.get_notification(users["maria"], nid)
    assert "Tracing Service Lviv" in shown["body"]
    changes = wf.notifications.changes_from_rendered(users["maria"], nid)
    assert any(line.startswith("-") and "Tracing Service Odesa" in line for line in changes), changes

    wf.notifications.approve_notification(users["maria"], nid)
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 1
    (message,) = smtp.messages
    assert added in message.get_body(preferencelist=("plain",)).get_content()
    with pytest.raises(ConflictError, match="only a draft"):
        wf.notifications.edit_draft(users["petro"], nid, subject="Too late")
    with wf.db.sessions() as session:
        events, _ = list_events(session, action="notification.edit", outcome="ok")
        denied, _ = list_events(session, action="notification.edit", outcome="denied")
    assert [e.detail["changed"] for e in events] == [["body"]] and events[0].actor == "petro"
    assert {e.actor for e in denied} == {"maria"}
