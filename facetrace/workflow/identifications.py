"""Identifications: established by the two-person rule (:mod:`facetrace.workflow.review`), listed,
shown and withdrawn. Establishing drafts the notifications to the family; withdrawing cancels those
not yet sent and drafts a correction to everyone who was (or may have been) told.
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
    IDENTIFICATION_STATUSES,
    Case,
    Evidence,
    Identification,
    Lead,
    Notification,
    Report,
    Review,
)
from facetrace.workflow import queries
from facetrace.workflow.common import (
    PRIMARY_EVIDENCE,
    READ_ROLES,
    WITHDRAW_ROLES,
    case_view,
    check_choice,
    evidence_view,
    identification_view,
    lead_view,
    may_notify,
    notification_view,
    report_view,
    required_text,
    review_view,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.drafting import Drafter


def primary_basis(item: Evidence) -> str:
    """Return what a primary identifier result confirms an identification on, e.g. ``dna evidence 12 (LAB-7)``."""
    return f"{item.kind} evidence {item.id}" + (f" ({item.reference})" if item.reference else "")


def primary_level(session: Session, lead_id: int) -> tuple[str, str | None]:
    """Return the level a lead's evidence supports: ``("confirmed", basis)`` with a primary
    identifier result (DNA, dental or fingerprint evidence), else ``("preliminary", None)``."""
    primary = session.execute(
        select(Evidence)
        .where(Evidence.lead_id == lead_id, Evidence.kind.in_(PRIMARY_EVIDENCE))
        .order_by(Evidence.id)
        .limit(1)
    ).scalar()
    return ("preliminary", None) if primary is None else ("confirmed", primary_basis(primary))


class IdentificationService:
    """Establish, list, show and withdraw identifications."""

    def __init__(self, ctx: WorkflowContext, drafter: Drafter) -> None:
        self.ctx = ctx
        self.drafter = drafter

    def establish(
        self,
        session: Session,
        user: User,
        lead: Lead,
        case: Case,
        report: Report,
        first: Review,
        second: Review,
        latest: dict[int, Review],
    ) -> tuple[Identification, dict[str, Any]]:
        """Check the policy (two different confirmers, no standing rejection, enough evidence, neither
        record identified yet), create the confirmed identification, mark the case identified and the
        report identified or located, and draft the notifications to the report's contacts; all
        audited, in the caller's transaction (the review that made the second confirmation).

        Returns the identification and what :meth:`Drafter.draft_for_identification` returns.

        Raises:
            PolicyError, ConflictError.
        """
        if first.reviewer_id == second.reviewer_id:  # cannot happen via review_lead; never allow it
            raise PolicyError("the two confirmations must come from two different users")
        rejecters = [r for r in latest.values() if r.decision == "reject"]
        if rejecters:
            names = queries.usernames(session, {r.reviewer_id for r in rejecters})
            raise PolicyError(
                f"lead {lead.id} has a standing rejection by {', '.join(sorted(names.values()))}: "
                "they must review it again before it can be confirmed"
            )
        evidence = session.execute(select(func.count(Evidence.id)).where(Evidence.lead_id == lead.id)).scalar() or 0
        needed = self.ctx.settings_in(session).min_evidence_items
        if evidence < needed:
            raise PolicyError(
                f"lead {lead.id} has {evidence} evidence item(s); policy requires at least {needed} "
                "(DNA, fingerprints, dental, documents, personal effects, witness, other) before confirming"
            )
        for taken, ref in (
            (queries.confirmed_identification_id(session, case_id=case.id), f"case {case.reference}"),
            (queries.confirmed_identification_id(session, report_id=report.id), f"report {report.reference}"),
        ):
            if taken is not None:
                raise ConflictError(
                    f"{ref} is already identified (identification {taken}); withdraw that identification first"
                )
        level, level_basis = primary_level(session, lead.id)
        ident = Identification(
            level=level,
            level_basis=level_basis,
            level_confirmed_at=datetime.now(UTC) if level == "confirmed" else None,
            level_confirmed_by_id=user.id if level == "confirmed" else None,
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
        names = queries.usernames(session, {first.reviewer_id, second.reviewer_id})
        self.ctx.audit(
            session,
            user,
            "identification.confirm",
            [f"identification:{ident.id}", f"lead:{lead.id}", f"case:{case.id}", f"report:{report.id}"],
            {
                "first_confirmed_by": names.get(first.reviewer_id),
                "second_confirmed_by": names.get(second.reviewer_id),
                "evidence_count": int(evidence),
                "score": round(lead.score, 4),
                "level": level,
            },
        )
        return ident, self.notify_if_allowed(session, user, ident)

    def notify_if_allowed(self, session: Session, user: User, ident: Identification) -> dict[str, Any]:
        """Draft the family notifications of an identification when the policy lets its level notify
        (``Settings.notify_level``); else draft nothing and say why under ``held``.

        Returns what :meth:`Drafter.draft_for_identification` returns, with ``held`` (None or a reason).
        """
        notify_level = self.ctx.settings_in(session).notify_level
        if not may_notify(ident.level, notify_level):
            return {
                "drafted": [],
                "contacts_without_email": [],
                "draft_errors": [],
                "held": f"the identification is {ident.level}; the policy notifies families of confirmed "
                "identifications only (a DNA, dental or fingerprint result, or an admin's recorded exception)",
            }
        return {**self.drafter.draft_for_identification(session, user, ident), "held": None}

    def confirm_level(self, session: Session, user: User, ident: Identification, basis: str) -> dict[str, Any]:
        """Raise a standing preliminary identification to confirmed (``basis`` says on what), audited,
        and draft the notifications the policy now allows, in the caller's transaction.

        Returns what :meth:`notify_if_allowed` returns.
        """
        ident.level = "confirmed"
        ident.level_basis = basis
        ident.level_confirmed_by_id = user.id
        ident.level_confirmed_at = datetime.now(UTC)
        self.ctx.audit(
            session,
            user,
            "identification.level",
            [
                f"identification:{ident.id}",
                f"lead:{ident.lead_id}",
                f"case:{ident.case_id}",
                f"report:{ident.report_id}",
            ],
            {"level": "confirmed", "basis": basis},
        )
        return self.notify_if_allowed(session, user, ident)

    def confirm_by_exception(self, actor: User, identification_id: int, *, rationale: str) -> dict[str, Any]:
        """Record an admin's exception: a preliminary identification becomes confirmed without a
        primary identifier result (none can be had), with the rationale. Role: admin.

        Returns ``{"identification", "notifications"}``.

        Raises:
            NotFoundError, InvalidInput (no rationale), ConflictError (withdrawn, already confirmed),
            PermissionDenied.
        """
        why = required_text(rationale, "rationale")
        with self.ctx.transaction(actor, "identification.level", [f"identification:{identification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, ("admin",), "confirming an identification by exception")
            ident = queries.identification_by_id(session, identification_id, for_update=True)
            if ident.status != "confirmed":
                raise ConflictError(f"identification {ident.id} is withdrawn")
            if ident.level == "confirmed":
                raise ConflictError(f"identification {ident.id} is already confirmed")
            notes = self.confirm_level(session, user, ident, f"exception recorded by {user.username}: {why}")
            return {"identification": identification_view(ident), "notifications": notes}

    def list_identifications(self, actor: User, *, status: str | None = None) -> list[dict[str, Any]]:
        """Return identifications (newest first) with case and report references. Any role.

        Raises:
            PermissionDenied, InvalidInput.
        """
        with self.ctx.transaction(actor, "identification.list", []) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "listing identifications")
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

    def get_identification(self, actor: User, identification_id: int, *, audited: bool = True) -> dict[str, Any]:
        """Return an identification with its lead, reviews, evidence and notifications. Any role.

        Audited as ``identification.view``, unless ``audited`` is False: a page that shows it as
        part of another record appends that view's one event itself.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "identification.view", [f"identification:{identification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, READ_ROLES, "reading an identification")
            ident = queries.identification_by_id(session, identification_id)
            if audited:
                self.ctx.audit(session, user, "identification.view", [f"identification:{ident.id}"])
            lead = queries.lead_by_id(session, ident.lead_id)
            reviews = queries.reviews_of(session, lead.id)
            evidence = queries.evidence_of(session, lead.id)
            notes = session.execute(
                select(Notification).where(Notification.identification_id == ident.id).order_by(Notification.id)
            ).scalars()
            names = queries.usernames(
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
        with self.ctx.transaction(actor, "identification.withdraw", [f"identification:{identification_id}"]) as session:
            user = self.ctx.acting_user(session, actor, WITHDRAW_ROLES, "withdrawing an identification")
            ident = queries.identification_by_id(session, identification_id, for_update=True)
            if ident.status == "withdrawn":
                raise ConflictError(f"identification {ident.id} is already withdrawn")
            ident.status = "withdrawn"
            ident.withdrawn_by_id = user.id
            ident.withdrawn_at = datetime.now(UTC)
            ident.withdrawal_reason = why
            lead = queries.lead_by_id(session, ident.lead_id)
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
            self.ctx.audit(
                session,
                user,
                "identification.withdraw",
                [f"identification:{ident.id}", f"lead:{lead.id}", f"case:{case.id}", f"report:{report.id}"],
                {"reason": why},
            )
            notes = self.drafter.flag_after_withdrawal(session, user, ident)
            return {"identification": identification_view(ident), "notifications": notes}
