"""The facts of stored reports and cases, read from the database for reconciliation: descriptors,
date of birth or found date, and marks; and which reports a case's recorded facts rule out."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.config import Settings
from facetrace.store.reconciliation_models import Mark as MarkRow
from facetrace.store.workflow_models import Case, Report
from facetrace.workflow.common import as_utc
from facetrace.workflow.reconcile.agreement import Agreement, agreement
from facetrace.workflow.reconcile.facts import Descriptors, Mark, parse_descriptors
from facetrace.workflow.reconcile.rules import Exclusion, ExclusionRules, exclusions, rules_from


@dataclass(frozen=True)
class RecordFacts:
    """What one report or case records of the person, beyond the face."""

    descriptors: Descriptors
    date_of_birth: str | None = None  # reports
    found_on: date | None = None  # cases: the day found (or recorded), the day a report's age is taken on
    marks: list[Mark] = field(default_factory=list)

    @property
    def known(self) -> bool:
        """Whether anything is recorded (descriptors, a date of birth or marks)."""
        return bool(self.descriptors.known() or self.date_of_birth or self.marks)


def exclusion_rules(settings: Settings) -> ExclusionRules:
    """Return the exclusion rules the settings set."""
    return rules_from(
        settings.exclusion_rules, settings.exclusion_age_tolerance_years, settings.exclusion_height_tolerance_cm
    )


def mark_of(row: MarkRow) -> Mark:
    """Return a stored mark as a :class:`Mark`."""
    return Mark(row.type, row.region, row.side, row.aspect, row.description, tuple(row.keywords or ()), row.id)


def stored_descriptors(value: dict[str, object] | None, record: str) -> Descriptors:
    """Return stored descriptors (stored checked; an unreadable value counts as unknown)."""
    try:
        return parse_descriptors(dict(value or {}), record=record)
    except Exception:  # a value stored before a vocabulary changed: unknown, never an error
        return Descriptors()


def marks_of(
    session: Session, *, report_ids: list[int] | None = None, case_id: int | None = None
) -> dict[int, list[Mark]]:
    """Return the marks of these reports (by report id) or of this case (under the case id)."""
    stmt = select(MarkRow).order_by(MarkRow.id)
    if case_id is not None:
        stmt = stmt.where(MarkRow.case_id == case_id)
    else:
        stmt = stmt.where(MarkRow.report_id.in_(report_ids or []))
    out: dict[int, list[Mark]] = defaultdict(list)
    for row in session.execute(stmt).scalars():
        key = row.case_id if case_id is not None else row.report_id
        assert key is not None
        out[key].append(mark_of(row))
    return out


def case_facts(session: Session, case: Case) -> RecordFacts:
    """Return what a case records."""
    found = as_utc(case.found_at) or as_utc(case.created_at)
    return RecordFacts(
        stored_descriptors(case.descriptors, "case"),
        found_on=found.date() if found else None,
        marks=marks_of(session, case_id=case.id).get(case.id, []),
    )


def report_facts(session: Session, reports: list[Report]) -> dict[int, RecordFacts]:
    """Return what each report records, by report id."""
    marks = marks_of(session, report_ids=[r.id for r in reports])
    return {
        r.id: RecordFacts(stored_descriptors(r.descriptors, "report"), r.date_of_birth, marks=marks.get(r.id, []))
        for r in reports
    }


def excluded_by(report: RecordFacts, case: RecordFacts, rules: ExclusionRules) -> list[Exclusion]:
    """Return the rules that rule out that this report and this case are one person."""
    return exclusions(report.descriptors, report.date_of_birth, case.descriptors, case.found_on, rules)


def agreement_of(report: RecordFacts, case: RecordFacts, rules: ExclusionRules | None = None) -> Agreement:
    """Return how far a report and a case agree beyond the face; ``rules``: the exclusion rules the
    pair was screened with (None: not screened, as in a widened search)."""
    screened = rules.fields() if rules is not None else frozenset()
    return agreement(
        report.descriptors, report.date_of_birth, report.marks, case.descriptors, case.found_on, case.marks, screened
    )
