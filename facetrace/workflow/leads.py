"""Writing what continuous matching found: leads (case-report pairs) and duplicate-report flags.

One threshold: the score at which a search of the gallery (all enrolled persons, N of them) for
someone not in it returns a candidate that strong with probability ``Settings.review_fpir``
(``Gallery.calibration.threshold(review_fpir, N)``). A pair's score is its best pair of faces.
Writing is idempotent: one lead per (case, report) and one flag per pair of reports, whatever
the order of concurrent writers (ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from facetrace.gallery import Gallery
from facetrace.store.accounts import User
from facetrace.store.models import Face
from facetrace.store.workflow_models import Case, DuplicateFlag, Lead
from facetrace.workflow.context import WorkflowContext


@dataclass(frozen=True)
class ReviewPolicy:
    """The review threshold in force: the target FPIR, the gallery size N and the score threshold."""

    review_fpir: float
    gallery_size: int
    threshold: float

    @classmethod
    def for_gallery(cls, gallery: Gallery, review_fpir: float, gallery_size: int) -> ReviewPolicy:
        """Return the policy of ``review_fpir`` over a gallery of ``gallery_size`` persons (at least 1)."""
        n = max(1, gallery_size)
        return cls(review_fpir, n, gallery.calibration.threshold(review_fpir, n))

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"review_fpir", "gallery_size", "threshold"}``."""
        return {"review_fpir": self.review_fpir, "gallery_size": self.gallery_size, "threshold": self.threshold}

    def rounded(self) -> dict[str, Any]:
        """Return :meth:`to_dict` with the threshold rounded for display (4 decimals)."""
        return {**self.to_dict(), "threshold": round(float(self.threshold), 4)}


@dataclass(frozen=True)
class PairHit:
    """The best pair of faces of one case and one (root) report, or a pair that only marks and
    descriptors tie (``basis`` ``marks``: no faces, score 0): a lead if it is new.

    ``secondary`` is the pair's agreement beyond the face (``Agreement.to_dict()``) and
    ``adjusted_fpir`` the FPIR of face and agreement together (:mod:`facetrace.workflow.reconcile.agreement`).
    """

    case_id: int
    report_id: int
    score: float
    case_face_id: int | None
    report_face_id: int | None
    basis: str = "face"
    secondary: dict[str, Any] | None = None
    adjusted_fpir: float | None = None


def _insert(session: Session, model: Any) -> Any:
    """Return the dialect's INSERT (with ON CONFLICT support) for ``model``."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model)
    return sqlite_insert(model)


def upsert_leads(
    ctx: WorkflowContext, session: Session, user: User | None, hits: list[PairHit], policy: ReviewPolicy
) -> dict[str, list[int]]:
    """Create a lead per new pair (never a duplicate: ON CONFLICT on (case, report)); raise the
    score of a pair not yet reviewed when a better face pair appeared. Audited.

    Returns ``{"created", "updated", "unchanged"}`` lead ids.
    """
    created: list[int] = []
    updated: list[int] = []
    unchanged: list[int] = []
    calibration = ctx.gallery.calibration
    n = policy.gallery_size
    for hit in hits:
        values = _lead_values(session, hit, policy, calibration)
        if values is None:
            continue  # a face erased meanwhile
        stmt = (
            _insert(session, Lead)
            .values(case_id=hit.case_id, report_id=hit.report_id, status="open", **values)
            .on_conflict_do_nothing(index_elements=["case_id", "report_id"])
            .returning(Lead.id)
        )
        new_id = session.execute(stmt).scalar()
        if new_id is not None:
            created.append(int(new_id))
            case = session.get(Case, hit.case_id)
            if case is not None and case.status == "open":
                case.status = "under_review"
            ctx.audit(
                session,
                user,
                "lead.create",
                [f"lead:{new_id}", f"case:{hit.case_id}", f"report:{hit.report_id}"],
                {
                    "score": round(hit.score, 4),
                    "fpir": values["fpir"],
                    "threshold": round(values["threshold"], 4),
                    "gallery_size": n,
                    "basis": hit.basis,
                    **({"adjusted_fpir": hit.adjusted_fpir} if hit.adjusted_fpir is not None else {}),
                },
            )
            continue
        lead = session.execute(
            select(Lead).where(Lead.case_id == hit.case_id, Lead.report_id == hit.report_id)
        ).scalar_one()
        if lead.status == "open" and _better(hit, lead):
            before = lead.score
            for key, value in values.items():
                setattr(lead, key, value)
            updated.append(lead.id)
            ctx.audit(
                session,
                user,
                "lead.update",
                [f"lead:{lead.id}", f"case:{lead.case_id}", f"report:{lead.report_id}"],
                {"score_before": round(before, 4), "score": round(hit.score, 4)},
            )
        else:
            unchanged.append(lead.id)
    return {"created": created, "updated": updated, "unchanged": unchanged}


def _better(hit: PairHit, lead: Lead) -> bool:
    """Whether a new hit on an open lead's pair is stronger: a better face pair, or (same basis) a
    lower adjusted FPIR after new descriptors or marks."""
    if hit.basis != "marks" and lead.basis == "marks":
        return True  # a face appeared: the pair is now a face lead
    if hit.basis != "marks" and hit.score > lead.score + 1e-6:
        return True
    return (
        hit.adjusted_fpir is not None
        and lead.adjusted_fpir is not None
        and hit.basis == lead.basis
        and hit.adjusted_fpir < lead.adjusted_fpir * 0.999
    )


def _lead_values(session: Session, hit: PairHit, policy: ReviewPolicy, calibration: Any) -> dict[str, Any] | None:
    """Return a lead's columns for ``hit`` (None when one of its faces was erased meanwhile)."""
    n = policy.gallery_size
    common: dict[str, Any] = {
        "threshold": float(policy.threshold),
        "review_fpir": float(policy.review_fpir),
        "gallery_size": n,
        "basis": hit.basis,
        "secondary": hit.secondary,
        "adjusted_fpir": hit.adjusted_fpir,
    }
    if hit.basis == "marks":  # no face pair: the face columns say so (see Lead)
        return {
            **common,
            "score": 0.0,
            "fmr": 1.0,
            "fpir": 1.0,
            "model_id": "",
            "case_face_id": None,
            "report_face_id": None,
            "case_image_id": None,
            "report_image_id": None,
            "case_box": [],
            "report_box": [],
            "case_quality": 0.0,
            "report_quality": 0.0,
        }
    ids = [hit.case_face_id, hit.report_face_id]
    faces = {f.id: f for f in session.execute(select(Face).where(Face.id.in_(ids))).scalars()}
    case_face, report_face = faces.get(hit.case_face_id or -1), faces.get(hit.report_face_id or -1)
    if case_face is None or report_face is None:
        return None
    return {
        **common,
        "score": hit.score,
        "fmr": calibration.fmr(hit.score),
        "fpir": calibration.fpir(hit.score, n),
        "model_id": case_face.model_id,
        "case_face_id": case_face.id,
        "report_face_id": report_face.id,
        "case_image_id": case_face.image_id,
        "report_image_id": report_face.image_id,
        "case_box": list(case_face.box),
        "report_box": list(report_face.box),
        "case_quality": float(case_face.quality),
        "report_quality": float(report_face.quality),
    }


def upsert_duplicates(
    ctx: WorkflowContext, session: Session, user: User | None, root_id: int, hits: list[tuple[int, float]], n: int
) -> list[int]:
    """Flag each (root report, other root report, score) as a possible duplicate, once per pair;
    return the ids of the new flags. Audited."""
    flagged = []
    for other_id, score in hits:
        a, b = sorted((root_id, other_id))
        stmt = (
            _insert(session, DuplicateFlag)
            .values(
                report_id=a,
                other_report_id=b,
                score=score,
                fpir=ctx.gallery.calibration.fpir(score, n),
                status="open",
            )
            .on_conflict_do_nothing(index_elements=["report_id", "other_report_id"])
            .returning(DuplicateFlag.id)
        )
        new_id = session.execute(stmt).scalar()
        if new_id is not None:
            flagged.append(int(new_id))
            ctx.audit(
                session,
                user,
                "report.duplicate_flag",
                [f"duplicate:{new_id}", f"report:{a}", f"report:{b}"],
                {"score": round(score, 4)},
            )
    return flagged
