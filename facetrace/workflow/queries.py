"""The look-ups every workflow service needs, each written once: records by reference or id,
merged report families, contacts, usernames, a lead's reviews and evidence, confirmed identifications."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrace.errors import NotFoundError
from facetrace.store.accounts import User
from facetrace.store.db import Database
from facetrace.store.workflow_models import (
    Case,
    CaseImage,
    Contact,
    Evidence,
    Identification,
    Lead,
    Notification,
    Report,
    Review,
)
from facetrace.workflow.common import InvalidInput, case_view, report_view

MAX_MERGE_DEPTH = 50
MAX_FAMILY = 10_000
RECORD_MODELS: dict[str, type[Report] | type[Case]] = {"report": Report, "case": Case}
RecordT = TypeVar("RecordT", Report, Case)
T = TypeVar("T")


# -- records by reference or id -----------------------------------------------------------------
def _by_reference(session: Session, model: type[RecordT], ref: str | int, what: str) -> RecordT:
    row: RecordT | None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        row = session.get(model, int(ref))
    else:
        row = session.execute(select(model).where(model.reference == str(ref).strip())).scalar()
    if row is None:
        raise NotFoundError(f"no {what} {ref!r}")
    return row


def report_by_reference(session: Session, ref: str | int) -> Report:
    """Return the report with this reference (or numeric id). Raises NotFoundError."""
    return _by_reference(session, Report, ref, "report")


def case_by_reference(session: Session, ref: str | int) -> Case:
    """Return the case with this reference (or numeric id). Raises NotFoundError."""
    return _by_reference(session, Case, ref, "case")


def record_by_reference(session: Session, kind: str, ref: str | int) -> Report | Case:
    """Return the report or case (``kind``) with this reference, or numeric id.

    Raises:
        NotFoundError: no such record.
    """
    if kind == "report":
        return report_by_reference(session, ref)
    if kind == "case":
        return case_by_reference(session, ref)
    raise ValueError(f"unknown record kind {kind!r}")


def reference_taken(session: Session, kind: str, ref: str) -> bool:
    """Return whether a report or case (``kind``) already has the reference ``ref``."""
    model = RECORD_MODELS[kind]
    return session.execute(select(model.id).where(model.reference == ref)).scalar() is not None


def row_by_id(session: Session, model: Any, ident: int, what: str, *, for_update: bool = False) -> Any:
    """Return the ``model`` row with id ``ident`` (locked for update when asked).

    Raises:
        InvalidInput: ``ident`` is not a positive number.
        NotFoundError: no such row.
    """
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


def lead_by_id(session: Session, lead_id: int, *, for_update: bool = False) -> Lead:
    """Return a lead. Raises InvalidInput or NotFoundError."""
    lead: Lead = row_by_id(session, Lead, lead_id, "lead", for_update=for_update)
    return lead


def identification_by_id(session: Session, ident_id: int, *, for_update: bool = False) -> Identification:
    """Return an identification. Raises InvalidInput or NotFoundError."""
    ident: Identification = row_by_id(session, Identification, ident_id, "identification", for_update=for_update)
    return ident


def notification_by_id(session: Session, nid: int, *, for_update: bool = False) -> Notification:
    """Return a notification. Raises InvalidInput or NotFoundError."""
    note: Notification = row_by_id(session, Notification, nid, "notification", for_update=for_update)
    return note


def page(stmt: Any, offset: int, limit: int) -> Any:
    """Return ``stmt`` limited to one page (offset at least 0, 1 to 1000 rows)."""
    return stmt.offset(max(0, offset)).limit(max(1, min(limit, 1000)))


def page_of(items: list[T], offset: int, limit: int) -> list[T]:
    """Return one page of ``items`` with the bounds of :func:`page`."""
    start = max(0, offset)
    return items[start : start + max(1, min(limit, 1000))]


# -- merged reports and contacts ----------------------------------------------------------------
def root_report(session: Session, report: Report) -> Report:
    """Follow ``merged_into`` links to the report that now stands for this person."""
    seen = {report.id}
    while report.merged_into_id is not None and len(seen) < MAX_MERGE_DEPTH:
        target = session.get(Report, report.merged_into_id)
        if target is None or target.id in seen:
            break
        seen.add(target.id)
        report = target
    return report


def merged_family(session: Session, root_id: int) -> list[int]:
    """Return ``root_id`` and the ids of every report merged (directly or not) into it."""
    family = [root_id]
    frontier = [root_id]
    while frontier and len(family) < MAX_FAMILY:
        children = list(session.execute(select(Report.id).where(Report.merged_into_id.in_(frontier))).scalars())
        children = [c for c in children if c not in family]
        family.extend(children)
        frontier = children
    return family


def family_person_ids(session: Session, report_ids: list[int] | set[int]) -> list[int]:
    """Return the gallery person ids of these reports (those that have photos)."""
    return [
        p for p in session.execute(select(Report.person_id).where(Report.id.in_(report_ids))).scalars() if p is not None
    ]


def contacts_of(session: Session, report: Report) -> list[Contact]:
    """Return the registered contacts of a report and of the reports merged into it."""
    family = merged_family(session, report.id)
    return list(session.execute(select(Contact).where(Contact.report_id.in_(family)).order_by(Contact.id)).scalars())


# -- people, reviews, evidence, identifications -------------------------------------------------
def usernames(session: Session, ids: set[int] | set[int | None]) -> dict[int, str]:
    """Return the usernames of these user ids (None ignored)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(wanted))).all()
    return {int(i): str(n) for i, n in rows}


def reviews_of(session: Session, lead_id: int) -> list[Review]:
    """Return a lead's reviews, oldest first."""
    return list(session.execute(select(Review).where(Review.lead_id == lead_id).order_by(Review.id)).scalars())


def evidence_of(session: Session, lead_id: int) -> list[Evidence]:
    """Return a lead's evidence items, oldest first."""
    return list(session.execute(select(Evidence).where(Evidence.lead_id == lead_id).order_by(Evidence.id)).scalars())


def confirmed_identification_id(
    session: Session, *, report_id: int | None = None, case_id: int | None = None
) -> int | None:
    """Return the id of the confirmed identification of this report or this case, or None."""
    if report_id is None and case_id is None:
        raise ValueError("name a report or a case")
    stmt = select(Identification.id).where(Identification.status == "confirmed")
    if report_id is not None:
        stmt = stmt.where(Identification.report_id == report_id)
    if case_id is not None:
        stmt = stmt.where(Identification.case_id == case_id)
    found = session.execute(stmt).scalar()
    return int(found) if found is not None else None


# -- snapshots after a change -------------------------------------------------------------------
def report_snapshot(db: Database, report_id: int) -> dict[str, Any]:
    """Return the JSON view of a report as committed."""
    with db.sessions() as session:
        report = session.get(Report, report_id)
        assert report is not None
        return report_view(report)


def case_snapshot(db: Database, case_id: int) -> dict[str, Any]:
    """Return the JSON view of a case as committed, with its number of photos."""
    with db.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        photos = session.execute(select(func.count(CaseImage.id)).where(CaseImage.case_id == case_id)).scalar()
        return {**case_view(case), "photo_count": int(photos or 0)}
