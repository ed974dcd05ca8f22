"""Family notifications through a real SMTP server on loopback (aiosmtpd): languages, content,
approval, photos only when an approver includes them, at-most-once sending across a crash,
refusals and retries, corrections after a withdrawal, and operator templates."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from wftest import DroppingSmtpServer, Inbox, face_images, free_port, identify, insert_lead, make_world, photo

from facetrace.errors import PolicyError
from facetrace.gallery import Gallery
from facetrace.store.accounts import AuditEvent, User
from facetrace.store.audit import verify_chain
from facetrace.workflow import InvalidInput, Workflow, deliver
from facetrace.workflow.outbox import Outbox

FAMILY = [
    {"name": "Iryna Kovalenko", "relation": "sister", "email": "iryna@family.example", "language": "uk"},
    {"name": "Sergei Kovalenko", "relation": "brother", "email": "sergei@family.example", "language": "ru"},
    {"name": "Bohdan Kovalenko", "relation": "father", "phone": "+380 67 000 0000", "language": "uk"},
]


def _approve_all(wf: Workflow, users: dict[str, User]) -> list[int]:
    ids = sorted(
        n["id"] for n in wf.notifications.list_notifications(users["olena"], status="draft")
    )  # drafted in contact order
    for nid in ids:
        wf.notifications.approve_notification(users["maria"], nid)
    return ids


def _actions(wf: Workflow, action: str) -> list[AuditEvent]:
    with wf.db.sessions() as session:
        return list(session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


def test_notifications_reach_each_contact_once_in_their_language(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    world = make_world(wf, users, contacts=FAMILY)
    result = identify(wf, users, world)
    assert len(result["notifications"]["drafted"]) == 2  # the father has no e-mail address
    with pytest.raises(PolicyError):  # nothing is sent before approval
        wf.notifications.approve_notification(users["petro"], result["notifications"]["drafted"][0])
    assert wf.outbox.send_notifications(users["maria"])["results"] == []
    assert smtp.envelopes == []

    ids = _approve_all(wf, users)
    out = wf.outbox.send_notifications(users["maria"])
    assert out["sent"] == 2 and out["failed"] == out["refused"] == out["unknown"] == 0
    assert sorted(r for e in smtp.envelopes for r in e.rcpt_tos) == ["iryna@family.example", "sergei@family.example"]

    (uk,) = smtp.to("iryna@family.example")
    (ru,) = smtp.to("sergei@family.example")
    assert uk["Content-Language"] == "uk" and ru["Content-Language"] == "ru"
    assert "ідентифікація" in uk["Subject"] and "идентификация" in ru["Subject"]
    for msg, greeting in ((uk, "Шановний(-а) Iryna Kovalenko"), (ru, "Уважаемый(-ая) Sergei Kovalenko")):
        body = msg.get_body(preferencelist=("plain",)).get_content()
        assert greeting in body
        for fact in ("Olha Kovalenko", "1971-05-14", "Irpin, Ukraine", "Kyiv Regional Forensic Bureau"):
            assert fact in body
        assert world.report["report"]["reference"] in body and world.case["case"]["reference"] in body
        assert "Tracing Service Kyiv" in body and "tracing@ident.example.org" in body
        assert not [p for p in msg.iter_attachments()]  # no photo unless an approver includes one
        assert msg["From"] == "Identification team <notify@ident.example.org>"
    stored = {
        wf.notifications.get_notification(users["olena"], i)["recipient"]: wf.notifications.get_notification(
            users["olena"], i
        )
        for i in ids
    }
    assert uk["Message-ID"] == stored["iryna@family.example"]["message_id"]
    assert uk["Message-ID"] != ru["Message-ID"]
    assert stored["iryna@family.example"]["status"] == "sent"
    assert [a["outcome"] for a in stored["iryna@family.example"]["delivery_attempts"]] == ["accepted"]

    # Running the outbox again (e.g. after a restart) sends nothing twice.
    again = wf.outbox.send_notifications(users["maria"])
    assert again["results"] == [] and len(smtp.envelopes) == 2
    fresh = Workflow(wf.gallery, source="restarted")
    assert fresh.outbox.send_notifications(None)["results"] == [] and len(smtp.envelopes) == 2
    with wf.db.sessions() as session:
        assert verify_chain(session) == []
    assert len([e for e in _actions(wf, "notification.deliver") if e.outcome == "ok"]) == 2


def test_outbox_runs_in_several_processes_at_once_send_each_message_once(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    """Several server processes may run the outbox at the same moment (on PostgreSQL): the claim
    (approved -> sending) lets one of them send each message, never two."""
    world = make_world(wf, users, contacts=FAMILY)
    identify(wf, users, world)
    _approve_all(wf, users)
    galleries = [Gallery(wf.gallery.settings) for _ in range(4)]  # one per "process": own engine, own state
    outcomes: list[dict[str, Any]] = []
    start = threading.Barrier(len(galleries))

    def run(gallery: Gallery) -> None:
        start.wait()
        outcomes.append(Workflow(gallery, source="process").outbox.send_notifications(users["maria"]))

    threads = [threading.Thread(target=run, args=(g,)) for g in galleries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for gallery in galleries:
        gallery.close()
    assert sum(o["sent"] for o in outcomes) == 2 and len(outcomes) == len(galleries)
    assert sorted(r for e in smtp.envelopes for r in e.rcpt_tos) == ["iryna@family.example", "sergei@family.example"]
    claims = [e for e in _actions(wf, "notification.send") if any(r.startswith("contact:") for r in e.records)]
    assert len(claims) == 2


def test_a_crash_between_sent_and_recorded_never_sends_twice(
    wf: Workflow, users: dict[str, User], smtp: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(wf, users)
    identify(wf, users, world)
    (nid,) = _approve_all(wf, users)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash after the server accepted the message")

    monkeypatch.setattr(Outbox, "record_delivery", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        wf.outbox.send_notifications(users["maria"])
    monkeypatch.undo()
    assert len(smtp.envelopes) == 1
    assert wf.notifications.get_notification(users["olena"], nid)["status"] == "sending"

    # "Restart": a new workflow runs the outbox. The message is not resent...
    restarted = Workflow(wf.gallery, source="restarted")
    assert restarted.outbox.send_notifications(users["maria"])["results"] == []
    assert wf.notifications.get_notification(users["olena"], nid)["status"] == "sending"
    # ...and once it is stale it is marked unknown, still not resent.
    out = restarted.outbox.send_notifications(users["maria"], stale_after_s=0)
    assert out["marked_unknown"] == [nid] and out["results"] == []
    note = wf.notifications.get_notification(users["olena"], nid)
    assert note["status"] == "unknown"
    assert [a["outcome"] for a in note["delivery_attempts"]] == ["unknown"]
    assert restarted.outbox.send_notifications(users["maria"], stale_after_s=0)["results"] == []
    assert len(smtp.envelopes) == 1
    assert [e.outcome for e in _actions(wf, "notification.delivery_unknown")] == ["error"]

    # The operator checks the mail log for the Message-ID and records that it went out.
    with pytest.raises(InvalidInput, match="rationale"):
        restarted.outbox.resolve_notification(users["maria"], nid, resolution="delivered", rationale="")
    done = restarted.outbox.resolve_notification(
        users["maria"], nid, resolution="delivered", rationale=f"found {note['message_id']} in the relay log"
    )
    assert done["status"] == "sent"
    assert restarted.outbox.send_notifications(users["maria"], stale_after_s=0)["results"] == []
    assert len(smtp.envelopes) == 1


def test_an_unknown_outcome_is_resent_only_by_an_operator(wf: Workflow, users: dict[str, User], smtp: Inbox) -> None:
    world = make_world(wf, users)
    identify(wf, users, world)
    (nid,) = _approve_all(wf, users)
    dropper = DroppingSmtpServer()
    wf.settings.smtp_port = dropper.port
    try:
        out = wf.outbox.send_notifications(users["maria"])
        assert [r["status"] for r in out["results"]] == ["unknown"]
        assert wf.outbox.send_notifications(users["maria"], stale_after_s=0)["results"] == []
        assert dropper.messages_received == 1
    finally:
        dropper.close()
        wf.settings.smtp_port = smtp.port
    first_id = wf.notifications.get_notification(users["olena"], nid)["message_id"]
    resent = wf.outbox.resolve_notification(users["petro"], nid, resolution="resend", rationale="not in the relay log")
    assert resent["status"] == "approved"
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 1
    (msg,) = smtp.messages
    assert msg["Message-ID"] == first_id  # the same Message-ID: a mail client can tell copies apart
    note = wf.notifications.get_notification(users["olena"], nid)
    assert [a["outcome"] for a in note["delivery_attempts"]] == ["unknown", "accepted"]
    assert [e.detail["resolution"] for e in _actions(wf, "notification.resolve")] == ["resend"]


def test_refusals_are_final_and_errors_are_retried(wf: Workflow, users: dict[str, User], smtp: Inbox) -> None:
    world = make_world(wf, users, contacts=FAMILY[:2])
    identify(wf, users, world)
    first, second = _approve_all(wf, users)

    smtp.refuse_with = "550 5.1.1 mailbox unavailable"
    out = wf.outbox.send_notifications(users["maria"], notification_ids=[first])
    assert [(r["status"], r["smtp_code"]) for r in out["results"]] == [("refused", 550)]
    smtp.refuse_with = None
    assert wf.outbox.send_notifications(users["maria"], notification_ids=[first])["results"] == []  # not retried

    wf.settings.smtp_port = free_port()  # nobody listens there
    try:
        out = wf.outbox.send_notifications(users["maria"], notification_ids=[second])
        assert [r["status"] for r in out["results"]] == ["failed"]
        assert "cannot connect" in out["results"][0]["detail"]
    finally:
        wf.settings.smtp_port = smtp.port
    out = wf.outbox.send_notifications(users["maria"])
    assert [(r["id"], r["status"]) for r in out["results"]] == [(second, "sent")]
    note = wf.notifications.get_notification(users["olena"], second)
    assert note["attempts"] == 2
    assert [a["outcome"] for a in note["delivery_attempts"]] == ["error", "accepted"]
    assert len(smtp.envelopes) == 1 and smtp.envelopes[0].rcpt_tos == [note["recipient"]]


def test_photos_are_attached_only_when_the_approver_includes_them(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    report = wf.reports.create_report(
        users["ivan"],
        name="Kelly Clarkson",
        reported_by="her mother",
        source="hotline",
        legal_basis="consent",
        contacts=FAMILY[:2],
    )
    case = wf.cases.create_case(users["ivan"], condition="alive", photos=[photo(face_images("Kelly_Clarkson")[-1])])
    image_id = case["photos"]["added"][0]["image_id"]
    lead = insert_lead(wf, case["case"]["id"], report["report"]["id"])
    wf.reviews.add_evidence(users["olena"], lead, kind="witness", description="She told us her name once awake")
    wf.reviews.add_evidence(users["olena"], lead, kind="fingerprints", description="Prints match", reference="AFIS-7")
    wf.reviews.review_lead(users["olena"], lead, decision="confirm", rationale="Match")
    drafted = wf.reviews.review_lead(users["petro"], lead, decision="confirm", rationale="Match")["notifications"][
        "drafted"
    ]
    with_photo, without = drafted
    wf.notifications.approve_notification(users["maria"], with_photo, include_images=[image_id])
    wf.notifications.approve_notification(users["maria"], without)
    assert wf.outbox.send_notifications(users["maria"])["sent"] == 2
    (msg,) = smtp.to(wf.notifications.get_notification(users["olena"], with_photo)["recipient"])
    (plain,) = smtp.to(wf.notifications.get_notification(users["olena"], without)["recipient"])
    attachments = list(msg.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["image/jpeg"]
    assert attachments[0].get_content() == face_images("Kelly_Clarkson")[-1].read_bytes()
    assert list(plain.iter_attachments()) == []
    assert "located" in plain["Subject"] or "знайдено" in plain["Subject"] or "найден" in plain["Subject"]
    approvals = _actions(wf, "notification.approve")
    assert sorted(e.detail["photos_included"] for e in approvals) == [False, True]


def test_withdrawal_cancels_unsent_and_corrects_sent(wf: Workflow, users: dict[str, User], smtp: Inbox) -> None:
    world = make_world(wf, users, contacts=FAMILY[:2])
    ident = identify(wf, users, world)["identification"]
    first, second = _approve_all(wf, users)
    wf.outbox.send_notifications(users["maria"], notification_ids=[first])
    assert len(smtp.envelopes) == 1

    out = wf.identifications.withdraw_identification(users["maria"], ident["id"], reason="DNA result excluded her")
    assert out["notifications"]["cancelled"] == [second]
    (correction,) = out["notifications"]["corrections_drafted"]
    unsent = wf.notifications.get_notification(users["olena"], second)
    assert unsent["status"] == "cancelled" and "withdrawn" in unsent["flag"]
    sent = wf.notifications.get_notification(users["olena"], first)
    assert sent["status"] == "sent" and "DNA result excluded her" in sent["flag"]
    draft = wf.notifications.get_notification(users["olena"], correction)
    assert draft["kind"] == "correction" and draft["corrects_id"] == first
    assert draft["recipient"] == sent["recipient"] and draft["language"] == sent["language"]
    # The withdrawer drafted it, so another reviewer approves; the cancelled one is never sent.
    with pytest.raises(PolicyError):
        wf.notifications.approve_notification(users["maria"], correction)
    wf.notifications.approve_notification(users["petro"], correction)
    result = wf.outbox.send_notifications(users["petro"])
    assert [r["id"] for r in result["results"]] == [correction]
    assert len(smtp.envelopes) == 2
    msg = smtp.messages[-1]
    assert smtp.envelopes[-1].rcpt_tos == [sent["recipient"]]
    assert msg["Subject"].startswith("Виправлення")
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "відкликано" in body and world.report["report"]["reference"] in body
    assert "DNA" not in body  # the internal reason is not sent to the family


def test_operator_templates_override_and_html_is_escaped(
    wf: Workflow, users: dict[str, User], smtp: Inbox, wf_settings: object
) -> None:
    folder = Path(wf.settings.home) / "templates" / "en"
    folder.mkdir(parents=True)
    (folder / "identification.subject.txt").write_text("Custom notice for {{ report.name }}\n")
    (folder / "identification.html").write_text("<p>Dear {{ contact.name }}: {{ report.name }}</p>\n")
    world = make_world(
        wf,
        users,
        name="Olha <b>K</b>",
        contacts=[{"name": "Ann & Co", "relation": "lawyer", "email": "ann@law.example", "language": "de"}],
    )
    fresh = Workflow(wf.gallery)  # templates are read when a workflow first renders
    wf.reviews.add_evidence(users["olena"], world.lead_id, kind="dental", description="Dental records match")
    fresh.reviews.review_lead(users["olena"], world.lead_id, decision="confirm", rationale="Match")
    (nid,) = fresh.reviews.review_lead(users["petro"], world.lead_id, decision="confirm", rationale="Match")[
        "notifications"
    ]["drafted"]
    note = fresh.notifications.get_notification(users["olena"], nid)
    assert note["language"] == "en"  # German falls back to English
    assert note["subject"] == "Custom notice for Olha <b>K</b>"  # plain text is not escaped
    assert note["body_html"] == "<p>Dear Ann &amp; Co: Olha &lt;b&gt;K&lt;/b&gt;</p>\n"
    fresh.notifications.approve_notification(users["maria"], nid)
    assert fresh.outbox.send_notifications(users["maria"])["sent"] == 1
    (msg,) = smtp.messages
    assert msg.get_body(preferencelist=("html",)).get_content().strip() == note["body_html"].strip()
    assert "Olha <b>K</b>" in msg.get_body(preferencelist=("plain",)).get_content()


def test_a_broken_operator_template_does_not_undo_an_identification(wf: Workflow, users: dict[str, User]) -> None:
    folder = Path(wf.settings.home) / "templates" / "uk"
    folder.mkdir(parents=True)
    (folder / "identification.txt").write_text("Dear {{ contact.nmae }}\n")  # a typo: unknown variable
    world = make_world(wf, users, contacts=FAMILY[:2])
    result = identify(wf, users, world)
    assert result["identification"]["status"] == "confirmed"
    (drafted,) = result["notifications"]["drafted"]  # the Russian one
    (failed,) = result["notifications"]["draft_errors"]
    assert failed["contact_id"] == world.report["contacts"][0]["id"] and "nmae" in failed["error"]
    assert [e.outcome for e in _actions(wf, "notification.draft")] == ["ok", "error"]
    (folder / "identification.txt").unlink()  # fixed: draft it now
    fixed = Workflow(wf.gallery).notifications.draft_notification(
        users["olena"], result["identification"]["id"], failed["contact_id"]
    )
    assert fixed["language"] == "uk" and fixed["id"] != drafted


def test_a_message_being_sent_during_a_withdrawal_and_not_delivered_is_dropped(
    wf: Workflow, users: dict[str, User], smtp: Inbox
) -> None:
    world = make_world(wf, users)
    ident = identify(wf, users, world)["identification"]
    (nid,) = _approve_all(wf, users)
    claimed = wf.outbox.claim(users["maria"], nid)  # the outbox has claimed it...
    assert claimed is not None
    out = wf.identifications.withdraw_identification(
        users["maria"], ident["id"], reason="Wrong person"
    )  # ...the withdrawal comes
    (correction,) = out["notifications"]["corrections_drafted"]  # it may go out: a correction is owed
    wf.settings.smtp_port = free_port()
    try:
        delivery = deliver(wf.settings, claimed[1], claimed[2])  # ...and the delivery fails
    finally:
        wf.settings.smtp_port = smtp.port
    assert delivery.outcome == "error"
    wf.outbox.record_delivery(users["maria"], nid, claimed[0], delivery)
    assert wf.notifications.get_notification(users["olena"], nid)["status"] == "cancelled"  # never retried
    assert wf.notifications.get_notification(users["olena"], correction)["status"] == "cancelled"  # nothing to correct
    assert wf.outbox.send_notifications(users["maria"])["results"] == [] and smtp.envelopes == []
