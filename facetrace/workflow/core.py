"""The base of :class:`facetrace.workflow.Workflow`: transactions, actors, audit and look-ups."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.config import Settings
from facetrace.errors import NotFoundError, PermissionDenied, PolicyError
from facetrace.gallery import Gallery
from facetrace.store.accounts import User
from facetrace.store.audit import append_event
from facetrace.store.db import Database
from facetrace.store.workflow_models import Case, Contact, Identification, Lead, Notification, Report
from facetrace.workflow.common import InvalidInput, report_view

MAX_MERGE_DEPTH = 50


class WorkflowCore:
    """Holds the gallery and database; every public method of the workflow runs in its own
    transaction, checks the actor's roles inside it, and appends its audit events to it."""

    def __init__(self, gallery: Gallery, *, source: str | None = None) -> None:
        self.gallery = gallery
        self.settings: Settings = gallery.settings
        self.db: Database = gallery.db
        self.source = source

    def with_source(self, source: str | None) -> Self:
        """Return a copy that records ``source`` (a client address, or ``cli``) in audit events."""
        clone = copy.copy(self)
        clone.source = source
        return clone

    # -- transactions, actors, audit -----------------------------------------------------------
    @contextmanager
    def _tx(self, actor: User | None, action: str, records: list[str]) -> Iterator[Session]:
        """A transaction; a refusal (permission or policy) is rolled back, then audited as denied."""
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
            append_event(
                session,
                actor=actor.username if actor is not None else None,
                action=action,
                records=records,
                outcome="denied",
                source=self.source,
                detail={"code": exc.code, "message": exc.message},
            )

    def _user(self, session: Session, actor: User | None, roles: tuple[str, ...], doing: str) -> User:
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

    def _audit(
        self,
        session: Session,
        actor: User | None,
        action: str,
        records: list[str],
        detail: dict[str, Any] | None = None,
        *,
        outcome: str = "ok",
    ) -> None:
        append_event(
            session,
            actor=actor.username if actor is not None else None,
            action=action,
            records=records,
            outcome=outcome,
            source=self.source,
            detail=detail or {},
        )

    # -- look-ups -------------------------------------------------------------------------------
    @staticmethod
    def _by_ref(session: Session, model: Any, ref: str | int, what: str) -> Any:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
            row = session.get(model, int(ref))
        else:
            row = session.execute(select(model).where(model.reference == str(ref).strip())).scalar()
        if row is None:
            raise NotFoundError(f"no {what} {ref!r}")
        return row

    def _report(self, session: Session, ref: str | int) -> Report:
        """Return the report with this reference (or numeric id). Raises NotFoundError."""
        report: Report = self._by_ref(session, Report, ref, "report")
        return report

    def _case(self, session: Session, ref: str | int) -> Case:
        """Return the case with this reference (or numeric id). Raises NotFoundError."""
        case: Case = self._by_ref(session, Case, ref, "case")
        return case

    @staticmethod
    def _get(session: Session, model: Any, ident: int, what: str, *, for_update: bool = False) -> Any:
        if not isinstance(ident, int) or ident < 1:
            raise InvalidInput(f"{what} id must be a positive number")
        stmt = select(model).where(model.id == ident)
        if for_update:
            # Serialises concurrent reviewers/approvers on PostgreSQL; SQLite has one writer anyway.
            stmt = stmt.with_for_update()
        row = session.execute(stmt).scalar()
        if row is None:
            raise NotFoundError(f"no {what} {ident}")
        return row

    def _lead(self, session: Session, lead_id: int, *, for_update: bool = False) -> Lead:
        lead: Lead = self._get(session, Lead, lead_id, "lead", for_update=for_update)
        return lead

    def _identification(self, session: Session, ident_id: int, *, for_update: bool = False) -> Identification:
        ident: Identification = self._get(session, Identification, ident_id, "identification", for_update=for_update)
        return ident

    def _notification(self, session: Session, nid: int, *, for_update: bool = False) -> Notification:
        n: Notification = self._get(session, Notification, nid, "notification", for_update=for_update)
        return n

    @staticmethod
    def _root_report(session: Session, report: Report) -> Report:
        """Follow ``merged_into`` links to the report that now stands for this person."""
        seen = {report.id}
        while report.merged_into_id is not None and len(seen) < MAX_MERGE_DEPTH:
            target = session.get(Report, report.merged_into_id)
            if target is None or target.id in seen:
                break
            seen.add(target.id)
            report = target
        return report

    @staticmethod
    def _merged_family(session: Session, root_id: int) -> list[int]:
        """Return ``root_id`` and the ids of every report merged (directly or not) into it."""
        family = [root_id]
        frontier = [root_id]
        while frontier and len(family) < 10_000:
            children = list(session.execute(select(Report.id).where(Report.merged_into_id.in_(frontier))).scalars())
            children = [c for c in children if c not in family]
            family.extend(children)
            frontier = children
        return family

    def _contacts_of(self, session: Session, report: Report) -> list[Contact]:
        """Return the registered contacts of a report and of the reports merged into it."""
        family = self._merged_family(session, report.id)
        return list(
            session.execute(select(Contact).where(Contact.report_id.in_(family)).order_by(Contact.id)).scalars()
        )

    @staticmethod
    def _usernames(session: Session, ids: set[int] | set[int | None]) -> dict[int, str]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return {}
        rows = session.execute(select(User.id, User.username).where(User.id.in_(wanted))).all()
        return {int(i): str(n) for i, n in rows}

    def _report_snapshot(self, report_id: int) -> dict[str, Any]:
        with self.db.sessions() as session:
            report = session.get(Report, report_id)
            assert report is not None
            return report_view(report)
