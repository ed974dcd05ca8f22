"""The lead queue, reviews of leads and evidence; the confirmation that establishes an identification.

The two-person rule: an identification is established only by a confirmation from a user with
the reviewer role, when a *different* user's standing review of the same lead is also a
confirmation. Reviews are append-only; a user's latest review of a lead is their standing
position, so an examiner who rejected can later confirm (and vice versa). The same user
confirming twice is refused, and the database refuses an identification whose two confirmers
are the same user. Establishing also needs ``Settings.min_evidence_items`` evidence items, no
standing rejection by anyone, and neither the case nor the report already identified.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError, PolicyError
from facetrace.store.accounts import User
from facetrace.store.workflow_models import (
    DECISIONS,
    EVIDENCE_KINDS,
    LEAD_STATUSES,
    Case,
    Evidence,
    Identification,
    Lead,
    Report,
    Review,
)
from facetrace.workflow import queries
from facetrace.workflow.blind import blind_lead
from facetrace.workflow.common import (
    PRIMARY_EVIDENCE,
    READ_ROLES,
    REVIEW_ROLES,
    SECOND_CONFIRM_ROLE,
    case_view,
    check_choice,
    evidence_view,
    identification_view,
    lead_view,
    optional_text,
    report_view,
    required_text,
    review_view,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.identifications import IdentificationService, primary_basis


def _standing(reviews: list[Review]) -> dict[int, Review]:
    """Return each reviewer's latest review (reviews given in id order)."""
    latest: dict[int, Review] = {}
    for review in reviews:
        latest[review.reviewer_id] = review
    return latest


def _lead_status(latest: dict[int, Review]) -> str:
    decisions = {r.decision for r in latest.values()}
    if not decisions:
        return "open"
    if decisions == {"reject"}:
        return "rejected"
    return "under_review"


class ReviewService:
    """List and show leads (blind to other examiners' decisions), review them, record evidence."""

    def __init__(self, ctx: WorkflowContext, identifications: IdentificationService) -> None:
        self.ctx = ctx
        self.identifications = identifications

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
        with self.ctx.transaction(actor, "lead.list", []) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "listing leads")
            stmt = select(Lead, Case.reference, Report.reference, Report.name).join(Case, Case.id == Lead.case_id)
            stmt = stmt.join(Report, Report.id == Lead.report_id)
            if status:
                stmt = stmt.where(Lead.status == check_choice(status, LEAD_STATUSES, "status"))
            if case is not None:
                stmt = stmt.where(Lead.case_id == queries.case_by_reference(session, case).id)
            if report is not None:
                stmt = stmt.where(Lead.report_id == queries.report_by_reference(session, report).id)
            stmt = queries.page(stmt.order_by(Lead.score.desc(), Lead.id), offset, limit)
            return [
                {**lead_view(lead), "case": case_ref, "report": report_ref, "report_name": name}
                for lead, case_ref, report_ref, name in session.execute(stmt).all()
            ]

    def get_lead(self, actor: User, lead_id: int, *, audited: bool = True) -> dict[str, Any]:
        """Return a lead with its case, report, reviews, evidence and identification. Any role.

        Audited as ``lead.view``, unless ``audited`` is False: an export that includes this lead
        appends its one event itself.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "lead.view", [f"lead:{lead_id}"]) as session:
            user = self.ctx.acting_user(session, actor, READ_ROLES, "reading a lead")
            lead = queries.lead_by_id(session, lead_id)
            if audited:
                records = [f"lead:{lead.id}", f"case:{lead.case_id}", f"report:{lead.report_id}"]
                self.ctx.audit(session, user, "lead.view", records)
            # Blind confirmation holds on every channel (API, CLI, web), not only on the web page.
            return blind_lead(self._lead_detail(session, lead), user)

    def _lead_detail(self, session: Session, lead: Lead) -> dict[str, Any]:
        case = session.get(Case, lead.case_id)
        report = session.get(Report, lead.report_id)
        reviews = queries.reviews_of(session, lead.id)
        evidence = queries.evidence_of(session, lead.id)
        ident = session.execute(select(Identification).where(Identification.lead_id == lead.id)).scalar()
        names = queries.usernames(session, {r.reviewer_id for r in reviews} | {e.recorded_by_id for e in evidence})
        return {
            **lead_view(lead),
            "case": case_view(case) if case else None,
            "report": report_view(report) if report else None,
            "reviews": [review_view(r, names.get(r.reviewer_id)) for r in reviews],
            "evidence": [evidence_view(e, names.get(e.recorded_by_id)) for e in evidence],
            "identification": identification_view(ident) if ident else None,
        }

    def review_lead(self, actor: User, lead_id: int, *, decision: str, rationale: str) -> dict[str, Any]:
        """Record a review (confirm, reject or inconclusive, with a written rationale). A confirmation
        by a reviewer, when a different user's standing review is also a confirmation, establishes
        the identification and drafts the notifications to the report's contacts.
        Role: examiner or reviewer.

        Returns ``{"review", "lead", "identification", "notifications", "waiting_for"}``.

        Raises:
            NotFoundError, InvalidInput (decision, empty rationale), PermissionDenied,
            PolicyError (same user confirming twice, missing evidence, standing rejection),
            ConflictError (lead identified or withdrawn, report merged, case or report already identified).
        """
        check_choice(decision, DECISIONS, "decision")
        why = required_text(rationale, "rationale")
        with self.ctx.transaction(actor, "lead.review", [f"lead:{lead_id}"]) as session:
            user = self.ctx.acting_user(session, actor, REVIEW_ROLES, "reviewing a lead")
            lead = queries.lead_by_id(session, lead_id, for_update=True)
            report = session.get(Report, lead.report_id)
            case = session.get(Case, lead.case_id)
            assert report is not None and case is not None
            if lead.status in ("identified", "withdrawn"):
                raise ConflictError(f"lead {lead.id} is {lead.status}; it takes no more reviews")
            if report.status == "merged":
                raise ConflictError(
                    f"report {report.reference} was merged into another report; review that report's lead instead"
                )
            since = lead.reopened_after_review_id or 0  # reviews before a reopening no longer stand
            latest = _standing([r for r in queries.reviews_of(session, lead.id) if r.id > since])
            mine = latest.get(user.id)
            if decision == "confirm" and mine is not None and mine.decision == "confirm":
                raise PolicyError(
                    f"{user.username} has already confirmed lead {lead.id}: the two-person rule needs a second, "
                    "different user with the reviewer role to confirm"
                )
            review = Review(lead_id=lead.id, reviewer_id=user.id, decision=decision, rationale=why)
            session.add(review)
            session.flush()
            latest[user.id] = review
            self.ctx.audit(
                session,
                user,
                "lead.review",
                [f"lead:{lead.id}", f"review:{review.id}", f"case:{case.id}", f"report:{report.id}"],
                {"decision": decision},
            )
            ident: Identification | None = None
            notes: dict[str, Any] = {"drafted": [], "contacts_without_email": [], "draft_errors": []}
            waiting_for = None
            others = [r for uid, r in latest.items() if uid != user.id and r.decision == "confirm"]
            if decision == "confirm":
                if not others:
                    waiting_for = f"a confirmation by a second, different user with the {SECOND_CONFIRM_ROLE} role"
                elif not user.has_role(SECOND_CONFIRM_ROLE):
                    waiting_for = f"a confirmation by a user with the {SECOND_CONFIRM_ROLE} role"
                else:
                    first = min(others, key=lambda r: r.id)
                    ident, notes = self.identifications.establish(
                        session, user, lead, case, report, first, review, latest
                    )
            lead.status = "identified" if ident is not None else _lead_status(latest)
            names = queries.usernames(session, {user.id})
            return {
                "review": review_view(review, names.get(user.id)),
                "lead": lead_view(lead),
                "identification": identification_view(ident) if ident is not None else None,
                "notifications": notes,
                "waiting_for": waiting_for,
            }

    def add_evidence(
        self, actor: User, lead_id: int, *, kind: str, description: str, reference: str | None = None
    ) -> dict[str, Any]:
        """Record corroborating evidence on a lead (DNA, fingerprints, dental, documents, personal
        effects, witness, other), with who recorded it. Role: examiner or reviewer.

        Raises:
            NotFoundError, InvalidInput, ConflictError (lead withdrawn), PermissionDenied.
        """
        check_choice(kind, EVIDENCE_KINDS, "evidence kind")
        text = required_text(description, "description")
        ref = optional_text(reference, "reference", max_len=300)
        with self.ctx.transaction(actor, "evidence.add", [f"lead:{lead_id}"]) as session:
            user = self.ctx.acting_user(session, actor, REVIEW_ROLES, "recording evidence")
            lead = queries.lead_by_id(session, lead_id, for_update=True)
            if lead.status == "withdrawn":
                raise ConflictError(f"lead {lead.id} belongs to a withdrawn identification")
            item = Evidence(lead_id=lead.id, kind=kind, description=text, reference=ref, recorded_by_id=user.id)
            session.add(item)
            session.flush()
            self.ctx.audit(session, user, "evidence.add", [f"evidence:{item.id}", f"lead:{lead.id}"], {"kind": kind})
            view = evidence_view(item, user.username)
            ident = session.execute(
                select(Identification).where(Identification.lead_id == lead.id, Identification.status == "confirmed")
            ).scalar()
            if ident is not None and ident.level == "preliminary" and kind in PRIMARY_EVIDENCE:
                notes = self.identifications.confirm_level(session, user, ident, primary_basis(item))
                view["identification"] = {**identification_view(ident), "notifications": notes}
            return view
