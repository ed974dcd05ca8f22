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
    session: Session, *, report_ids: list[int] | None = None, case_ids: list[int] | None = None
) -> dict[int, list[Mark]]:
    """Return the marks of these reports, or of these cases, by record id (one query)."""
    column = MarkRow.case_id if case_ids is not None else MarkRow.report_id
    stmt = (
        select(MarkRow).where(column.in_(case_ids if case_ids is not None else report_ids or [])).order_by(MarkRow.id)
    )
    out: dict[int, list[Mark]] = defaultdict(list)
    for row in session.execute(stmt).scalars():
        key = row.case_id if case_ids is not None else row.report_id
        assert key is not None
        out[key].append(mark_of(row))
    return out


def cases_facts(session: Session, cases: list[Case]) -> dict[int, RecordFacts]:
    """Return what each case records, by case id (the age of a report is taken on the day the case
    was found, or recorded)."""
    marks = marks_of(session, case_ids=[c.id for c in cases])
    out = {}
    for case in cases:
        found = as_utc(case.found_at) or as_utc(case.created_at)
        out[case.id] = RecordFacts(
            stored_descriptors(case.descriptors, "case"),
            found_on=found.date() if found else None,
            marks=marks.get(case.id, []),
        )
    return out


def case_facts(session: Session, case: Case) -> RecordFacts:
    """Return what a case records."""
    return cases_facts(session, [case])[case.id]


def report_facts(session: Session, reports: list[Report]) -> dict[int, RecordFacts]:
    """Return what each report records, by report id (one query for all their marks)."""
    marks = marks_of(session, report_ids=[r.id for r in reports])
    return {
        r.id: RecordFacts(stored_descriptors(r.descriptors, "report"), r.date_of_birth, marks=marks.get(r.id, []))
        for r in reports
    }


def screenable_reports(session: Session) -> dict[int, RecordFacts]:
    """Return the facts an exclusion rule can use (sex, height, date of birth; no marks) of every root
    report that records any of them, by report id: read once, for every case searched after."""
    rows = session.execute(
        select(Report.id, Report.descriptors, Report.date_of_birth).where(Report.status != "merged")
    ).all()
    out = {}
    for report_id, descriptors, date_of_birth in rows:
        facts = RecordFacts(stored_descriptors(descriptors, "report"), date_of_birth)
        if facts.date_of_birth or {"sex", "height_min", "height_max"} & set(facts.descriptors.known()):
            out[int(report_id)] = facts
    return out


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
