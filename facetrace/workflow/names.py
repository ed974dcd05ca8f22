"""Reports and cases found by name, across scripts and spellings (:mod:`facetrace.store.names`):
the candidates each list searches, and the check that a report's name is not already on another
report (a possible duplicate that no photo may reveal: a report without photos is never
compared by face)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, false, select
from sqlalchemy.orm import Session

from facetrace.store.name_search import match_view, ranked_matches, rows_in_order
from facetrace.store.names import NameMatch, Tier
from facetrace.store.workflow_models import Case, Lead, Report

SIMILAR_NAMES_SHOWN = 10
# Leads that tie a case to a report's name in the case list: rejected and withdrawn ones do not.
NAMING_LEAD_STATUSES = ("open", "under_review", "identified")


def case_candidates(stmt: Select[Case], text: str) -> Select[int, str, bool]:
    """Return ``stmt`` (cases, in list order) as name-search candidates: each case with the name key
    of every report an open, under-review or identified lead ties it to (none: an empty key), and
    whether its reference or such a report's name contains ``text`` as typed."""
    like = f"%{text}%"
    return (
        stmt.with_only_columns(Case.id, Report.name_key, Case.reference.ilike(like) | Report.name.ilike(like))
        .select_from(Case)
        .outerjoin(Lead, and_(Lead.case_id == Case.id, Lead.status.in_(NAMING_LEAD_STATUSES)))
        .outerjoin(Report, Report.id == Lead.report_id)
    )


def best_per_row(matches: list[NameMatch]) -> list[NameMatch]:
    """Return ``matches`` (best first) with only the first, best, match of each row id."""
    seen: set[int] = set()
    out = []
    for match in matches:
        if match.row_id not in seen:
            seen.add(match.row_id)
            out.append(match)
    return out


def similar_names(session: Session, report: Report) -> list[dict[str, Any]]:
    """Return the other reports (not merged) whose name matches ``report``'s across scripts and
    spellings, best first (at most :data:`SIMILAR_NAMES_SHOWN`): each with its reference, name,
    date of birth, status and ``name_match``. Only exact keys and close spellings count (a name
    merely containing this one's words, Ivan in Ivanenko, does not). Empty for a name without letters."""
    if not report.name_key:
        return []
    candidates = (
        select(Report.id, Report.name_key, false())
        .where(Report.id != report.id, Report.status != "merged")
        .order_by(Report.id.desc())
    )
    matches = [m for m in ranked_matches(session, candidates, report.name) if m.tier != Tier.CONTAINS]
    matches = matches[:SIMILAR_NAMES_SHOWN]
    rows = rows_in_order(session, Report, [m.row_id for m in matches])
    return [
        {
            "id": r.id,
            "reference": r.reference,
            "name": r.name,
            "date_of_birth": r.date_of_birth,
            "status": r.status,
            "name_match": match_view(m),
        }
        for r, m in zip(rows, matches, strict=True)
    ]
