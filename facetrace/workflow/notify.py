"""Family notifications: drafted from templates in the contact's language, approved by a
reviewer other than the drafter, then sent by the outbox (:mod:`facetrace.workflow.outbox`).

Only registered contacts of the identified report (and of reports merged into it) can be
recipients; there is no free-form address. Photos are never attached unless the approver
names them, and only photos of the identification's case can be named.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConfigError, ConflictError, PolicyError
from facetrace.store.accounts import User
from facetrace.store.workflow_models import (
    NOTIFICATION_STATUSES,
    Case,
    CaseImage,
    Contact,
    Evidence,
    Identification,
    Notification,
    NotificationAttempt,
    Report,
)
from facetrace.workflow.common import (
    APPROVE_ROLES,
    READ_ROLES,
    REVIEW_ROLES,
    InvalidInput,
    as_utc,
    attempt_view,
    check_choice,
    notification_view,
    required_text,
)
from facetrace.workflow.core import WorkflowCore
from facetrace.workflow.templates import TemplateRenderer

CANCELLABLE = ("draft", "approved", "failed")
DELIVERED_OR_MAYBE = ("sending", "sent", "unknown")  # a correction is owed to these


class NotifyMixin(WorkflowCore):
    """Draft, approve, cancel, list and show notifications."""

    _renderer: TemplateRenderer | None = None

    @property
    def renderer(self) -> TemplateRenderer:
        """The template renderer (operator templates in ``$FACETRACE_HOME/templates`` first)."""
        if self._renderer is None:
            self._renderer = TemplateRenderer(self.settings.home / "templates")
        return self._renderer

    def _message_domain(self) -> str:
        sender = self.settings.smtp_sender.strip().strip("<>")
        domain = sender.rsplit("@", 1)[-1] if "@" in sender else ""
        return domain.strip("<> ") or "localhost"

    def _context(
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
            "organisation": {"name": self.settings.organisation_name, "contact": self.settings.organisation_contact},
            "corrects": {"sent_on": sent.date().isoformat() if sent else None} if corrects is not None else None,
        }

    def _draft(
        self,
        session: Session,
        user: User,
        ident: Identification,
        contact: Contact,
        kind: str,
        corrects: Notification | None = None,
        recipient: str | None = None,
    ) -> Notification:
        """Render and store one draft to ``recipient`` (default: the contact's address); audited."""
        address = recipient or contact.email
        assert address
        rendered = self.renderer.render(kind, contact.language, self._context(session, ident, contact, corrects))
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
        self._audit(
            session,
            user,
            "notification.draft",
            [f"notification:{note.id}", f"identification:{ident.id}", f"contact:{contact.id}"],
            {"kind": kind, "language": rendered.language, "corrects": note.corrects_id},
        )
        return note

    def _draft_for_identification(self, session: Session, user: User, ident: Identification) -> dict[str, Any]:
        """Draft the notification of a newly confirmed identification to every contact with e-mail."""
        report = session.get(Report, ident.report_id)
        assert report is not None
        drafted, no_email, failed = [], [], []
        for contact in self._contacts_of(session, report):
            if not contact.email:
                no_email.append(contact.id)
                continue
            try:
                drafted.append(self._draft(session, user, ident, contact, "identification").id)
            except ConfigError as exc:
                # A broken operator template must not undo the identification: report it, and
                # draft again (draft_notification) once the template is fixed. Rendering comes
                # before any write, so nothing of this draft was stored.
                failed.append({"contact_id": contact.id, "error": exc.message})
        if failed:
            self._audit(
                session,
                user,
                "notification.draft",
                [f"identification:{ident.id}"] + [f"contact:{f['contact_id']}" for f in failed],
                {"failed": failed},
                outcome="error",
            )
        return {"drafted": drafted, "contacts_without_email": no_email, "draft_errors": failed}

    def _flag_after_withdrawal(self, session: Session, user: User, ident: Identification) -> dict[str, Any]:
        """Cancel the notifications not yet sent; draft a correction for those (maybe) delivered."""
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
                self._audit(
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
                    self._draft(session, user, ident, contact, "correction", corrects=note, recipient=note.recipient).id
                )
        return {"cancelled": cancelled, "corrections_drafted": corrections}

    # -- public -----------------------------------------------------------------------------
    def draft_notification(self, actor: User, identification_id: int, contact_id: int) -> dict[str, Any]:
        """Draft a notification to one registered contact of the identified report (e.g. a contact
        registered after the confirmation). For a withdrawn identification, drafts the correction
        owed to a contact who was notified. Role: examiner or reviewer.

        Raises:
            NotFoundError, PolicyError (not a registered contact of the report, or nothing to tell
            them), InvalidInput (no e-mail address), ConflictError (already drafted), PermissionDenied.
        """
        records = [f"identification:{identification_id}", f"contact:{contact_id}"]
        with self._tx(actor, "notification.draft", records) as session:
            user = self._user(session, actor, REVIEW_ROLES, "drafting a notification")
            ident = self._identification(session, identification_id, for_update=True)
            contact: Contact = self._get(session, Contact, contact_id, "contact")
            report = session.get(Report, ident.report_id)
            assert report is not None
            if contact.id not in {c.id for c in self._contacts_of(session, report)}:
                raise PolicyError(
                    f"contact {contact.id} is not a registered contact of report {report.reference}: "
                    "only a report's own contacts can be notified"
                )
            if not contact.email:
                raise InvalidInput(f"contact {contact.id} has no e-mail address")
            if ident.status == "confirmed":
                kind, corrects = "identification", None
            else:
                kind = "correction"
                corrects = session.execute(
                    select(Notification).where(
                        Notification.identification_id == ident.id,
                        Notification.contact_id == contact.id,
                        Notification.kind == "identification",
                        Notification.status.in_(DELIVERED_OR_MAYBE),
                    )
                ).scalar()
                if corrects is None:
                    raise PolicyError(
                        f"identification {ident.id} is withdrawn and contact {contact.id} was never notified of it"
                    )
            live = session.execute(
                select(Notification.id).where(
                    Notification.identification_id == ident.id,
                    Notification.contact_id == contact.id,
                    Notification.kind == kind,
                    Notification.status != "cancelled",
                )
            ).scalar()
            if live is not None:
                raise ConflictError(f"notification {live} already exists for this contact; cancel it to redraft")
            note = self._draft(session, user, ident, contact, kind, corrects=corrects)
            return notification_view(note)

    def approve_notification(
        self, actor: User, notification_id: int, *, include_images: list[int] | None = None
    ) -> dict[str, Any]:
        """Approve a draft for sending. The approver must be a reviewer other than the drafter.
        Photos (of the identification's case only) are attached only when listed here.

        Raises:
            NotFoundError, PolicyError (approver drafted it), ConflictError (not a draft, or the
            identification was withdrawn), InvalidInput (an image not of the case), PermissionDenied.
        """
        with self._tx(actor, "notification.approve", [f"notification:{notification_id}"]) as session:
            user = self._user(session, actor, APPROVE_ROLES, "approving a notification")
            note = self._notification(session, notification_id, for_update=True)
            if note.status != "draft":
                raise ConflictError(f"notification {note.id} is {note.status}, not a draft")
            if note.drafted_by_id == user.id:
                raise PolicyError("a reviewer other than the drafter must approve a notification")
            ident = self._identification(session, note.identification_id)
            if note.kind == "identification" and ident.status != "confirmed":
                raise ConflictError(f"identification {ident.id} was withdrawn; this notification cannot be sent")
            images = sorted(set(include_images or []))
            if images:
                allowed = set(
                    session.execute(select(CaseImage.image_id).where(CaseImage.case_id == ident.case_id)).scalars()
                )
                foreign = [i for i in images if i not in allowed]
                if foreign:
                    raise InvalidInput(
                        f"image(s) {', '.join(map(str, foreign))} are not photos of the identified case; "
                        "only those can be attached"
                    )
            note.status = "approved"
            note.approved_by_id = user.id
            note.approved_at = datetime.now(UTC)
            note.attachments = images
            self._audit(
                session,
                user,
                "notification.approve",
                [f"notification:{note.id}", f"identification:{ident.id}"] + [f"image:{i}" for i in images],
                {"attachments": images, "photos_included": bool(images)},
            )
            return notification_view(note)

    def cancel_notification(self, actor: User, notification_id: int, *, reason: str) -> dict[str, Any]:
        """Cancel a notification not yet sent (draft, approved or failed), with a reason; a new
        one can then be drafted. Role: reviewer.

        Raises:
            NotFoundError, InvalidInput, ConflictError (sending or sent), PermissionDenied.
        """
        why = required_text(reason, "reason")
        with self._tx(actor, "notification.cancel", [f"notification:{notification_id}"]) as session:
            user = self._user(session, actor, APPROVE_ROLES, "cancelling a notification")
            note = self._notification(session, notification_id, for_update=True)
            if note.status not in CANCELLABLE:
                raise ConflictError(f"notification {note.id} is {note.status}; only unsent ones can be cancelled")
            note.status = "cancelled"
            note.flag = f"cancelled by {user.username}: {why}"
            self._audit(
                session,
                user,
                "notification.cancel",
                [f"notification:{note.id}", f"identification:{note.identification_id}"],
                {"reason": why},
            )
            return notification_view(note)

    def list_notifications(
        self,
        actor: User,
        *,
        status: str | None = None,
        identification_id: int | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return notifications (newest first, without bodies). Any role.

        Raises:
            PermissionDenied, InvalidInput.
        """
        with self._tx(actor, "notification.list", []) as session:
            self._user(session, actor, READ_ROLES, "listing notifications")
            stmt = select(Notification).order_by(Notification.id.desc())
            if status:
                stmt = stmt.where(Notification.status == check_choice(status, NOTIFICATION_STATUSES, "status"))
            if identification_id is not None:
                stmt = stmt.where(Notification.identification_id == identification_id)
            rows = session.execute(stmt.offset(max(0, offset)).limit(max(1, min(limit, 1000)))).scalars()
            return [notification_view(n, with_body=False) for n in rows]

    def get_notification(self, actor: User, notification_id: int) -> dict[str, Any]:
        """Return a notification with its text and delivery attempts. Any role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self._tx(actor, "notification.view", [f"notification:{notification_id}"]) as session:
            user = self._user(session, actor, READ_ROLES, "reading a notification")
            note = self._notification(session, notification_id)
            self._audit(session, user, "notification.view", [f"notification:{note.id}", f"contact:{note.contact_id}"])
            attempts = session.execute(
                select(NotificationAttempt)
                .where(NotificationAttempt.notification_id == note.id)
                .order_by(NotificationAttempt.number)
            ).scalars()
            names = self._usernames(session, {note.drafted_by_id, note.approved_by_id})
            return {
                **notification_view(note),
                "drafted_by": names.get(note.drafted_by_id),
                "approved_by": names.get(note.approved_by_id) if note.approved_by_id else None,
                "delivery_attempts": [attempt_view(a) for a in attempts],
            }
