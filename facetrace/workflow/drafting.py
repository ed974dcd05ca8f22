"""Drafting family notifications from templates in the contact's language.

Only registered contacts of the identified report (and of reports merged into it) can be
recipients; there is no free-form address. A draft waits for approval
(:mod:`facetrace.workflow.notify`) and is sent by the outbox (:mod:`facetrace.workflow.outbox`).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConfigError
from facetrace.store.accounts import User
from facetrace.store.workflow_models import Case, Contact, Evidence, Identification, Notification, Report
from facetrace.workflow import queries
from facetrace.workflow.common import as_utc
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.templates import TemplateRenderer

CANCELLABLE = ("draft", "approved", "failed")
DELIVERED_OR_MAYBE = ("sending", "sent", "unknown")  # a correction is owed to these


class Drafter:
    """Renders and stores notification drafts (each audited) in the caller's transaction."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx
        self._renderer: TemplateRenderer | None = None

    @property
    def renderer(self) -> TemplateRenderer:
        """The template renderer (operator templates in ``$FACETRACE_HOME/templates`` first),
        made when first needed: templates are read when this workflow first renders."""
        if self._renderer is None:
            self._renderer = TemplateRenderer(self.ctx.settings.home / "templates")
        return self._renderer

    def _message_domain(self) -> str:
        sender = self.ctx.settings.smtp_sender.strip().strip("<>")
        domain = sender.rsplit("@", 1)[-1] if "@" in sender else ""
        return domain.strip("<> ") or "localhost"

    def _template_context(
        self, session: Session, ident: Identification, contact: Contact, corrects: Notification | None
    ) -> dict[str, Any]:
        report = session.get(Report, ident.report_id)
        case = session.get(Case, ident.case_id)
        assert report is not None and case is not None
        kinds = sorted(set(session.execute(select(Evidence.kind).where(Evidence.lead_id == ident.lead_id)).scalars()))
        found = as_utc(case.found_at)
        confirmed = as_utc(ident.confirmed_at)
        withdrawn = as_utc(ident.withdrawn_at)
        sent = as_utc(corrects.sent_at) if corrects is not None else None
        settings = self.ctx.settings
        return {
            "contact": {"name": contact.name, "relation": contact.relation},
            "report": {"reference": report.reference, "name": report.name, "date_of_birth": report.date_of_birth},
            "case": {
                "reference": case.reference,
                "condition": case.condition,
                "found_on": found.date().isoformat() if found else None,
                "found_place": case.found_place,
                "holding_organisation": case.holding_organisation,
            },
            "identification": {
                "id": ident.id,
                "confirmed_on": confirmed.date().isoformat() if confirmed else None,
                "withdrawn_on": withdrawn.date().isoformat() if withdrawn else None,
                "evidence": kinds,
            },
            "organisation": {"name": settings.organisation_name, "contact": settings.organisation_contact},
            "corrects": {"sent_on": sent.date().isoformat() if sent else None} if corrects is not None else None,
        }

    def draft(
        self,
        session: Session,
        user: User,
        ident: Identification,
        contact: Contact,
        kind: str,
        corrects: Notification | None = None,
        recipient: str | None = None,
    ) -> Notification:
        """Render and store one draft of ``kind`` to ``recipient`` (default: the contact's
        address); audited. Returns the flushed notification.

        Raises:
            ConfigError: a template is missing or broken (nothing is stored then).
        """
        address = recipient or contact.email
        assert address
        context = self._template_context(session, ident, contact, corrects)
        rendered = self.renderer.render(kind, contact.language, context)
        note = Notification(
            identification_id=ident.id,
            contact_id=contact.id,
            kind=kind,
            corrects_id=corrects.id if corrects is not None else None,
            status="draft",
            language=rendered.language,
            recipient=address,
            subject=rendered.subject,
            body=rendered.text,
            body_html=rendered.html,
            message_id=f"<facetrace.{uuid.uuid4().hex}@{self._message_domain()}>",
            attachments=[],
            drafted_by_id=user.id,
            attempts=0,
        )
        session.add(note)
        session.flush()
        # One Message-ID per notification (hence per contact); it names the notification for
        # operators searching a mail server's log.
        note.message_id = f"<facetrace.notification-{note.id}.{uuid.uuid4().hex[:16]}@{self._message_domain()}>"
        session.flush()
        self.ctx.audit(
            session,
            user,
            "notification.draft",
            [f"notification:{note.id}", f"identification:{ident.id}", f"contact:{contact.id}"],
            {"kind": kind, "language": rendered.language, "corrects": note.corrects_id},
        )
        return note

    def draft_for_identification(self, session: Session, user: User, ident: Identification) -> dict[str, Any]:
        """Draft the notification of a newly confirmed identification to every contact with e-mail.

        Returns ``{"drafted", "contacts_without_email", "draft_errors"}``; a broken template is
        reported there (and audited as an error), never raised.
        """
        report = session.get(Report, ident.report_id)
        assert report is not None
        drafted, no_email, failed = [], [], []
        for contact in queries.contacts_of(session, report):
            if not contact.email:
                no_email.append(contact.id)
                continue
            try:
                drafted.append(self.draft(session, user, ident, contact, "identification").id)
            except ConfigError as exc:
                # A broken operator template must not undo the identification: report it, and
                # draft again (draft_notification) once the template is fixed. Rendering comes
                # before any write, so nothing of this draft was stored.
                failed.append({"contact_id": contact.id, "error": exc.message})
        if failed:
            self.ctx.audit(
                session,
                user,
                "notification.draft",
                [f"identification:{ident.id}"] + [f"contact:{f['contact_id']}" for f in failed],
                {"failed": failed},
                outcome="error",
            )
        return {"drafted": drafted, "contacts_without_email": no_email, "draft_errors": failed}

    def flag_after_withdrawal(self, session: Session, user: User, ident: Identification) -> dict[str, Any]:
        """Cancel the notifications of a withdrawn identification not yet sent; draft a correction
        for those (maybe) delivered. Returns ``{"cancelled", "corrections_drafted"}``."""
        cancelled, corrections = [], []
        flag = f"identification {ident.id} withdrawn: {ident.withdrawal_reason}"
        notes = session.execute(
            select(Notification)
            .where(Notification.identification_id == ident.id, Notification.kind == "identification")
            .order_by(Notification.id)
            .with_for_update()
        ).scalars()
        for note in notes:
            if note.status in CANCELLABLE:
                note.status = "cancelled"
                note.flag = flag
                cancelled.append(note.id)
                self.ctx.audit(
                    session,
                    user,
                    "notification.cancel",
                    [f"notification:{note.id}", f"identification:{ident.id}"],
                    {"reason": "identification withdrawn"},
                )
            elif note.status in DELIVERED_OR_MAYBE:
                note.flag = flag
                contact = session.get(Contact, note.contact_id)
                assert contact is not None
                # The correction goes where the first message went, whatever the contact's address now.
                corrections.append(
                    self.draft(session, user, ident, contact, "correction", corrects=note, recipient=note.recipient).id
                )
        return {"cancelled": cancelled, "corrections_drafted": corrections}
