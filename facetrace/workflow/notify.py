"""Family notifications: drafted (:mod:`facetrace.workflow.drafting`), approved by a reviewer
other than the drafter, then sent by the outbox (:mod:`facetrace.workflow.outbox`).

Only registered contacts of the identified report (and of reports merged into it) can be
recipients; there is no free-form address. Photos are never attached unless the approver
names them, and only photos of the identification's case can be named.
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError, PolicyError
from facetrace.store.accounts import User
from facetrace.store.settings_store import missing_message
from facetrace.store.workflow_models import (
    NOTIFICATION_STATUSES,
    CaseImage,
    Contact,
    Identification,
    Notification,
    NotificationAttempt,
    Report,
)
from facetrace.workflow import queries
from facetrace.workflow.common import (
    APPROVE_ROLES,
    APPROVER_ROLES,
    READ_ROLES,
    REVIEW_ROLES,
    InvalidInput,
    attempt_view,
    check_choice,
    may_notify,
    notification_view,
    required_text,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.drafting import CANCELLABLE, DELIVERED_OR_MAYBE, Drafter


class NotificationService:
    """Draft, approve, cancel, list and show notifications."""

    def __init__(self, ctx: WorkflowContext, drafter: Drafter) -> None:
        self.ctx = ctx
        self.drafter = drafter

    def draft_notification(self, actor: User, identification_id: int, contact_id: int) -> dict[str, Any]:
        """Draft a notification to one registered contact of the identified report (e.g. a contact
        registered after the confirmation). For a withdrawn identification, drafts the correction
        owed to a contact who was notified. Role: examiner or reviewer.

        Raises:
            NotFoundError, PolicyError (not a registered contact of the report, or nothing to tell
            them), InvalidInput (no e-mail address), ConflictError (already drafted), PermissionDenied,
            SettingsMissing (the organisation or mail settings are not set).
        """
        records = [f"identification:{identification_id}", f"contact:{contact_id}"]
        with self.ctx.transaction(actor, "notification.draft", records) as session:
            user = self.ctx.acting_user(session, actor, REVIEW_ROLES, "drafting a notification")
            self.drafter.check_settings(session)
            ident = queries.identification_by_id(session, identification_id, for_update=True)
            contact: Contact = queries.row_by_id(session, Contact, contact_id, "contact")
            report = session.get(Report, ident.report_id)
            assert report is not None
            if contact.id not in {c.id for c in queries.contacts_of(session, report)}:
                raise PolicyError(
                    f"contact {contact.id} is not a registered contact of report {report.reference}: "
                    "only a report's own contacts can be notified"
                )
            if not contact.email:
                raise InvalidInput(f"contact {contact.id} has no e-mail address")
            if ident.status == "confirmed":
                kind, corrects = "identification", None
                self._check_level(session, ident)
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
            note = self.drafter.draft(session, user, ident, contact, kind, corrects=corrects)
            return notification_view(note)

    def approve_notification(
        self, actor: User, notification_id: int, *, include_images: list[int] | None = None
    ) -> dict[str, Any]:
        """Approve a draft for sending. The approver must be someone other than the drafter, with a role
        the review policy allows (``notification_approvers``: reviewers, or examiners and reviewers).
        Photos (of the identification's case only) are attached only when listed here. The draft is
        rendered again from the current settings first: when that changes its text, nothing is approved
        (ConflictError) and the approver reads the new letter before approving again.

        Raises:
            NotFoundError, PolicyError (approver drafted it), ConflictError (not a draft, the
            identification was withdrawn, or the letter changed), InvalidInput (an image not of the
            case), PermissionDenied, SettingsMissing (the organisation or mail settings are not set).
        """
        with self.ctx.transaction(actor, "notification.approve", [f"notification:{notification_id}"]) as session:
            roles = self.approver_roles(session)
            user = self.ctx.acting_user(session, actor, roles, "approving a notification")
            note = queries.notification_by_id(session, notification_id, for_update=True)
            if note.status != "draft":
                raise ConflictError(f"notification {note.id} is {note.status}, not a draft")
            if note.drafted_by_id == user.id:
                raise PolicyError(
                    f"a {' or '.join(roles)} other than the drafter must approve a notification; whoever "
                    "drafted it cannot approve it (the reviewer who gives an identification's second "
                    "confirmation drafts its notifications)"
                )
            self.drafter.check_settings(session)
            if self.drafter.refresh(session, user, note):
                raise ConflictError(
                    f"notification {note.id} was rendered again from the current settings and its text changed: "
                    "read the new letter, then approve it"
                )
            ident = queries.identification_by_id(session, note.identification_id)
            if note.kind == "identification" and ident.status != "confirmed":
                raise ConflictError(f"identification {ident.id} was withdrawn; this notification cannot be sent")
            if note.kind == "identification":
                self._check_level(session, ident)
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
            self.ctx.audit(
                session,
                user,
                "notification.approve",
                [f"notification:{note.id}", f"identification:{ident.id}"] + [f"image:{i}" for i in images],
                {"attachments": images, "photos_included": bool(images)},
            )
            return notification_view(note)

    def _check_level(self, session: Session, ident: Identification) -> None:
        """Refuse to tell a family of an identification whose level the policy does not let notify."""
        if not may_notify(ident.level, self.ctx.settings_in(session).notify_level):
            raise PolicyError(
                f"identification {ident.id} is preliminary: the policy notifies families of confirmed "
                "identifications only (record a DNA, dental or fingerprint result, or an admin's exception)"
            )

    def approver_roles(self, session: Session) -> tuple[str, ...]:
        """Return the roles that may approve a notification under the review policy now."""
        return APPROVER_ROLES.get(self.ctx.settings_in(session).notification_approvers, APPROVE_ROLES)

    def approval_blockers(self, actor: User, notification_id: int) -> dict[str, Any]:
        """Return why ``actor`` could not approve this notification now, for the page that offers it:
        ``{"settings_missing": message or None, "others_who_may_approve": [user names]}`` (the enabled
        users, other than the drafter, whose roles the review policy allows). Any reader.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "notification.view", [f"notification:{notification_id}"]) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "reading a notification")
            note = queries.notification_by_id(session, notification_id)
            roles = self.approver_roles(session)
            users = session.execute(select(User).where(User.id != note.drafted_by_id)).scalars()
            others = sorted(u.username for u in users if not u.disabled and any(u.has_role(r) for r in roles))
            missing = self.ctx.notification_blockers(session)
            return {
                "settings_missing": missing_message(missing) if missing else None,
                "approver_roles": list(roles),
                "others_who_may_approve": others,
            }

    def edit_draft(
        self, actor: User, notification_id: int, *, subject: str | None = None, body: str | None = None
    ) -> dict[str, Any]:
        """Change a draft's subject or plain text before approval (None leaves it). Only its drafter may;
        the HTML alternative is dropped (it carried the old text), the draft is marked edited (the
        approver is shown how it differs from the letter as rendered) and it is no longer rendered again.
        Audited as ``notification.edit`` with the fields changed. Role: examiner or reviewer.

        Raises:
            NotFoundError, InvalidInput (empty or too long), ConflictError (not a draft),
            PolicyError (not its drafter), PermissionDenied.
        """
        with self.ctx.transaction(actor, "notification.edit", [f"notification:{notification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, REVIEW_ROLES, "editing a notification")
            note = queries.notification_by_id(session, notification_id, for_update=True)
            if note.status != "draft":
                raise ConflictError(f"notification {note.id} is {note.status}; only a draft can be edited")
            if note.drafted_by_id != user.id:
                raise PolicyError("only the drafter of a notification may edit it, before its approval")
            new_subject = note.subject
            if subject is not None:
                new_subject = " ".join(required_text(subject, "subject", max_len=500).split())
            new_body = required_text(body, "body", max_len=50_000) + "\n" if body is not None else note.body
            changed = [f for f, old, new in (("subject", note.subject, new_subject), ("body", note.body, new_body))
                       if old != new]  # fmt: skip
            if changed:
                note.subject, note.body, note.body_html = new_subject, new_body, None
                note.edited_at = datetime.now(UTC)
                self.ctx.audit(
                    session,
                    user,
                    "notification.edit",
                    [f"notification:{note.id}", f"identification:{note.identification_id}"],
                    {"changed": changed},
                )
            return notification_view(note)

    def changes_from_rendered(self, actor: User, notification_id: int) -> list[str]:
        """Return how an edited draft differs from its letter rendered now (unified diff lines: ``-``
        rendered, ``+`` as edited); empty for a notification not edited. Any reader.

        Raises:
            NotFoundError, PermissionDenied, ConfigError (a broken template).
        """
        with self.ctx.transaction(actor, "notification.view", [f"notification:{notification_id}"]) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "reading a notification")
            note = queries.notification_by_id(session, notification_id)
            rendered = self.drafter.render_now(session, note) if note.edited_at is not None else None
            if rendered is None:
                return []
            before = [f"Subject: {rendered.subject}", "", *rendered.text.splitlines()]
            after = [f"Subject: {note.subject}", "", *note.body.splitlines()]
            diff = difflib.unified_diff(before, after, "as rendered from the settings", "as edited", lineterm="", n=1)
            return list(diff)

    def cancel_notification(self, actor: User, notification_id: int, *, reason: str) -> dict[str, Any]:
        """Cancel a notification not yet sent (draft, approved or failed), with a reason; a new
        one can then be drafted. Role: reviewer.

        Raises:
            NotFoundError, InvalidInput, ConflictError (sending or sent), PermissionDenied.
        """
        why = required_text(reason, "reason")
        with self.ctx.transaction(actor, "notification.cancel", [f"notification:{notification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, APPROVE_ROLES, "cancelling a notification")
            note = queries.notification_by_id(session, notification_id, for_update=True)
            if note.status not in CANCELLABLE:
                raise ConflictError(f"notification {note.id} is {note.status}; only unsent ones can be cancelled")
            note.status = "cancelled"
            note.flag = f"cancelled by {user.username}: {why}"
            self.ctx.audit(
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
        with self.ctx.transaction(actor, "notification.list", []) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "listing notifications")
            stmt = select(Notification).order_by(Notification.id.desc())
            if status:
                stmt = stmt.where(Notification.status == check_choice(status, NOTIFICATION_STATUSES, "status"))
            if identification_id is not None:
                stmt = stmt.where(Notification.identification_id == identification_id)
            rows = session.execute(queries.page(stmt, offset, limit)).scalars()
            return [notification_view(n, with_body=False) for n in rows]

    def get_notification(self, actor: User, notification_id: int) -> dict[str, Any]:
        """Return a notification with its text and delivery attempts. Any role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "notification.view", [f"notification:{notification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, READ_ROLES, "reading a notification")
            note = queries.notification_by_id(session, notification_id)
            # A draft is shown as it would be sent now: rendered from the current settings and records.
            self.drafter.refresh(session, user, note)
            records = [f"notification:{note.id}", f"contact:{note.contact_id}"]
            self.ctx.audit(session, user, "notification.view", records)
            attempts = session.execute(
                select(NotificationAttempt)
                .where(NotificationAttempt.notification_id == note.id)
                .order_by(NotificationAttempt.number)
            ).scalars()
            names = queries.usernames(session, {note.drafted_by_id, note.approved_by_id})
            return {
                **notification_view(note),
                "drafted_by": names.get(note.drafted_by_id),
                "approved_by": names.get(note.approved_by_id) if note.approved_by_id else None,
                "delivery_attempts": [attempt_view(a) for a in attempts],
            }
