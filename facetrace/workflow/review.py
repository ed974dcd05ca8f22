"""Review of leads, evidence, and identifications (established and withdrawn).

The two-person rule: an identification is established only by a confirmation from a user with
the reviewer role, when a *different* user's standing review of the same lead is also a
confirmation. Reviews are append-only; a user's latest review of a lead is their standing
position, so an examiner who rejected can later confirm (and vice versa). The same user
confirming twice is refused, and the database refuses an identification whose two confirmers
are the same user. Establishing also needs ``Settings.min_evidence_items`` evidence items, no
standing rejection by anyone, and neither the case nor the report already identified.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError, PolicyError
from facetrace.store.accounts import User
from facetrace.store.workflow_models import (
    DECISIONS,
    EVIDENCE_KINDS,
    IDENTIFICATION_STATUSES,
    Case,
    Evidence,
    Identification,
    Lead,
    Report,
    Review,
)
from facetrace.workflow.common import (
    READ_ROLES,
    REVIEW_ROLES,
    SECOND_CONFIRM_ROLE,
    WITHDRAW_ROLES,
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
from facetrace.workflow.notify import NotifyMixin


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


class ReviewMixin(NotifyMixin):
    """Review leads, record evidence, establish and withdraw identifications."""

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
        with self._tx(actor, "lead.review", [f"lead:{lead_id}"]) as session:
            user = self._user(session, actor, REVIEW_ROLES, "reviewing a lead")
            lead = self._lead(session, lead_id, for_update=True)
            report = session.get(Report, lead.report_id)
            case = session.get(Case, lead.case_id)
            assert report is not None and case is not None
            if lead.status in ("identified", "withdrawn"):
                raise ConflictError(f"lead {lead.id} is {lead.status}; it takes no more reviews")
            if report.status == "merged":
                raise ConflictError(
                    f"report {report.reference} was merged into another report; review that report's lead instead"
                )
            reviews = list(
                session.execute(select(Review).where(Review.lead_id == lead.id).order_by(Review.id)).scalars()
            )
            latest = _standing(reviews)
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
            self._audit(
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
                    ident = self._establish(session, user, lead, case, report, first, review, latest)
                    notes = self._draft_for_identification(session, user, ident)
            lead.status = "identified" if ident is not None else _lead_status(latest)
            names = self._usernames(session, {user.id})
            return {
                "review": review_view(review, names.get(user.id)),
                "lead": lead_view(lead),
                "identification": identification_view(ident) if ident is not None else None,
                "notifications": notes,
                "waiting_for": waiting_for,
            }

    def _establish(
        self,
        session: Session,
        user: User,
        lead: Lead,
        case: Case,
        report: Report,
        first: Review,
        second: Review,
        latest: dict[int, Review],
    ) -> Identification:
        """Check the policy and create the identification. Raises PolicyError or ConflictError."""
        if first.reviewer_id == second.reviewer_id:  # cannot happen via review_lead; never allow it
            raise PolicyError("the two confirmations must come from two different users")
        rejecters = [r for r in latest.values() if r.decision == "reject"]
        if rejecters:
            names = self._usernames(session, {r.reviewer_id for r in rejecters})
            raise PolicyError(
                f"lead {lead.id} has a standing rejection by {', '.join(sorted(names.values()))}: "
                "they must review it again before it can be confirmed"
            )
        evidence = session.execute(select(func.count(Evidence.id)).where(Evidence.lead_id == lead.id)).scalar() or 0
        needed = self.settings.min_evidence_items
        if evidence < needed:
            raise PolicyError(
                f"lead {lead.id} has {evidence} evidence item(s); policy requires at least {needed} "
                "(DNA, fingerprints, dental, documents, personal effects, witness, other) before confirming"
            )
        for column, what, ref in (
            (Identification.case_id, case.id, f"case {case.reference}"),
            (Identification.report_id, report.id, f"report {report.reference}"),
        ):
            taken = session.execute(
                select(Identification.id).where(column == what, Identification.status == "confirmed")
            ).scalar()
            if taken is not None:
                raise ConflictError(
                    f"{ref} is already identified (identification {taken}); withdraw that identification first"
                )
        ident = Identification(
            lead_id=lead.id,
            case_id=case.id,
            report_id=report.id,
            status="confirmed",
            first_confirmed_by_id=first.reviewer_id,
            second_confirmed_by_id=second.reviewer_id,
            first_review_id=first.id,
            second_review_id=second.id,
            evidence_count=int(evidence),
            confirmed_at=datetime.now(UTC),
        )
        try:
            with session.begin_nested():
                session.add(ident)
        except IntegrityError:
            # A concurrent confirmation won the race for this case or report (partial unique index).
            raise ConflictError(
                f"case {case.reference} or report {report.reference} was identified meanwhile"
            ) from None
        case.status = "identified"
        report.status = "identified_deceased" if case.condition == "deceased" else "located_alive"
        names = self._usernames(session, {first.reviewer_id, second.reviewer_id})
        self._audit(
            session,
            user,
            "identification.confirm",
            [f"identification:{ident.id}", f"lead:{lead.id}", f"case:{case.id}", f"report:{report.id}"],
            {
                "first_confirmed_by": names.get(first.reviewer_id),
                "second_confirmed_by": names.get(second.reviewer_id),
                "evidence_count": int(evidence),
                "score": round(lead.score, 4),
            },
        )
        return ident

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
        with self._tx(actor, "evidence.add", [f"lead:{lead_id}"]) as session:
            user = self._user(session, actor, REVIEW_ROLES, "recording evidence")
            lead = self._lead(session, lead_id, for_update=True)
            if lead.status == "withdrawn":
                raise ConflictError(f"lead {lead.id} belongs to a withdrawn identification")
            item = Evidence(lead_id=lead.id, kind=kind, description=text, reference=ref, recorded_by_id=user.id)
            session.add(item)
            session.flush()
            self._audit(session, user, "evidence.add", [f"evidence:{item.id}", f"lead:{lead.id}"], {"kind": kind})
            return evidence_view(item, user.username)

    def list_identifications(self, actor: User, *, status: str | None = None) -> list[dict[str, Any]]:
        """Return identifications (newest first) with case and report references. Any role.

        Raises:
            PermissionDenied, InvalidInput.
        """
        with self._tx(actor, "identification.list", []) as session:
            self._user(session, actor, READ_ROLES, "listing identifications")
            stmt = (
                select(Identification, Case.reference, Report.reference, Report.name)
                .join(Case, Case.id == Identification.case_id)
                .join(Report, Report.id == Identification.report_id)
                .order_by(Identification.id.desc())
            )
            if status:
                stmt = stmt.where(Identification.status == check_choice(status, IDENTIFICATION_STATUSES, "status"))
            return [
                {**identification_view(i), "case": c, "report": r, "report_name": name}
                for i, c, r, name in session.execute(stmt).all()
            ]

    def get_identification(self, actor: User, identification_id: int) -> dict[str, Any]:
        """Return an identification with its lead, reviews, evidence and notifications. Any role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        from facetrace.store.workflow_models import Notification
        from facetrace.workflow.common import notification_view

        with self._tx(actor, "identification.view", [f"identification:{identification_id}"]) as session:
            user = self._user(session, actor, READ_ROLES, "reading an identification")
            ident = self._identification(session, identification_id)
            self._audit(session, user, "identification.view", [f"identification:{ident.id}"])
            lead = self._lead(session, ident.lead_id)
            reviews = list(
                session.execute(select(Review).where(Review.lead_id == lead.id).order_by(Review.id)).scalars()
            )
            evidence = list(
                session.execute(select(Evidence).where(Evidence.lead_id == lead.id).order_by(Evidence.id)).scalars()
            )
            notes = session.execute(
                select(Notification).where(Notification.identification_id == ident.id).order_by(Notification.id)
            ).scalars()
            names = self._usernames(
                session,
                {r.reviewer_id for r in reviews}
                | {e.recorded_by_id for e in evidence}
                | {ident.first_confirmed_by_id, ident.second_confirmed_by_id, ident.withdrawn_by_id},
            )
            case, report = session.get(Case, ident.case_id), session.get(Report, ident.report_id)
            return {
                **identification_view(ident),
                "first_confirmed_by": names.get(ident.first_confirmed_by_id),
                "second_confirmed_by": names.get(ident.second_confirmed_by_id),
                "withdrawn_by": names.get(ident.withdrawn_by_id) if ident.withdrawn_by_id else None,
                "lead": lead_view(lead),
                "case": case_view(case) if case else None,
                "report": report_view(report) if report else None,
                "reviews": [review_view(r, names.get(r.reviewer_id)) for r in reviews],
                "evidence": [evidence_view(e, names.get(e.recorded_by_id)) for e in evidence],
                "notifications": [notification_view(n, with_body=False) for n in notes],
            }

    def withdraw_identification(self, actor: User, identification_id: int, *, reason: str) -> dict[str, Any]:
        """Withdraw an identification with a reason. Everything that followed is flagged: the lead
        is closed, the case and report return to open/missing, notifications not yet sent are
        cancelled and a correction is drafted to every contact who was (or may have been)
        notified, for approval like any notification. Role: reviewer.

        Returns ``{"identification", "notifications": {"cancelled", "corrections_drafted"}}``.

        Raises:
            NotFoundError, InvalidInput (no reason), ConflictError (already withdrawn), PermissionDenied.
        """
        why = required_text(reason, "reason")
        with self._tx(actor, "identification.withdraw", [f"identification:{identification_id}"]) as session:
            user = self._user(session, actor, WITHDRAW_ROLES, "withdrawing an identification")
            ident = self._identification(session, identification_id, for_update=True)
            if ident.status == "withdrawn":
                raise ConflictError(f"identification {ident.id} is already withdrawn")
            ident.status = "withdrawn"
            ident.withdrawn_by_id = user.id
            ident.withdrawn_at = datetime.now(UTC)
            ident.withdrawal_reason = why
            lead = self._lead(session, ident.lead_id)
            lead.status = "withdrawn"
            lead.flag = f"identification {ident.id} withdrawn: {why}"
            case, report = session.get(Case, ident.case_id), session.get(Report, ident.report_id)
            assert case is not None and report is not None
            other_leads = session.execute(
                select(func.count(Lead.id)).where(
                    Lead.case_id == case.id, Lead.id != lead.id, Lead.status.in_(("open", "under_review"))
                )
            ).scalar()
            if case.status == "identified":
                case.status = "under_review" if other_leads else "open"
            if report.status in ("identified_deceased", "located_alive"):
                report.status = "missing"
            session.flush()
            self._audit(
                session,
                user,
                "identification.withdraw",
                [f"identification:{ident.id}", f"lead:{lead.id}", f"case:{case.id}", f"report:{report.id}"],
                {"reason": why},
            )
            notes = self._flag_after_withdrawal(session, user, ident)
            return {"identification": identification_view(ident), "notifications": notes}
