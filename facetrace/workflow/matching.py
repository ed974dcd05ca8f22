"""Continuous matching: cases against reports, reports against open cases, reports against
reports (possible duplicates), and the lead queue.

Every score comes from the gallery's own search (:meth:`Gallery.search_faces`, with its fusion
and score normalisation): a case is matched by searching its faces; a report is matched by
searching the faces of every open case and keeping the hits on that report. So a pair gets the
same score, and becomes a lead or not, whichever of its two records changed last, and re-running
finds the same pairs.

One threshold: the score at which a search of the gallery (all enrolled persons, N of them) for
someone not in it returns a candidate that strong with probability ``Settings.review_fpir``
(``Gallery.calibration.threshold(review_fpir, N)``). A pair's score is its best pair of faces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError
from facetrace.store.accounts import User
from facetrace.store.models import Face
from facetrace.store.workflow_models import (
    DUPLICATE_STATUSES,
    LEAD_STATUSES,
    Case,
    CaseImage,
    DuplicateFlag,
    Evidence,
    Identification,
    Lead,
    Report,
    Review,
)
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.vision.quality import Quality
from facetrace.workflow.blind import blind_lead
from facetrace.workflow.common import (
    MATCH_ROLES,
    MERGE_ROLES,
    OPEN_CASE_STATUSES,
    READ_ROLES,
    InvalidInput,
    case_view,
    check_choice,
    duplicate_view,
    evidence_view,
    identification_view,
    lead_view,
    report_view,
    required_text,
    review_view,
)
from facetrace.workflow.core import WorkflowCore

SEARCH_TOP_K = 50  # candidates per case face; far more than ever pass the review threshold


@dataclass(frozen=True)
class PairHit:
    """The best pair of faces of one case and one (root) report."""

    case_id: int
    report_id: int
    score: float
    case_face_id: int
    report_face_id: int


def detected_face(row: Face) -> DetectedFace:
    """Rebuild a pipeline face (for :meth:`Gallery.search_faces`) from a stored face row."""
    q = row.quality_detail or {}
    return DetectedFace(
        box=tuple(row.box),  # type: ignore[arg-type]
        landmarks=[(float(x), float(y)) for x, y in row.landmarks],
        detector=row.detector,
        detection_score=float(q.get("detector_score", 0.0)),
        quality=Quality(
            score=float(row.quality),
            eye_distance_px=float(q.get("eye_distance_px", 0.0)),
            sharpness=float(q.get("sharpness", 0.0)),
            detector_score=float(q.get("detector_score", 0.0)),
            yaw_deg=float(q.get("yaw_deg", 0.0)),
        ),
        embedding=row.vector(),
        model_id=row.model_id,
    )


def _insert(session: Session, model: Any) -> Any:
    """Return the dialect's INSERT (with ON CONFLICT support) for ``model``."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model)


class MatchingMixin(WorkflowCore):
    """Leads from case/report searches, duplicate reports, merging, and the review queue."""

    # -- threshold ----------------------------------------------------------------------------
    def review_threshold(self) -> dict[str, Any]:
        """Return the review policy now: target FPIR, gallery size N and the score threshold."""
        n = max(1, self.gallery.gallery_size())
        fpir = self.settings.review_fpir
        return {"review_fpir": fpir, "gallery_size": n, "threshold": self.gallery.calibration.threshold(fpir, n)}

    # -- searches -----------------------------------------------------------------------------
    def _case_hits(self, case_id: int) -> tuple[list[PairHit], dict[str, Any]]:
        """Search the faces of an open case in the gallery; return the best hit per root report."""
        with self.db.sessions() as session:
            case = session.get(Case, case_id)
            if case is None or case.status not in OPEN_CASE_STATUSES:
                return [], self.review_threshold()
            rows = list(
                session.execute(
                    select(Face)
                    .join(CaseImage, CaseImage.image_id == Face.image_id)
                    .where(CaseImage.case_id == case_id, Face.model_id == self.gallery.model_id)
                    .order_by(Face.id)
                ).scalars()
            )
            if not rows:
                return [], self.review_threshold()
            result = self.gallery.search_faces([detected_face(r) for r in rows], top_k=SEARCH_TOP_K).to_dict()
            n = max(1, int(result["gallery"]["persons"]))
            policy = {
                "review_fpir": self.settings.review_fpir,
                "gallery_size": n,
                "threshold": self.gallery.calibration.threshold(self.settings.review_fpir, n),
            }
            best: dict[int, PairHit] = {}  # person id -> best hit
            for row, face in zip(rows, result["faces"], strict=True):
                for cand in face["candidates"]:
                    pid = int(cand["person"]["id"])
                    score = float(cand["score"])
                    if score < policy["threshold"]:
                        continue
                    if pid not in best or score > best[pid].score:
                        best[pid] = PairHit(case_id, 0, score, row.id, int(cand["face_id"]))
            if not best:
                return [], policy
            reports = session.execute(select(Report).where(Report.person_id.in_(best))).scalars().all()
            by_root: dict[int, PairHit] = {}
            for report in reports:
                assert report.person_id is not None
                root = self._root_report(session, report)
                hit = best[report.person_id]
                if root.id not in by_root or hit.score > by_root[root.id].score:
                    by_root[root.id] = PairHit(case_id, root.id, hit.score, hit.case_face_id, hit.report_face_id)
            return list(by_root.values()), policy

    def _report_hits(self, report_id: int) -> tuple[list[PairHit], dict[str, Any]]:
        """Find the open cases that lead to a report: each open case with faces is searched in the
        gallery, exactly as :meth:`_case_hits` does, and its hits on this report are kept. Scoring
        therefore stays the gallery's own (whatever its normalisation), so a pair is a lead
        whichever side changed last. Cost: one gallery search per open case."""
        with self.db.sessions() as session:
            report = session.get(Report, report_id)
            if report is None:
                return [], self.review_threshold()
            root_id = self._root_report(session, report).id
            if not self._report_face_count(session, root_id):
                return [], self.review_threshold()
            case_ids = list(
                session.execute(
                    select(CaseImage.case_id)
                    .join(Case, Case.id == CaseImage.case_id)
                    .where(Case.status.in_(OPEN_CASE_STATUSES))
                    .distinct()
                    .order_by(CaseImage.case_id)
                ).scalars()
            )
        hits: list[PairHit] = []
        policy = self.review_threshold()
        for case_id in case_ids:
            case_hits, policy = self._case_hits(case_id)
            hits.extend(h for h in case_hits if h.report_id == root_id)
        return hits, policy

    def _report_face_count(self, session: Session, root_id: int) -> int:
        """Return how many faces (of the current model) a report and the reports merged into it have."""
        family = self._merged_family(session, root_id)
        person_ids = [
            p for p in session.execute(select(Report.person_id).where(Report.id.in_(family))).scalars() if p is not None
        ]
        if not person_ids:
            return 0
        count = session.execute(
            select(func.count(Face.id)).where(Face.person_id.in_(person_ids), Face.model_id == self.gallery.model_id)
        ).scalar()
        return int(count or 0)

    def _duplicate_hits(self, report_id: int) -> tuple[list[tuple[int, float]], dict[str, Any]]:
        """Search a report's faces in the gallery; return other root reports above the threshold."""
        with self.db.sessions() as session:
            report = session.get(Report, report_id)
            if report is None:
                return [], self.review_threshold()
            root = self._root_report(session, report)
            family = set(self._merged_family(session, root.id))
            person_ids = [
                p
                for p in session.execute(select(Report.person_id).where(Report.id.in_(family))).scalars()
                if p is not None
            ]
            rows = (
                list(
                    session.execute(
                        select(Face).where(Face.person_id.in_(person_ids), Face.model_id == self.gallery.model_id)
                    ).scalars()
                )
                if person_ids
                else []
            )
            if not rows:
                return [], self.review_threshold()
            result = self.gallery.search_faces([detected_face(r) for r in rows], top_k=SEARCH_TOP_K).to_dict()
            n = max(1, int(result["gallery"]["persons"]))
            policy = {
                "review_fpir": self.settings.review_fpir,
                "gallery_size": n,
                "threshold": self.gallery.calibration.threshold(self.settings.review_fpir, n),
            }
            best: dict[int, float] = {}
            for face in result["faces"]:
                for cand in face["candidates"]:
                    pid = int(cand["person"]["id"])
                    if pid in person_ids or float(cand["score"]) < policy["threshold"]:
                        continue
                    best[pid] = max(best.get(pid, -1.0), float(cand["score"]))
            out: dict[int, float] = {}
            if best:
                for other in session.execute(select(Report).where(Report.person_id.in_(best))).scalars():
                    other_root = self._root_report(session, other)
                    if other_root.id in family:
                        continue
                    assert other.person_id is not None
                    out[other_root.id] = max(out.get(other_root.id, -1.0), best[other.person_id])
            return sorted(out.items()), policy

    # -- writing leads ------------------------------------------------------------------------
    def _upsert_leads(
        self, session: Session, user: User | None, hits: list[PairHit], policy: dict[str, Any]
    ) -> dict[str, list[int]]:
        """Create a lead per new pair (never a duplicate: ON CONFLICT on (case, report)); raise the
        score of a pair not yet reviewed when a better face pair appeared. Audited."""
        created: list[int] = []
        updated: list[int] = []
        unchanged: list[int] = []
        calibration = self.gallery.calibration
        n = int(policy["gallery_size"])
        for hit in hits:
            faces = {
                f.id: f
                for f in session.execute(
                    select(Face).where(Face.id.in_([hit.case_face_id, hit.report_face_id]))
                ).scalars()
            }
            case_face, report_face = faces.get(hit.case_face_id), faces.get(hit.report_face_id)
            if case_face is None or report_face is None:
                continue  # erased meanwhile
            values: dict[str, Any] = {
                "score": hit.score,
                "fmr": calibration.fmr(hit.score),
                "fpir": calibration.fpir(hit.score, n),
                "threshold": float(policy["threshold"]),
                "review_fpir": float(policy["review_fpir"]),
                "gallery_size": n,
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
                self._audit(
                    session,
                    user,
                    "lead.create",
                    [f"lead:{new_id}", f"case:{hit.case_id}", f"report:{hit.report_id}"],
                    {
                        "score": round(hit.score, 4),
                        "fpir": values["fpir"],
                        "threshold": round(values["threshold"], 4),
                        "gallery_size": n,
                    },
                )
                continue
            lead = session.execute(
                select(Lead).where(Lead.case_id == hit.case_id, Lead.report_id == hit.report_id)
            ).scalar_one()
            if lead.status == "open" and hit.score > lead.score + 1e-6:
                before = lead.score
                for key, value in values.items():
                    setattr(lead, key, value)
                updated.append(lead.id)
                self._audit(
                    session,
                    user,
                    "lead.update",
                    [f"lead:{lead.id}", f"case:{lead.case_id}", f"report:{lead.report_id}"],
                    {"score_before": round(before, 4), "score": round(hit.score, 4)},
                )
            else:
                unchanged.append(lead.id)
        return {"created": created, "updated": updated, "unchanged": unchanged}

    def _upsert_duplicates(
        self, session: Session, user: User | None, root_id: int, hits: list[tuple[int, float]], n: int
    ) -> list[int]:
        flagged = []
        for other_id, score in hits:
            a, b = sorted((root_id, other_id))
            stmt = (
                _insert(session, DuplicateFlag)
                .values(
                    report_id=a,
                    other_report_id=b,
                    score=score,
                    fpir=self.gallery.calibration.fpir(score, n),
                    status="open",
                )
                .on_conflict_do_nothing(index_elements=["report_id", "other_report_id"])
                .returning(DuplicateFlag.id)
            )
            new_id = session.execute(stmt).scalar()
            if new_id is not None:
                flagged.append(int(new_id))
                self._audit(
                    session,
                    user,
                    "report.duplicate_flag",
                    [f"duplicate:{new_id}", f"report:{a}", f"report:{b}"],
                    {"score": round(score, 4)},
                )
        return flagged

    def _match_case_now(self, actor: User, case_id: int) -> dict[str, Any]:
        hits, policy = self._case_hits(case_id)
        with self.db.session() as session:
            user = session.get(User, actor.id) if actor is not None else None
            leads = self._upsert_leads(session, user, hits, policy)
        return {**_policy_view(policy), "leads": leads}

    def _match_report_now(self, actor: User, report_id: int) -> dict[str, Any]:
        hits, policy = self._report_hits(report_id)
        duplicates, dup_policy = self._duplicate_hits(report_id)
        with self.db.session() as session:
            user = session.get(User, actor.id) if actor is not None else None
            report = session.get(Report, report_id)
            assert report is not None
            root = self._root_report(session, report)
            leads = self._upsert_leads(session, user, hits, policy)
            flagged = self._upsert_duplicates(session, user, root.id, duplicates, int(dup_policy["gallery_size"]))
        return {**_policy_view(policy), "leads": leads, "duplicates_flagged": flagged}

    # -- public matching ----------------------------------------------------------------------
    def match_case(self, actor: User, reference: str | int) -> dict[str, Any]:
        """Search a case against all reports again; return the leads created, raised or unchanged.
        Idempotent. Role: intake, examiner or reviewer.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self._tx(actor, "case.match", [f"case:{reference}"]) as session:
            self._user(session, actor, MATCH_ROLES, "matching a case")
            case_id = self._case(session, reference).id
        return self._match_case_now(actor, case_id)

    def match_report(self, actor: User, reference: str | int) -> dict[str, Any]:
        """Search a report against all open cases (and other reports, for duplicates) again.
        Idempotent. Role: intake, examiner or reviewer.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self._tx(actor, "report.match", [f"report:{reference}"]) as session:
            self._user(session, actor, MATCH_ROLES, "matching a report")
            report_id = self._report(session, reference).id
        return self._match_report_now(actor, report_id)

    def match_all(self, actor: User) -> dict[str, Any]:
        """Search every open case against all reports and every report for duplicates (after a
        recalibration or a bulk import). Idempotent. Role: intake, examiner or reviewer.

        Returns the totals of leads created/raised and duplicate flags raised.

        Raises:
            PermissionDenied.
        """
        with self._tx(actor, "match.all", []) as session:
            self._user(session, actor, MATCH_ROLES, "matching all records")
            case_ids = list(
                session.execute(select(Case.id).where(Case.status.in_(OPEN_CASE_STATUSES)).order_by(Case.id)).scalars()
            )
            report_ids = list(
                session.execute(
                    select(Report.id)
                    .where(Report.status != "merged", Report.person_id.is_not(None))
                    .order_by(Report.id)
                ).scalars()
            )
        created: list[int] = []
        updated: list[int] = []
        flagged: list[int] = []
        for case_id in case_ids:
            out = self._match_case_now(actor, case_id)
            created += out["leads"]["created"]
            updated += out["leads"]["updated"]
        for report_id in report_ids:
            duplicates, policy = self._duplicate_hits(report_id)
            with self.db.session() as session:
                user = session.get(User, actor.id)
                flagged += self._upsert_duplicates(session, user, report_id, duplicates, int(policy["gallery_size"]))
        return {
            **_policy_view(self.review_threshold()),
            "cases": len(case_ids),
            "reports": len(report_ids),
            "leads": {"created": created, "updated": updated},
            "duplicates_flagged": flagged,
        }

    # -- duplicates -----------------------------------------------------------------------------
    def list_duplicates(self, actor: User, *, status: str | None = "open") -> list[dict[str, Any]]:
        """Return duplicate-report flags (default: the open ones), with both reports. Any role.

        Raises:
            PermissionDenied, InvalidInput.
        """
        with self._tx(actor, "duplicate.list", []) as session:
            self._user(session, actor, READ_ROLES, "listing duplicate reports")
            stmt = select(DuplicateFlag).order_by(DuplicateFlag.id)
            if status:
                stmt = stmt.where(DuplicateFlag.status == check_choice(status, DUPLICATE_STATUSES, "status"))
            out = []
            for flag in session.execute(stmt).scalars():
                a, b = session.get(Report, flag.report_id), session.get(Report, flag.other_report_id)
                out.append(
                    {
                        **duplicate_view(flag),
                        "report": report_view(a) if a else None,
                        "other_report": report_view(b) if b else None,
                    }
                )
            return out

    def merge_reports(self, actor: User, source: str | int, into: str | int, *, rationale: str) -> dict[str, Any]:
        """Merge report ``source`` into ``into`` (the same person reported twice). Both histories
        stay: the source keeps its photos, contacts, leads and reviews and is marked ``merged``;
        its gallery person now stands for ``into``, whose contacts include the source's. Open
        leads of the source are flagged; ``into`` is matched again. Role: examiner or reviewer.

        Returns ``{"source", "into", "matching"}``.

        Raises:
            NotFoundError, InvalidInput (no rationale, same report), ConflictError (already merged,
            or the source has a confirmed identification), PermissionDenied.
        """
        why = required_text(rationale, "rationale")
        records = [f"report:{source}", f"report:{into}"]
        with self._tx(actor, "report.merge", records) as session:
            user = self._user(session, actor, MERGE_ROLES, "merging reports")
            src, dst = self._report(session, source), self._report(session, into)
            if src.id == dst.id:
                raise InvalidInput("a report cannot be merged into itself")
            for r in (src, dst):
                if r.status == "merged":
                    raise ConflictError(f"report {r.reference} is already merged into another report")
            if self._has_confirmed(session, src.id):
                raise ConflictError(
                    f"report {src.reference} has a confirmed identification; merge {dst.reference} into it instead"
                )
            src.status = "merged"
            src.merged_into_id = dst.id
            a, b = sorted((src.id, dst.id))
            flag = session.execute(
                select(DuplicateFlag).where(DuplicateFlag.report_id == a, DuplicateFlag.other_report_id == b)
            ).scalar()
            if flag is not None:
                flag.status = "merged"
                flag.resolved_by_id = user.id
                flag.resolved_at = datetime.now(UTC)
                flag.rationale = why
            for lead in session.execute(
                select(Lead).where(Lead.report_id == src.id, Lead.status.in_(("open", "under_review", "rejected")))
            ).scalars():
                lead.flag = (
                    f"report {src.reference} was merged into {dst.reference}: review the leads of {dst.reference}"
                )
            self._audit(
                session,
                user,
                "report.merge",
                [f"report:{src.id}", f"report:{dst.id}"] + ([f"duplicate:{flag.id}"] if flag else []),
                {"source": src.reference, "into": dst.reference, "rationale": why},
            )
            src_view, dst_id = report_view(src), dst.id
        return {
            "source": src_view,
            "into": self._report_snapshot(dst_id),
            "matching": self._match_report_now(actor, dst_id),
        }

    def dismiss_duplicate(self, actor: User, flag_id: int, *, rationale: str) -> dict[str, Any]:
        """Record that two flagged reports are different people. Role: examiner or reviewer.

        Raises:
            NotFoundError, InvalidInput, ConflictError (already resolved), PermissionDenied.
        """
        why = required_text(rationale, "rationale")
        with self._tx(actor, "duplicate.dismiss", [f"duplicate:{flag_id}"]) as session:
            user = self._user(session, actor, MERGE_ROLES, "dismissing a duplicate flag")
            flag: DuplicateFlag = self._get(session, DuplicateFlag, flag_id, "duplicate flag", for_update=True)
            if flag.status != "open":
                raise ConflictError(f"duplicate flag {flag_id} is already {flag.status}")
            flag.status = "dismissed"
            flag.resolved_by_id = user.id
            flag.resolved_at = datetime.now(UTC)
            flag.rationale = why
            self._audit(
                session,
                user,
                "duplicate.dismiss",
                [f"duplicate:{flag.id}", f"report:{flag.report_id}", f"report:{flag.other_report_id}"],
                {"rationale": why},
            )
            return duplicate_view(flag)

    @staticmethod
    def _has_confirmed(session: Session, report_id: int) -> bool:
        return (
            session.execute(
                select(Identification.id).where(
                    Identification.report_id == report_id, Identification.status == "confirmed"
                )
            ).scalar()
            is not None
        )

    # -- the lead queue -----------------------------------------------------------------------
    def list_leads(
        self,
        actor: User,
        *,
        status: str | None = None,
        case: str | int | None = None,
        report: str | int | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return leads, best score first, with their case and report references. Any role.

        Raises:
            PermissionDenied, NotFoundError (unknown case/report), InvalidInput (unknown status).
        """
        with self._tx(actor, "lead.list", []) as session:
            self._user(session, actor, READ_ROLES, "listing leads")
            stmt = select(Lead, Case.reference, Report.reference, Report.name).join(Case, Case.id == Lead.case_id)
            stmt = stmt.join(Report, Report.id == Lead.report_id)
            if status:
                stmt = stmt.where(Lead.status == check_choice(status, LEAD_STATUSES, "status"))
            if case is not None:
                stmt = stmt.where(Lead.case_id == self._case(session, case).id)
            if report is not None:
                stmt = stmt.where(Lead.report_id == self._report(session, report).id)
            stmt = stmt.order_by(Lead.score.desc(), Lead.id).offset(max(0, offset)).limit(max(1, min(limit, 1000)))
            return [
                {**lead_view(lead), "case": case_ref, "report": report_ref, "report_name": name}
                for lead, case_ref, report_ref, name in session.execute(stmt).all()
            ]

    def get_lead(self, actor: User, lead_id: int) -> dict[str, Any]:
        """Return a lead with its case, report, reviews, evidence and identification. Any role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self._tx(actor, "lead.view", [f"lead:{lead_id}"]) as session:
            user = self._user(session, actor, READ_ROLES, "reading a lead")
            lead = self._lead(session, lead_id)
            self._audit(
                session, user, "lead.view", [f"lead:{lead.id}", f"case:{lead.case_id}", f"report:{lead.report_id}"]
            )
            # Blind confirmation holds on every channel (API, CLI, web), not only on the web page.
            return blind_lead(self._lead_detail(session, lead), user)

    def _lead_detail(self, session: Session, lead: Lead) -> dict[str, Any]:
        case = session.get(Case, lead.case_id)
        report = session.get(Report, lead.report_id)
        reviews = list(session.execute(select(Review).where(Review.lead_id == lead.id).order_by(Review.id)).scalars())
        evidence = list(
            session.execute(select(Evidence).where(Evidence.lead_id == lead.id).order_by(Evidence.id)).scalars()
        )
        ident = session.execute(select(Identification).where(Identification.lead_id == lead.id)).scalar()
        names = self._usernames(session, {r.reviewer_id for r in reviews} | {e.recorded_by_id for e in evidence})
        return {
            **lead_view(lead),
            "case": case_view(case) if case else None,
            "report": report_view(report) if report else None,
            "reviews": [review_view(r, names.get(r.reviewer_id)) for r in reviews],
            "evidence": [evidence_view(e, names.get(e.recorded_by_id)) for e in evidence],
            "identification": identification_view(ident) if ident else None,
        }


def _policy_view(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "review_fpir": policy["review_fpir"],
        "gallery_size": policy["gallery_size"],
        "threshold": round(float(policy["threshold"]), 4),
    }
