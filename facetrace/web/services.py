"""Read-side helpers of the web pages: queue counts, recent activity, record history, media
look-ups, plain-words explanations of scores and quality, and blind review.

Everything that changes state goes through :class:`facetrace.workflow.Workflow` or the use-cases
(:mod:`facetrace.usecases`); this module only reads (and appends the audit events of views the workflow does not
record itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from facetrace.errors import NotFoundError
from facetrace.store.accounts import AuditEvent, User
from facetrace.store.audit import append_event, list_events
from facetrace.store.db import Database
from facetrace.store.models import Face, Image, Person
from facetrace.store.reconciliation_models import Mark, MarkPhoto
from facetrace.store.workflow_models import (
    Case,
    CaseImage,
    Contact,
    Identification,
    Lead,
    Notification,
    Report,
    Review,
)
from facetrace.workflow import queries
from facetrace.workflow.common import (
    READ_ROLES,
    REVIEW_ROLES,
    SECOND_CONFIRM_ROLE,
    case_view,
    contact_view,
    report_view,
)

# Actions shown as "recent activity" on the dashboard (no views, searches or logins there).
ACTIVITY_ACTIONS = (
    "report.create",
    "report.update",
    "report.photos_add",
    "report.merge",
    "contact.create",
    "contact.update",
    "duplicate.dismiss",
    "case.create",
    "case.update",
    "case.photos_add",
    "lead.create",
    "lead.review",
    "evidence.add",
    "identification.confirm",
    "identification.withdraw",
    "notification.draft",
    "notification.approve",
    "notification.cancel",
    "notification.deliver",
)
# Details never shown outside the audit viewer: a review's decision would break blind review.
HIDDEN_DETAIL_ACTIONS = {"lead.review"}


# -- plain words ---------------------------------------------------------------------------------
TINY_RATE = 1e-6  # below this, calibration cannot say how rare: "fewer than 1 in 1,000,000"


def one_in(rate: float) -> str:
    """Return ``N`` of "about 1 in N" for a rate, with two significant figures and thousands
    separators ("1,200"); "1,000,000" at or below one in a million (see :func:`rarity`)."""
    if rate <= TINY_RATE:
        return "1,000,000"
    n = 1.0 / rate
    digits = max(0, int(math.floor(math.log10(n))) - 1)
    rounded = round(n / 10**digits) * 10**digits
    return f"{max(1, int(rounded)):,}"


def rarity(rate: float, what: str) -> str:
    """Return "about 1 of N WHAT", "fewer than 1 of 1,000,000 WHAT" or "about P% of WHAT"."""
    if rate >= 0.2:
        return f"about {rate:.0%} of {what}"
    if rate <= TINY_RATE:
        return f"fewer than 1 of {one_in(rate)} {what}"
    return f"about 1 of {one_in(rate)} {what}"


def fpir_words(fpir: float, gallery_size: int) -> str:
    """Return the FPIR of a score in plain words, e.g. "A false match this strong happens in
    about 1 of 2,000 searches of a gallery this size (12 persons)."."""
    size = f"{gallery_size:,} person{'s' if gallery_size != 1 else ''}"
    weak = ": weak evidence on its own" if fpir >= 0.2 else ""
    return f"A false match this strong happens in {rarity(fpir, 'searches')} of a gallery this size ({size}){weak}."


def fmr_words(fmr: float) -> str:
    """Return the FMR of a score in plain words."""
    return f"Two different people score this high in {rarity(fmr, 'comparisons')}."


def quality_problems(detail: dict[str, Any] | None, score: float, min_quality: float) -> list[str]:
    """Return what makes a face hard to compare, in words (empty when nothing stands out).

    The limits follow the ramps of :mod:`facetrace.vision.quality`: each names the factor that
    pulls the score down.
    """
    detail = detail or {}
    problems = []
    if score < min_quality:
        problems.append(f"quality {score:.0f} is below the minimum {min_quality:.0f}: not usable for identification")
    eyes = float(detail.get("eye_distance_px", 100.0))
    if eyes < 20:
        problems.append(f"the face is small ({eyes:.0f} px between the eyes)")
    sharp = float(detail.get("sharpness", 1000.0))
    if sharp < 15:
        problems.append("the face is blurred or out of focus")
    yaw = float(detail.get("yaw_deg", 0.0))
    if abs(yaw) > 30:
        problems.append(f"the head is turned away (about {abs(yaw):.0f} degrees)")
    det = detail.get("detector_score")
    if det is not None and float(det) < 0.0:
        problems.append("the face detector was unsure")
    return problems


# Blind review is enforced by the workflow itself (facetrace.workflow.blind): get_lead returns blinded leads.
def can_review(user: User) -> bool:
    """Return whether the user may review leads and record evidence."""
    return any(user.has_role(r) for r in REVIEW_ROLES)


def can_read(user: User) -> bool:
    """Return whether the user may read the case files (reports, cases, leads)."""
    return any(user.has_role(r) for r in READ_ROLES)


# -- queues --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueCounts:
    """The dashboard's queues."""

    new_leads: int
    awaiting_second_review: int
    notifications_to_approve: int
    notifications_to_send: int
    delivery_problems: int


def awaiting_second_review(session: Session) -> list[int]:
    """Return the ids of leads reviewed by exactly one user and not yet closed (whatever that
    user decided: the queue must not give the decision away)."""
    rows = session.execute(
        select(Review.lead_id)
        .join(Lead, Lead.id == Review.lead_id)
        .where(Lead.status.in_(("under_review", "rejected")))
        .group_by(Review.lead_id)
        .having(func.count(distinct(Review.reviewer_id)) == 1)
    ).scalars()
    return sorted(int(i) for i in rows)


@dataclass(frozen=True)
class WaitingItem:
    """One thing waiting for the signed-in user: what to do, and where."""

    kind: str  # "review", "second_review" or "approve"
    href: str
    text: str


def waiting_for(db: Database, user: User, approver_roles: tuple[str, ...], limit: int = 20) -> list[WaitingItem]:
    """Return what waits for ``user`` personally, oldest first in each kind: new leads to review (an
    examiner or reviewer), leads awaiting the second, establishing review that ``user`` did not give the
    first one of (a reviewer), and drafts that ``user`` may approve because someone else drafted them."""
    items: list[WaitingItem] = []
    with db.sessions() as session:
        if any(user.has_role(r) for r in REVIEW_ROLES):
            leads = session.execute(select(Lead).where(Lead.status == "open").order_by(Lead.id).limit(limit)).scalars()
            items += [WaitingItem("review", f"/leads/{lead.id}", f"lead {lead.id}: first review") for lead in leads]
        if user.has_role(SECOND_CONFIRM_ROLE):
            mine = set(session.execute(select(Review.lead_id).where(Review.reviewer_id == user.id)).scalars())
            second = [lead_id for lead_id in awaiting_second_review(session) if lead_id not in mine][:limit]
            items += [WaitingItem("second_review", f"/leads/{i}", f"lead {i}: second review") for i in second]
        if any(user.has_role(r) for r in approver_roles):
            drafts = session.execute(
                select(Notification.id)
                .where(Notification.status == "draft", Notification.drafted_by_id != user.id)
                .order_by(Notification.id)
                .limit(limit)
            ).scalars()
            items += [WaitingItem("approve", f"/notifications/{n}", f"notification {n}: approval") for n in drafts]
    return items


def queue_counts(db: Database) -> QueueCounts:
    """Return the counts of the dashboard's queues."""
    with db.sessions() as session:
        new_leads = session.execute(select(func.count(Lead.id)).where(Lead.status == "open")).scalar() or 0

        def notes(*statuses: str) -> int:
            return int(
                session.execute(select(func.count(Notification.id)).where(Notification.status.in_(statuses))).scalar()
                or 0
            )

        return QueueCounts(
            new_leads=int(new_leads),
            awaiting_second_review=len(awaiting_second_review(session)),
            notifications_to_approve=notes("draft"),
            notifications_to_send=notes("approved"),
            delivery_problems=notes("failed", "refused", "unknown", "sending"),
        )


# -- audit: activity and history -----------------------------------------------------------------
def _event_row(event: AuditEvent, *, with_detail: bool) -> dict[str, Any]:
    row = event.as_dict()
    if not with_detail or event.action in HIDDEN_DETAIL_ACTIONS:
        row["detail"] = {}
    return row


def recent_activity(db: Database, limit: int = 12) -> list[dict[str, Any]]:
    """Return the latest workflow events (records created, reviewed, confirmed, notified), newest
    first, without their details."""
    with db.sessions() as session:
        rows = session.execute(
            select(AuditEvent)
            .where(AuditEvent.action.in_(ACTIVITY_ACTIONS), AuditEvent.outcome == "ok")
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        ).scalars()
        return [_event_row(e, with_detail=False) for e in rows]


def record_history(db: Database, records: list[str], limit: int = 100) -> list[dict[str, Any]]:
    """Return the audit events naming any of ``records`` (e.g. ``["case:3", "lead:7"]``), newest
    first, with review decisions left out (blind review)."""
    found: dict[int, AuditEvent] = {}
    with db.sessions() as session:
        for record in records:
            rows, _ = list_events(session, record=record, limit=limit)
            for event in rows:
                found[event.id] = event
        events = sorted(found.values(), key=lambda e: e.id, reverse=True)[:limit]
        return [_event_row(e, with_detail=True) for e in events]


def audit_view(db: Database, actor: User, source: str | None, action: str, records: list[str], **detail: Any) -> None:
    """Append the audit event of a view that no workflow read records (a photo or a face crop)."""
    with db.session() as session:
        append_event(
            session,
            actor=actor.username,
            action=action,
            records=records,
            source=source,
            detail={k: v for k, v in detail.items() if v is not None},
        )


# -- media ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MediaRef:
    """A stored image (and optionally one of its faces), and the records it belongs to."""

    image_id: int
    media_path: str
    original_name: str
    records: list[str]
    box: list[int] | None = None
    face_id: int | None = None


def _image_records(session: Session, image: Image) -> list[str]:
    records = [f"image:{image.id}"]
    mark = session.execute(
        select(Mark.id, Mark.report_id, Mark.case_id)
        .join(MarkPhoto, MarkPhoto.mark_id == Mark.id)
        .where(MarkPhoto.image_id == image.id)
    ).first()
    if mark is not None:  # a photo of a distinguishing mark: the record the mark is on
        records.append(f"mark:{mark.id}")
        records.append(f"report:{mark.report_id}" if mark.report_id else f"case:{mark.case_id}")
    case_id = session.execute(select(CaseImage.case_id).where(CaseImage.image_id == image.id)).scalar()
    if case_id is not None:
        records.append(f"case:{case_id}")
    if image.person_id is not None:
        records.append(f"person:{image.person_id}")
        report_id = session.execute(select(Report.id).where(Report.person_id == image.person_id)).scalar()
        if report_id is not None:
            records.append(f"report:{report_id}")
    return records


def image_ref(db: Database, image_id: int) -> MediaRef:
    """Return a stored image of a case, a report or a gallery person.

    Raises:
        NotFoundError: no such image, or one that belongs to no record.
    """
    with db.sessions() as session:
        image = session.get(Image, image_id)
        if image is None:
            raise NotFoundError(f"no image {image_id}")
        records = _image_records(session, image)
        if len(records) == 1:
            raise NotFoundError(f"image {image_id} belongs to no record")
        return MediaRef(image.id, image.media_path, image.original_name, records)


def face_ref(db: Database, face_id: int) -> MediaRef:
    """Return a stored face with its image. Raises NotFoundError."""
    with db.sessions() as session:
        face = session.get(Face, face_id)
        if face is None:
            raise NotFoundError(f"no face {face_id}")
        image = session.get(Image, face.image_id)
        if image is None:
            raise NotFoundError(f"no face {face_id}")
        records = [f"face:{face.id}", *_image_records(session, image)]
        return MediaRef(image.id, image.media_path, image.original_name, records, list(face.box), face.id)


def report_faces(db: Database, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every reference face of a report (its gallery person), best quality first."""
    person_id = report.get("person_id")
    if person_id is None:
        return []
    with db.sessions() as session:
        rows = session.execute(
            select(Face).where(Face.person_id == person_id).order_by(Face.quality.desc(), Face.id)
        ).scalars()
        return [
            {
                "face_id": f.id,
                "image_id": f.image_id,
                "box": list(f.box),
                "quality": round(f.quality, 1),
                "quality_detail": f.quality_detail or {},
            }
            for f in rows
        ]


def face_details(db: Database, face_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Return the stored quality measurements of faces, by face id."""
    ids = [i for i in face_ids if i is not None]
    if not ids:
        return {}
    with db.sessions() as session:
        rows = session.execute(select(Face).where(Face.id.in_(ids))).scalars()
        return {f.id: {"quality": round(f.quality, 1), "detail": f.quality_detail or {}} for f in rows}


def person_report_refs(db: Database, person_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Return, for gallery persons that stand for reports, the report's reference and name."""
    if not person_ids:
        return {}
    with db.sessions() as session:
        rows = session.execute(
            select(Report.person_id, Report.reference, Report.name, Report.status).where(
                Report.person_id.in_(person_ids)
            )
        ).all()
        return {int(p): {"reference": r, "name": n, "status": s} for p, r, n, s in rows if p is not None}


def person_exists(db: Database, person_id: int) -> bool:
    """Return whether a gallery person exists."""
    with db.sessions() as session:
        return session.get(Person, person_id) is not None


def image_paths(db: Database, image_ids: list[int]) -> dict[int, str]:
    """Return the media paths of stored images, by image id."""
    if not image_ids:
        return {}
    with db.sessions() as session:
        rows = session.execute(select(Image.id, Image.media_path).where(Image.id.in_(image_ids))).all()
        return {int(i): str(p) for i, p in rows}


def reviewed_leads(db: Database, user_id: int) -> set[int]:
    """Return the ids of the leads that a user has reviewed."""
    with db.sessions() as session:
        return {
            int(i)
            for i in session.execute(select(Review.lead_id).where(Review.reviewer_id == user_id).distinct()).scalars()
        }


def contact(db: Database, contact_id: int) -> dict[str, Any] | None:
    """Return a registered contact, or None when it no longer exists."""
    with db.sessions() as session:
        row = session.get(Contact, contact_id)
        return contact_view(row) if row is not None else None


# -- references of records, for links instead of ids ----------------------------------------------
def current_report(db: Database, reference: str) -> dict[str, Any]:
    """Return a report's JSON view as committed, read to compare a correction form with (not a view
    by a person, so not audited). Raises NotFoundError."""
    with db.sessions() as session:
        return report_view(queries.report_by_reference(session, reference))


def current_case(db: Database, reference: str) -> dict[str, Any]:
    """Return a case's JSON view as committed, read to compare a correction form with (not a view
    by a person, so not audited). Raises NotFoundError."""
    with db.sessions() as session:
        return case_view(queries.case_by_reference(session, reference))


def report_refs(db: Database, report_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Return, by report id, each report's reference, name and status (ids no longer there are left out)."""
    ids = sorted({int(i) for i in report_ids if i is not None})
    if not ids:
        return {}
    with db.sessions() as session:
        rows = session.execute(
            select(Report.id, Report.reference, Report.name, Report.status).where(Report.id.in_(ids))
        ).all()
        return {int(i): {"reference": r, "name": n, "status": s} for i, r, n, s in rows}


def case_refs(db: Database, case_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Return, by case id, each case's reference and status (ids no longer there are left out)."""
    ids = sorted({int(i) for i in case_ids if i is not None})
    if not ids:
        return {}
    with db.sessions() as session:
        rows = session.execute(select(Case.id, Case.reference, Case.status).where(Case.id.in_(ids))).all()
        return {int(i): {"reference": r, "status": s} for i, r, s in rows}


def confirmed_identification(db: Database, case_id: int) -> dict[str, Any] | None:
    """Return the confirmed identification of a case (``{"id", "lead_id", "report"}``, the report's
    reference), or None when the case has none."""
    with db.sessions() as session:
        row = session.execute(
            select(Identification.id, Identification.lead_id, Report.reference)
            .join(Report, Report.id == Identification.report_id)
            .where(Identification.case_id == case_id, Identification.status == "confirmed")
        ).first()
        return None if row is None else {"id": int(row[0]), "lead_id": int(row[1]), "report": row[2]}
