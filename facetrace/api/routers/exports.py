"""CSV downloads for spreadsheets: the audit trail (auditors) and the report and case lists
(readers), filtered as their JSON lists are. Cells that a spreadsheet would run as a formula are
written as text (:mod:`facetrace.usecases.exports`); each download is audited."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from fastapi.responses import Response

from facetrace.api.schemas import file_response
from facetrace.http.deps import ServiceDep
from facetrace.http.downloads import csv_response
from facetrace.http.roles import Auditor, Reader
from facetrace.usecases import exports
from facetrace.usecases.records import CASE, REPORT

router = APIRouter(tags=["exports"])
CSV_DOC = file_response(["text/csv"], "A CSV file (UTF-8 with a byte-order mark); formula-like cells start with '.")


@router.get("/audit.csv", response_class=Response, responses=CSV_DOC)
def audit_csv(
    *,
    actor: str | None = Query(None, max_length=200, description="User name (cli:NAME for the command line)."),
    action: str | None = Query(None, max_length=100, description="An action, or a prefix ending in '.'."),
    record: str | None = Query(None, max_length=200, description="A record such as person:12."),
    outcome: str | None = Query(None, max_length=20),
    since: datetime | None = Query(None, description="ISO time, inclusive."),
    until: datetime | None = Query(None, description="ISO time, exclusive."),
    who: Auditor,
    service: ServiceDep,
) -> Response:
    """The audit events matching the filters of ``GET /audit``, newest first, as CSV (at most
    100,000 rows), with each action's plain-words label. Audited as ``audit.export``."""
    text = exports.audit_csv(
        service,
        who,
        actor_name=actor,
        action=action,
        record=record,
        outcome=outcome,
        since=since,
        until=until,
    )
    return csv_response(text, "audit")


@router.get("/reports.csv", response_class=Response, responses=CSV_DOC)
def reports_csv(
    *,
    status: str | None = Query(None),
    q: str | None = Query(None, max_length=200),
    actor: Reader,
    service: ServiceDep,
) -> Response:
    """The reports of ``GET /reports`` with the same filters, newest first, as CSV. Audited as
    ``report.list_export``."""
    return csv_response(exports.records_csv(service, actor, REPORT, status=status, query=q), "reports")


@router.get("/cases.csv", response_class=Response, responses=CSV_DOC)
def cases_csv(*, status: str | None = Query(None), actor: Reader, service: ServiceDep) -> Response:
    """The cases of ``GET /cases`` with the same filter, newest first, as CSV. Audited as
    ``case.list_export``."""
    return csv_response(exports.records_csv(service, actor, CASE, status=status, query=None), "cases")
