"""What every workflow service shares: the gallery, its database and settings, the audit source,
and the three steps of every public operation (a transaction, the acting user, its audit events)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from facetrace.config import Settings
from facetrace.errors import PermissionDenied, PolicyError
from facetrace.gallery import Gallery
from facetrace.store import settings_store
from facetrace.store.accounts import User
from facetrace.store.audit import append_event
from facetrace.store.db import Database


class WorkflowContext:
    """The gallery and database one workflow works on, and the source its audit events record.

    Every public operation of a service runs in :meth:`transaction`, checks its actor with
    :meth:`acting_user` inside it, and appends its audit events with :meth:`audit` to it."""

    def __init__(self, gallery: Gallery, *, source: str | None = None) -> None:
        self.gallery = gallery
        self.settings: Settings = gallery.settings
        self.db: Database = gallery.db
        self.source = source

    def current_settings(self) -> Settings:
        """Return the settings in force now: the deployment's, with the values an admin saved where the
        deployment set none (read on every call, so a saved change applies without a restart)."""
        return settings_store.effective(self.db, self.settings)

    def settings_in(self, session: Session) -> Settings:
        """Return the settings in force now, read in the transaction of ``session``."""
        return settings_store.merge(self.settings, settings_store.saved_values(session))

    def notification_blockers(self, session: Session) -> list[str]:
        """Return the settings a notification needs that are not set yet (empty when none is missing)."""
        return settings_store.missing_for_notifications(self.settings, settings_store.saved_values(session))

    def with_source(self, source: str | None) -> WorkflowContext:
        """Return a context over the same gallery that records ``source`` in audit events."""
        return WorkflowContext(self.gallery, source=source)

    @contextmanager
    def transaction(self, actor: User | None, action: str, records: list[str]) -> Iterator[Session]:
        """Yield a session in a transaction; a refusal (PermissionDenied, PolicyError) is rolled
        back, then audited as ``denied`` in a transaction of its own, and raised again."""
        try:
            with self.db.session() as session:
                yield session
        except (PermissionDenied, PolicyError) as exc:
            self._record_refusal(actor, action, records, exc)
            raise

    def _record_refusal(
        self, actor: User | None, action: str, records: list[str], exc: PermissionDenied | PolicyError
    ) -> None:
        # Its own transaction, after the refused one rolled back: SQLite has one writer at a time.
        with self.db.session() as session:
            self.audit(session, actor, action, records, {"code": exc.code, "message": exc.message}, outcome="denied")

    @staticmethod
    def acting_user(session: Session, actor: User | None, roles: tuple[str, ...], doing: str) -> User:
        """Return the actor, re-read in this transaction, when enabled and holding one of ``roles``.

        Raises:
            PermissionDenied: no actor, unknown or disabled user, or none of the roles.
        """
        if actor is None:
            raise PermissionDenied(f"{doing} needs a signed-in user")
        user = session.get(User, actor.id)
        if user is None or user.disabled:
            raise PermissionDenied(f"user {actor.username!r} is unknown or disabled")
        if not any(user.has_role(role) for role in roles):
            raise PermissionDenied(f"{doing} needs the role {' or '.join(roles)}; {user.username} has not")
        return user

    @staticmethod
    def reread_user(session: Session, actor: User | None) -> User | None:
        """Return the actor as a row of this session (None for the system or an unknown user)."""
        return session.get(User, actor.id) if actor is not None else None

    def audit(
        self,
        session: Session,
        actor: User | None,
        action: str,
        records: list[str],
        detail: dict[str, Any] | None = None,
        *,
        outcome: str = "ok",
    ) -> None:
        """Append an audit event (actor, action, records, outcome, this context's source) to the
        transaction of ``session``."""
        append_event(
            session,
            actor=actor.username if actor is not None else None,
            action=action,
            records=records,
            outcome=outcome,
            source=self.source,
            detail=detail or {},
        )
