"""The notification outbox: approved notifications are sent by SMTP, at most once.

State machine of a notification::

    draft --approve--> approved --claim--> sending --+--> sent      (server accepted: 250 after DATA)
                                                     +--> refused   (5xx: permanent, not retried)
                                                     +--> failed    (connection error or 4xx before
                                                     |               the message was accepted:
                                                     |               claimed again by the next run,
                                                     |               up to notification_max_attempts)
                                                     +--> unknown   (connection lost during DATA)

**At most once.** A notification is *claimed* (approved/failed -> sending, attempt counted) in a
committed transaction *before* the SMTP dialogue, and its outcome recorded in a second one
after it. If the process dies between the two -- the server may or may not have accepted the
message -- the row stays ``sending``. Nothing ever sends a ``sending`` or ``unknown`` row again on
its own: the next outbox run, once the row has been ``sending`` for longer than
``notification_stale_seconds``, marks it ``unknown`` (audited). Sending a family a death
notification twice is worse than a delay, so an operator resolves it: look the notification's
Message-ID up in the mail server's log (or ask the recipient), then ``facetrace notification
resolve ID --delivered`` (it went out) or ``--resend`` (it did not; it is queued again with the
same Message-ID, so a mail client that got it can still tell the copies apart) or ``--cancel``.
A connection lost during DATA is ``unknown`` for the same reason; failures before DATA are safe
to retry.
"""

from __future__ import annotations

import math
import mimetypes
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError, FacetraceError
from facetrace.faults import fault_point
from facetrace.store.accounts import User
from facetrace.store.models import Image
from facetrace.store.workflow_models import Contact, Identification, Notification, NotificationAttempt
from facetrace.workflow import queries
from facetrace.workflow.common import (
    SEND_ROLES,
    as_utc,
    check_choice,
    notification_view,
    required_text,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.smtp import Delivery, deliver

MAX_STALE_SECONDS = 100 * 365 * 86400.0  # a century: nothing has been "sending" that long
RESOLUTIONS = ("delivered", "resend", "cancel")
RESOLVABLE = {
    "delivered": ("unknown", "sending"),
    "resend": ("unknown", "sending", "failed", "refused"),
    "cancel": ("unknown", "failed", "refused"),
}


class Outbox:
    """Send approved notifications (at most once) and resolve deliveries of unknown outcome."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx

    def _build_message(self, session: Session, note: Notification) -> EmailMessage:
        """Return the e-mail of a notification. Raises FacetraceError when an attachment is missing."""
        contact = session.get(Contact, note.contact_id)
        msg = EmailMessage()
        settings = self.ctx.settings_in(session)  # as saved now: a change applies without a restart
        sender = settings.smtp_sender
        msg["From"] = sender if "<" in sender else formataddr((settings.organisation_name, sender))
        msg["To"] = formataddr((contact.name if contact else "", note.recipient))
        msg["Subject"] = note.subject
        msg["Message-ID"] = note.message_id
        msg["Date"] = formatdate(usegmt=True)
        msg["X-Facetrace-Notification"] = str(note.id)
        msg.set_content(note.body)
        if note.body_html:
            msg.add_alternative(note.body_html, subtype="html")
        for image_id in note.attachments or []:
            image = session.get(Image, image_id)
            if image is None:
                raise FacetraceError(f"attached image {image_id} no longer exists")
            data = self.ctx.gallery.media.read(image.media_path)
            suffix = Path(image.media_path).suffix.lower() or ".jpg"
            mime = mimetypes.types_map.get(suffix, "application/octet-stream")
            maintype, subtype = mime.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=f"case-photo-{image_id}{suffix}")
        # Last: setting or converting the content moves Content-* headers into the body parts.
        msg["Content-Language"] = note.language
        return msg

    def _mark_stale(self, actor: User | None, stale_after_s: float) -> list[int]:
        """Mark notifications ``sending`` for longer than ``stale_after_s`` as ``unknown`` (never resent)."""
        # timedelta holds at most ~2.7 million years: a longer (or infinite, or NaN) wait means "never".
        seconds = min(stale_after_s, MAX_STALE_SECONDS) if math.isfinite(stale_after_s) else MAX_STALE_SECONDS
        cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        marked = []
        with self.ctx.db.session() as session:
            rows = session.execute(
                select(Notification).where(Notification.status == "sending").with_for_update()
            ).scalars()
            for note in rows:
                since = as_utc(note.sending_since)
                if since is not None and since > cutoff:
                    continue
                note.status = "unknown"
                note.outcome = "unknown"
                note.last_error = (
                    "the sender stopped during delivery: the message may or may not have been accepted; "
                    "check the mail server log for its Message-ID, then resolve it"
                )
                attempt = session.execute(
                    select(NotificationAttempt)
                    .where(NotificationAttempt.notification_id == note.id, NotificationAttempt.finished_at.is_(None))
                    .order_by(NotificationAttempt.number.desc())
                ).scalar()
                if attempt is not None:
                    attempt.finished_at = datetime.now(UTC)
                    attempt.outcome = "unknown"
                    attempt.detail = {"note": "found unfinished after a restart"}
                marked.append(note.id)
                self.ctx.audit(
                    session,
                    actor,
                    "notification.delivery_unknown",
                    [f"notification:{note.id}"],
                    {"message_id": note.message_id, "sending_since": since.isoformat() if since else None},
                    outcome="error",
                )
        return marked

    def claim(self, actor: User | None, nid: int) -> tuple[int, EmailMessage, str] | None:
        """Commit approved/failed -> sending before any SMTP traffic (the first step of sending a
        notification; :meth:`record_delivery` is the second); return (attempt id, message,
        recipient), or None when another sender claimed it first or it is no longer sendable."""
        with self.ctx.db.session() as session:
            note = session.get(Notification, nid)
            if note is None:
                return None
            try:
                message = self._build_message(session, note)
            except FacetraceError as exc:
                if note.status not in ("approved", "failed"):
                    return None
                note.status = "failed"
                note.last_error = exc.message
                note.attempts = self.ctx.settings.notification_max_attempts  # retrying cannot help
                records = [f"notification:{nid}"]
                detail = {"error": exc.message}
                self.ctx.audit(session, actor, "notification.deliver", records, detail, outcome="error")
                return None
            claimed = session.execute(
                update(Notification)
                .where(Notification.id == nid, Notification.status.in_(("approved", "failed")))
                .values(status="sending", sending_since=datetime.now(UTC), attempts=Notification.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None  # claimed by another sender, or cancelled meanwhile
            session.refresh(note)
            attempt = NotificationAttempt(notification_id=nid, number=note.attempts, detail={})
            session.add(attempt)
            session.flush()
            self.ctx.audit(
                session,
                actor,
                "notification.send",
                [f"notification:{nid}", f"identification:{note.identification_id}", f"contact:{note.contact_id}"],
                {"attempt": note.attempts, "message_id": note.message_id, "attachments": list(note.attachments or [])},
            )
            return attempt.id, message, note.recipient

    def record_delivery(self, actor: User | None, nid: int, attempt_id: int, delivery: Delivery) -> dict[str, Any]:
        """Record the outcome of an attempt :meth:`claim` started (its own transaction, after the SMTP
        dialogue); return ``{"id", "status", "outcome", "smtp_code", "detail"}``."""
        now = datetime.now(UTC)
        with self.ctx.db.session() as session:
            note = queries.notification_by_id(session, nid, for_update=True)
            attempt = session.get(NotificationAttempt, attempt_id)
            if attempt is not None:
                attempt.finished_at = now
                attempt.outcome = delivery.outcome
                attempt.smtp_code = delivery.code
                attempt.detail = {"reply": delivery.detail[:2000]}
            note.outcome = delivery.outcome
            if delivery.outcome == "accepted":
                note.status, note.sent_at, note.last_error = "sent", now, None
            elif delivery.outcome == "refused":
                note.status, note.last_error = "refused", delivery.detail[:2000]
            elif delivery.outcome == "unknown":
                note.status, note.last_error = "unknown", delivery.detail[:2000]
            else:
                note.status, note.last_error = "failed", delivery.detail[:2000]
            note.sending_since = None
            if delivery.outcome in ("refused", "error"):
                self._after_undelivered_withdrawn(session, actor, note)
            self.ctx.audit(
                session,
                actor,
                "notification.deliver",
                [f"notification:{nid}", f"identification:{note.identification_id}", f"contact:{note.contact_id}"],
                {"delivery": delivery.outcome, "smtp_code": delivery.code, "attempt": note.attempts},
                outcome="ok" if delivery.outcome == "accepted" else "error",
            )
            return {
                "id": nid,
                "status": note.status,
                "outcome": delivery.outcome,
                "smtp_code": delivery.code,
                "detail": delivery.detail,
            }

    def _after_undelivered_withdrawn(self, session: Session, actor: User | None, note: Notification) -> None:
        """A message of a withdrawn identification that was being sent when the withdrawal came,
        and turned out not delivered: it will not be retried, and its correction is not needed."""
        if note.kind != "identification":
            return
        ident = session.get(Identification, note.identification_id)
        if ident is None or ident.status != "withdrawn":
            return
        note.status = "cancelled"
        corrections = session.execute(
            select(Notification).where(
                Notification.corrects_id == note.id, Notification.status.in_(("draft", "approved", "failed"))
            )
        ).scalars()
        for correction in corrections:
            correction.status = "cancelled"
            correction.flag = f"notification {note.id}, which it corrects, was never delivered"
            self.ctx.audit(
                session,
                actor,
                "notification.cancel",
                [f"notification:{correction.id}", f"notification:{note.id}"],
                {"reason": "the corrected notification was never delivered"},
            )

    def send_notifications(
        self,
        actor: User | None,
        *,
        notification_ids: list[int] | None = None,
        stale_after_s: float | None = None,
    ) -> dict[str, Any]:
        """Run the outbox once: mark stale ``sending`` rows ``unknown``, then send every approved
        notification (and retry failed ones under the attempt limit), each at most once.
        ``actor`` None is the system (a scheduled run); otherwise role reviewer or admin.

        Returns ``{"results": [...], "marked_unknown": [...], "sent", "failed", "refused", "unknown"}``.

        Raises:
            PermissionDenied.
        """
        with self.ctx.transaction(actor, "notification.send", []) as session:
            doing = "sending notifications"
            user = self.ctx.acting_user(session, actor, SEND_ROLES, doing) if actor is not None else None
        stale = self.ctx.settings.notification_stale_seconds if stale_after_s is None else stale_after_s
        marked = self._mark_stale(user, max(0.0, float(stale)))
        with self.ctx.db.sessions() as session:
            stmt = (
                select(Notification.id)
                .where(
                    (Notification.status == "approved")
                    | (
                        (Notification.status == "failed")
                        & (Notification.attempts < self.ctx.settings.notification_max_attempts)
                    )
                )
                .order_by(Notification.id)
            )
            if notification_ids is not None:
                stmt = stmt.where(Notification.id.in_(notification_ids))
            todo = list(session.execute(stmt).scalars())
        results = []
        for nid in todo:
            claimed = self.claim(user, nid)
            if claimed is None:
                continue
            attempt_id, message, recipient = claimed
            fault_point("notify.after_claim")
            delivery = deliver(self.ctx.current_settings(), message, recipient)
            fault_point("notify.after_deliver")
            results.append(self.record_delivery(user, nid, attempt_id, delivery))
        counts = {k: sum(1 for r in results if r["status"] == k) for k in ("sent", "failed", "refused", "unknown")}
        return {"results": results, "marked_unknown": marked, **counts}

    def resolve_notification(
        self, actor: User, notification_id: int, *, resolution: str, rationale: str
    ) -> dict[str, Any]:
        """Settle a notification whose delivery is unknown (or stuck, failed or refused), with a
        rationale: ``delivered`` (it went out: recorded as sent), ``resend`` (queue it again, same
        Message-ID) or ``cancel``. Role: reviewer or admin.

        Raises:
            NotFoundError, InvalidInput, ConflictError (not in a state this resolution applies to),
            PermissionDenied.
        """
        check_choice(resolution, RESOLUTIONS, "resolution")
        why = required_text(rationale, "rationale")
        with self.ctx.transaction(actor, "notification.resolve", [f"notification:{notification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, SEND_ROLES, "resolving a notification")
            note = queries.notification_by_id(session, notification_id, for_update=True)
            if note.status not in RESOLVABLE[resolution]:
                raise ConflictError(
                    f"notification {note.id} is {note.status}; {resolution!r} applies to "
                    f"{', '.join(RESOLVABLE[resolution])}"
                )
            if resolution == "resend" and note.kind == "identification":
                ident = queries.identification_by_id(session, note.identification_id)
                if ident.status != "confirmed":
                    raise ConflictError(f"identification {ident.id} was withdrawn; do not resend its notification")
            before = note.status
            if resolution == "delivered":
                note.status, note.outcome, note.sent_at = "sent", "accepted", datetime.now(UTC)
            elif resolution == "resend":
                note.status = "approved"
            else:
                note.status = "cancelled"
            note.sending_since = None
            note.flag = f"{resolution} by {user.username}: {why}"
            self.ctx.audit(
                session,
                user,
                "notification.resolve",
                [f"notification:{note.id}"],
                {"resolution": resolution, "from": before, "rationale": why},
            )
            return notification_view(note)
