"""Continuous matching: cases against reports, reports against open cases, and reports against
reports (possible duplicates, which examiners merge or dismiss).

Every score comes from the gallery's own search (:mod:`facetrace.workflow.face_search`): a case is
matched by searching its faces; a report is matched by searching the faces of every open case and
keeping the hits on that report. So a pair gets the same score, and becomes a lead or not, whichever
of its two records changed last, and re-running finds the same pairs (see
:mod:`facetrace.workflow.leads` for the threshold)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError
from facetrace.gallery.calibration import fpir_from_fmr
from facetrace.store.accounts import User
from facetrace.store.models import Face
from facetrace.store.reconciliation_models import Mark as MarkRow
from facetrace.store.workflow_models import DUPLICATE_STATUSES, Case, CaseImage, DuplicateFlag, Lead, Report
from facetrace.workflow import queries
from facetrace.workflow.common import (
    MATCH_ROLES,
    MERGE_ROLES,
    OPEN_CASE_STATUSES,
    READ_ROLES,
    REVIEW_ROLES,
    InvalidInput,
    check_choice,
    duplicate_view,
    report_view,
    required_text,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.face_search import search_stored_faces
from facetrace.workflow.leads import PairHit, ReviewPolicy, upsert_duplicates, upsert_leads
from facetrace.workflow.reconcile.agreement import adjusted_fmr
from facetrace.workflow.reconcile.records import (
    RecordFacts,
    agreement_of,
    case_facts,
    excluded_by,
    exclusion_rules,
    report_facts,
    screenable_reports,
)
from facetrace.workflow.reconcile.rules import Exclusion, ExclusionRules

SEARCH_TOP_K = 50  # candidates per case face; far more than ever pass the review threshold
IN_CHUNK = 5000  # ids per IN (...) list: well under SQLite's limit on bound parameters
MAX_TOP_K = 1000  # with the excluded reports on top (they are dropped after the search)


class MatchingService:
    """Leads from case/report searches, duplicate reports and their merging."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx
        self.gallery = ctx.gallery

    # -- the threshold ------------------------------------------------------------------------
    def review_threshold(self) -> dict[str, Any]:
        """Return the review policy now: target FPIR, gallery size N and the score threshold."""
        return self._policy(self.gallery.gallery_size()).to_dict()

    def _policy(self, gallery_size: int) -> ReviewPolicy:
        return ReviewPolicy.for_gallery(self.gallery, self.ctx.current_settings().review_fpir, gallery_size)

    # -- searches -----------------------------------------------------------------------------
    def _case_hits(
        self, case_id: int, *, widen: bool = False, screenable: dict[int, RecordFacts] | None = None
    ) -> tuple[list[PairHit], ReviewPolicy]:
        """Search an open case against the reports its recorded facts do not rule out (all of them
        when ``widen``); return the pairs that pass the review policy, one per root report.

        Face leads: the case's faces searched in the gallery, the threshold that of the review FPIR
        over the *compatible* gallery (fewer candidates, a lower threshold). A pair also becomes a
        lead when the face with the pair's agreement beyond it passes (``face_and_secondary``). A
        case without a usable face gets leads from its marks (``marks``). See
        :mod:`facetrace.workflow.reconcile.agreement` for the rule.
        """
        with self.ctx.db.sessions() as session:
            case = session.get(Case, case_id)
            if case is None or case.status not in OPEN_CASE_STATUSES:
                return [], self._policy(self.gallery.gallery_size())
            facts = case_facts(session, case)
            excluded = {} if widen else self._excluded(session, facts, screenable)
            rules = None if widen else exclusion_rules(self.ctx.settings_in(session))
            rows = list(
                session.execute(
                    select(Face)
                    .join(CaseImage, CaseImage.image_id == Face.image_id)
                    .where(CaseImage.case_id == case_id, Face.model_id == self.gallery.model_id)
                    .order_by(Face.id)
                ).scalars()
            )
            excluded_persons = self._persons_with_faces(session, list(excluded))
            if not rows:
                n = max(1, self.gallery.gallery_size() - excluded_persons)
                return self._marks_hits(session, case_id, facts, excluded, n, rules), self._policy(n)
            found = search_stored_faces(self.gallery, rows, min(SEARCH_TOP_K + len(excluded), MAX_TOP_K))
            policy = self._policy(max(1, found.gallery_size - excluded_persons))
            best: dict[int, PairHit] = {}  # person id -> best face pair
            for row, candidates in zip(rows, found.candidates, strict=True):
                for cand in candidates:
                    if cand.person_id not in best or cand.score > best[cand.person_id].score:
                        best[cand.person_id] = PairHit(case_id, 0, cand.score, row.id, cand.face_id)
            if not best:
                return [], policy
            reports = session.execute(select(Report).where(Report.person_id.in_(best))).scalars().all()
            by_root: dict[int, PairHit] = {}
            roots: dict[int, Report] = {}
            for report in reports:
                assert report.person_id is not None
                root = queries.root_report(session, report)
                if root.id in excluded:
                    continue
                hit = best[report.person_id]
                if root.id not in by_root or hit.score > by_root[root.id].score:
                    roots[root.id] = root
                    by_root[root.id] = PairHit(case_id, root.id, hit.score, hit.case_face_id, hit.report_face_id)
            return self._passing(session, facts, list(by_root.values()), roots, policy, rules), policy

    def _passing(
        self,
        session: Session,
        facts: RecordFacts,
        hits: list[PairHit],
        roots: dict[int, Report],
        policy: ReviewPolicy,
        rules: ExclusionRules | None,
    ) -> list[PairHit]:
        """Return the face pairs whose face with the agreement beyond it passes the review FPIR
        (one criterion, so the false leads stay within the policy): ``face`` when the face alone
        passes too, ``face_and_secondary`` when the agreement lifted it."""
        calibration = self.gallery.calibration
        report_facts_by_id = report_facts(session, list(roots.values()))
        out = []
        for hit in hits:
            secondary = agreement_of(report_facts_by_id[hit.report_id], facts, rules)
            fmr = adjusted_fmr(calibration.fmr(hit.score), secondary)
            fpir = fpir_from_fmr(fmr, policy.gallery_size)
            face_passes = hit.score >= policy.threshold
            # (the second test only absorbs rounding at the threshold when nothing beyond the face is known)
            if not (fpir <= policy.review_fpir or (face_passes and secondary.log10_lr >= 0)):
                continue
            basis = "face" if face_passes else "face_and_secondary"
            out.append(replace(hit, basis=basis, secondary=secondary.to_dict(), adjusted_fpir=fpir))
        return out

    def _marks_hits(
        self,
        session: Session,
        case_id: int,
        facts: RecordFacts,
        excluded: dict[int, list[Exclusion]],
        n: int,
        rules: ExclusionRules | None,
    ) -> list[PairHit]:
        """Return the reports that a faceless case's marks (with its descriptors) lead to."""
        if not facts.marks:
            return []
        policy = self._policy(n)
        report_ids = set(session.execute(select(MarkRow.report_id).where(MarkRow.report_id.is_not(None))).scalars())
        roots: dict[int, Report] = {}
        for report in session.execute(select(Report).where(Report.id.in_(report_ids))).scalars():
            root = queries.root_report(session, report)
            if root.id not in excluded:
                roots.setdefault(root.id, root)
        out = []
        for root_id, rfacts in report_facts(session, list(roots.values())).items():
            secondary = agreement_of(rfacts, facts, rules)
            fpir = fpir_from_fmr(adjusted_fmr(None, secondary), n)
            if secondary.marks and fpir <= policy.review_fpir:
                out.append(PairHit(case_id, root_id, 0.0, None, None, "marks", secondary.to_dict(), fpir))
        return out

    def _excluded(
        self, session: Session, case: RecordFacts, screenable: dict[int, RecordFacts] | None = None
    ) -> dict[int, list[Exclusion]]:
        """Return the root reports that the case's recorded facts rule out, with the rules that do
        (``screenable``: :func:`screenable_reports` when the caller read them already)."""
        if not case.descriptors.known():
            return {}
        rules = exclusion_rules(self.ctx.settings_in(session))
        reports = screenable if screenable is not None else screenable_reports(session)
        out: dict[int, list[Exclusion]] = {}
        for report_id, rfacts in reports.items():
            found = excluded_by(rfacts, case, rules)
            if found:
                out[report_id] = found
        return out

    @staticmethod
    def _persons_with_faces(session: Session, report_ids: list[int]) -> int:
        """Return how many gallery persons (with a face) these root reports and the reports merged
        into them hold: a few queries whatever the number of reports (a merge merged again later is
        not followed: the compatible gallery then counts a person too many, a stricter threshold)."""
        total = 0
        for start in range(0, len(report_ids), IN_CHUNK):
            chunk = report_ids[start : start + IN_CHUNK]
            persons = select(Report.person_id).where(or_(Report.id.in_(chunk), Report.merged_into_id.in_(chunk)))
            count = session.execute(
                select(func.count(func.distinct(Face.person_id))).where(Face.person_id.in_(persons))
            )
            total += int(count.scalar() or 0)
        return total

    def exclusions_for_case(self, session: Session, case: Case) -> dict[int, list[Exclusion]]:
        """Return the root reports a case's recorded facts rule out (by report id), with the rules."""
        return self._excluded(session, case_facts(session, case))

    def _report_hits(self, report_id: int) -> tuple[list[PairHit], ReviewPolicy]:
        """Find the open cases that lead to a report: each open case with faces is searched in the
        gallery, exactly as :meth:`_case_hits` does, and its hits on this report are kept. Scoring
        therefore stays the gallery's own (whatever its normalisation), so a pair is a lead
        whichever side changed last. Cost: one gallery search per open case."""
        with self.ctx.db.sessions() as session:
            report = session.get(Report, report_id)
            if report is None:
                return [], self._policy(self.gallery.gallery_size())
            root_id = queries.root_report(session, report).id
            has_marks = session.execute(select(MarkRow.id).where(MarkRow.report_id == root_id).limit(1)).scalar()
            if not self._family_faces(session, root_id) and has_marks is None:
                return [], self._policy(self.gallery.gallery_size())
            with_photos = select(CaseImage.case_id)
            with_marks = select(MarkRow.case_id).where(MarkRow.case_id.is_not(None))
            case_ids = list(
                session.execute(
                    select(Case.id)
                    .where(Case.status.in_(OPEN_CASE_STATUSES), Case.id.in_(with_photos.union(with_marks)))
                    .order_by(Case.id)
                ).scalars()
            )
            screenable = screenable_reports(session)  # once for all the cases below
        hits: list[PairHit] = []
        policy = self._policy(self.gallery.gallery_size())
        for case_id in case_ids:
            case_hits, policy = self._case_hits(case_id, screenable=screenable)
            hits.extend(h for h in case_hits if h.report_id == root_id)
        return hits, policy

    def _family_faces(self, session: Session, root_id: int) -> int:
        """Return how many faces (of the current model) a report and the reports merged into it have."""
        person_ids = queries.family_person_ids(session, queries.merged_family(session, root_id))
        if not person_ids:
            return 0
        count = session.execute(
            select(func.count(Face.id)).where(Face.person_id.in_(person_ids), Face.model_id == self.gallery.model_id)
        ).scalar()
        return int(count or 0)

    def _duplicate_hits(self, report_id: int) -> tuple[list[tuple[int, float]], ReviewPolicy]:
        """Search a report's faces in the gallery; return other root reports above the threshold."""
        with self.ctx.db.sessions() as session:
            report = session.get(Report, report_id)
            if report is None:
                return [], self._policy(self.gallery.gallery_size())
            root = queries.root_report(session, report)
            family = set(queries.merged_family(session, root.id))
            person_ids = queries.family_person_ids(session, family)
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
                return [], self._policy(self.gallery.gallery_size())
            found = search_stored_faces(self.gallery, rows, SEARCH_TOP_K)
            policy = self._policy(found.gallery_size)
            best: dict[int, float] = {}
            for candidates in found.candidates:
                for cand in candidates:
                    if cand.person_id in person_ids or cand.score < policy.threshold:
                        continue
                    best[cand.person_id] = max(best.get(cand.person_id, -1.0), cand.score)
            out: dict[int, float] = {}
            if best:
                for other in session.execute(select(Report).where(Report.person_id.in_(best))).scalars():
                    other_root = queries.root_report(session, other)
                    if other_root.id in family:
                        continue
                    assert other.person_id is not None
                    out[other_root.id] = max(out.get(other_root.id, -1.0), best[other.person_id])
            return sorted(out.items()), policy

    # -- matching one record now --------------------------------------------------------------
    def match_case_by_id(self, actor: User | None, case_id: int, *, widen: bool = False) -> dict[str, Any]:
        """Search a case (by database id) against the compatible reports (all of them when
        ``widen``: exclusions ignored) and write the leads, for a service that has just changed it
        (no role check: the caller checked).

        Returns the policy and ``{"leads": {"created", "updated", "unchanged"}}``.
        """
        hits, policy = self._case_hits(case_id, widen=widen)
        with self.ctx.db.session() as session:
            user = self.ctx.reread_user(session, actor)
            leads = upsert_leads(self.ctx, session, user, hits, policy)
        return {**policy.rounded(), "leads": leads}

    def match_report_by_id(self, actor: User | None, report_id: int) -> dict[str, Any]:
        """Search a report (by database id) against the open cases and the other reports, and write
        the leads and duplicate flags, for a service that has just changed it (no role check).

        Returns the policy, ``{"leads": {...}, "duplicates_flagged": [...]}``.
        """
        hits, policy = self._report_hits(report_id)
        duplicates, dup_policy = self._duplicate_hits(report_id)
        with self.ctx.db.session() as session:
            user = self.ctx.reread_user(session, actor)
            report = session.get(Report, report_id)
            assert report is not None
            root = queries.root_report(session, report)
            leads = upsert_leads(self.ctx, session, user, hits, policy)
            flagged = upsert_duplicates(self.ctx, session, user, root.id, duplicates, dup_policy.gallery_size)
        return {**policy.rounded(), "leads": leads, "duplicates_flagged": flagged}

    # -- public matching ----------------------------------------------------------------------
    def match_case(self, actor: User, reference: str | int, *, widen: bool = False) -> dict[str, Any]:
        """Search a case against the reports its facts do not rule out again; return the leads
        created, raised or unchanged. ``widen``: search all reports, exclusions ignored (an
        examiner's decision, audited as ``case.match_widened`` with the exclusions it overrode).
        Idempotent. Role: intake, examiner or reviewer (widening: examiner or reviewer).

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "case.match", [f"case:{reference}"]) as session:
            roles = REVIEW_ROLES if widen else MATCH_ROLES
            user = self.ctx.acting_user(
                session, actor, roles, "widening a case's search" if widen else "matching a case"
            )
            case = queries.case_by_reference(session, reference)
            case_id = case.id
            if widen:
                overridden = self.exclusions_for_case(session, case)
                self.ctx.audit(
                    session,
                    user,
                    "case.match_widened",
                    [f"case:{case.id}", *(f"report:{r}" for r in sorted(overridden))],
                    {"exclusions_ignored": {str(r): [e.rule for e in ex] for r, ex in sorted(overridden.items())}},
                )
        return {**self.match_case_by_id(actor, case_id, widen=widen), "widened": widen}

    def match_report(self, actor: User, reference: str | int) -> dict[str, Any]:
        """Search a report against all open cases (and other reports, for duplicates) again.
        Idempotent. Role: intake, examiner or reviewer.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "report.match", [f"report:{reference}"]) as session:
            self.ctx.acting_user(session, actor, MATCH_ROLES, "matching a report")
            report_id = queries.report_by_reference(session, reference).id
        return self.match_report_by_id(actor, report_id)

    def match_all(self, actor: User) -> dict[str, Any]:
        """Search every open case against all reports and every report for duplicates (after a
        recalibration or a bulk import). Idempotent. Role: intake, examiner or reviewer.

        Returns the totals of leads created/raised and duplicate flags raised.

        Raises:
            PermissionDenied.
        """
        with self.ctx.transaction(actor, "match.all", []) as session:
            self.ctx.acting_user(session, actor, MATCH_ROLES, "matching all records")
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
            out = self.match_case_by_id(actor, case_id)
            created += out["leads"]["created"]
            updated += out["leads"]["updated"]
        for report_id in report_ids:
            duplicates, policy = self._duplicate_hits(report_id)
            with self.ctx.db.session() as session:
                user = self.ctx.reread_user(session, actor)
                flagged += upsert_duplicates(self.ctx, session, user, report_id, duplicates, policy.gallery_size)
        return {
            **self._policy(self.gallery.gallery_size()).rounded(),
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
        with self.ctx.transaction(actor, "duplicate.list", []) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "listing duplicate reports")
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
        with self.ctx.transaction(actor, "report.merge", records) as session:
            user = self.ctx.acting_user(session, actor, MERGE_ROLES, "merging reports")
            src, dst = queries.report_by_reference(session, source), queries.report_by_reference(session, into)
            if src.id == dst.id:
                raise InvalidInput("a report cannot be merged into itself")
            for r in (src, dst):
                if r.status == "merged":
                    raise ConflictError(f"report {r.reference} is already merged into another report")
            if queries.confirmed_identification_id(session, report_id=src.id) is not None:
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
            self.ctx.audit(
                session,
                user,
                "report.merge",
                [f"report:{src.id}", f"report:{dst.id}"] + ([f"duplicate:{flag.id}"] if flag else []),
                {"source": src.reference, "into": dst.reference, "rationale": why},
            )
            src_view, dst_id = report_view(src), dst.id
        return {
            "source": src_view,
            "into": queries.report_snapshot(self.ctx.db, dst_id),
            "matching": self.match_report_by_id(actor, dst_id),
        }

    def dismiss_duplicate(self, actor: User, flag_id: int, *, rationale: str) -> dict[str, Any]:
        """Record that two flagged reports are different people. Role: examiner or reviewer.

        Raises:
            NotFoundError, InvalidInput, ConflictError (already resolved), PermissionDenied.
        """
        why = required_text(rationale, "rationale")
        with self.ctx.transaction(actor, "duplicate.dismiss", [f"duplicate:{flag_id}"]) as session:
            user = self.ctx.acting_user(session, actor, MERGE_ROLES, "dismissing a duplicate flag")
            flag: DuplicateFlag = queries.row_by_id(session, DuplicateFlag, flag_id, "duplicate flag", for_update=True)
            if flag.status != "open":
                raise ConflictError(f"duplicate flag {flag_id} is already {flag.status}")
            flag.status = "dismissed"
            flag.resolved_by_id = user.id
            flag.resolved_at = datetime.now(UTC)
            flag.rationale = why
            self.ctx.audit(
                session,
                user,
                "duplicate.dismiss",
                [f"duplicate:{flag.id}", f"report:{flag.report_id}", f"report:{flag.other_report_id}"],
                {"rationale": why},
            )
            return duplicate_view(flag)
