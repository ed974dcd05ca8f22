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

from facetrace.config import Settings
from facetrace.errors import ConfigError, FacetraceError
from facetrace.store.accounts import User
from facetrace.store.settings_store import missing_message
from facetrace.store.workflow_models import Case, Contact, Evidence, Identification, Notification, Report
from facetrace.workflow import queries
from facetrace.workflow.common import as_utc
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.templates import Rendered, TemplateRenderer

CANCELLABLE = ("draft", "approved", "failed")
DELIVERED_OR_MAYBE = ("sending", "sent", "unknown")  # a correction is owed to these


class SettingsMissing(FacetraceError):
    """The organisation or mail settings a notification needs are not set: nothing is drafted or approved."""

    code = "settings_missing"
    status = 409


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

    def check_settings(self, session: Session) -> None:
        """Raise SettingsMissing (saying what to set, and where) while a notification's settings are missing."""
        missing = self.ctx.notification_blockers(session)
        if missing:
            raise SettingsMissing(missing_message(missing))

    @staticmethod
    def _message_domain(settings: Settings) -> str:
        sender = settings.smtp_sender.strip().strip("<>")
        domain = sender.rsplit("@", 1)[-1] if "@" in sender else ""
        return domain.strip("<> ") or "localhost"

    @staticmethod
    def _template_context(
        session: Session, ident: Identification, contact: Contact, corrects: Notification | None, settings: Settings
    ) -> dict[str, Any]:
        report = session.get(Report, ident.report_id)
        case = session.get(Case, ident.case_id)
        assert report is not None and case is not None
        kinds = sorted(set(session.execute(select(Evidence.kind).where(Evidence.lead_id == ident.lead_id)).scalars()))
        found = as_utc(case.found_at)
        confirmed = as_utc(ident.confirmed_at)
        withdrawn = as_utc(ident.withdrawn_at)
        sent = as_utc(corrects.sent_at) if corrects is not None else None
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
                "level": ident.level,
                "level_basis": ident.level_basis,
                # Confirmed by a primary identifier result, not by an admin's exception.
                "by_primary": ident.level == "confirmed" and not (ident.level_basis or "").startswith("exception"),
            },
            "organisation": {
                "name": settings.organisation_name,
                "contact": settings.organisation_contact,
                "address": settings.organisation_address,
            },
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
            SettingsMissing: the organisation or mail settings are not set (nothing is stored then).
            ConfigError: a template is missing or broken (nothing is stored then).
        """
        address = recipient or contact.email
        assert address
        self.check_settings(session)
        settings = self.ctx.settings_in(session)
        context = self._template_context(session, ident, contact, corrects, settings)
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
            message_id=f"<facetrace.{uuid.uuid4().hex}@{self._message_domain(settings)}>",
            attachments=[],
            drafted_by_id=user.id,
            attempts=0,
        )
        session.add(note)
        session.flush()
        # One Message-ID per notification (hence per contact); it names the notification for
        # operators searching a mail server's log.
        domain = self._message_domain(settings)
        note.message_id = f"<facetrace.notification-{note.id}.{uuid.uuid4().hex[:16]}@{domain}>"
        session.flush()
        self.ctx.audit(
            session,
            user,
            "notification.draft",
            [f"notification:{note.id}", f"identification:{ident.id}", f"contact:{contact.id}"],
            {"kind": kind, "language": rendered.language, "corrects": note.corrects_id},
        )
        return note

    def render_now(self, session: Session, note: Notification) -> Rendered | None:
        """Return the letter of ``note`` rendered from the settings and records as they are now (None when
        its identification or contact is gone).

        Raises:
            ConfigError: a template is missing or broken.
        """
        ident = session.get(Identification, note.identification_id)
        contact = session.get(Contact, note.contact_id)
        if ident is None or contact is None:
            return None
        corrects = session.get(Notification, note.corrects_id) if note.corrects_id is not None else None
        context = self._template_context(session, ident, contact, corrects, self.ctx.settings_in(session))
        return self.renderer.render(note.kind, contact.language, context)

    def refresh(self, session: Session, user: User, note: Notification) -> bool:
        """Render a draft again from the settings and records as they are now, so that the approver reads
        the letter that will be sent (a draft made before the organisation's settings changed never goes
        out with the old text). A draft its drafter edited is left as written. Returns whether the text
        changed; a change is audited.

        Raises:
            ConfigError: a template is missing or broken.
        """
        if note.status != "draft" or note.edited_at is not None:
            return False  # a text its drafter edited stays as written: the page shows how it differs
        rendered = self.render_now(session, note)
        if rendered is None:
            return False
        if (rendered.subject, rendered.text, rendered.html) == (note.subject, note.body, note.body_html):
            return False
        note.subject, note.body, note.body_html = rendered.subject, rendered.text, rendered.html
        note.language = rendered.language
        session.flush()
        self.ctx.audit(
            session,
            user,
            "notification.rerender",
            [f"notification:{note.id}", f"identification:{note.identification_id}"],
            {"reason": "rendered again from the current settings and records"},
        )
        return True

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
            except (ConfigError, SettingsMissing) as exc:
                # A broken operator template or missing settings must not undo the identification:
                # report it, and draft again (draft_notification) once fixed. Rendering comes
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
                try:
                    correction = self.draft(
                        session, user, ident, contact, "correction", corrects=note, recipient=note.recipient
                    )
                except SettingsMissing as exc:
                    # The withdrawal stands; the correction is drafted (draft_notification) once the
                    # settings are back. Nothing of it was stored.
                    records = [f"identification:{ident.id}", f"contact:{contact.id}", f"notification:{note.id}"]
                    detail = {"kind": "correction", "error": exc.message}
                    self.ctx.audit(session, user, "notification.draft", records, detail, outcome="error")
                    continue
                corrections.append(correction.id)
        return {"cancelled": cancelled, "corrections_drafted": corrections}
