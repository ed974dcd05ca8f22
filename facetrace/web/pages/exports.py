"""CSV downloads of the report and case lists, with the filters of the list on screen
(formula-like cells escaped, each download audited: :mod:`facetrace.usecases.exports`)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from facetrace.http.deps import ServiceDep
from facetrace.http.downloads import csv_response
from facetrace.http.roles import Reader
from facetrace.usecases import exports
from facetrace.usecases.records import CASE, REPORT
from facetrace.web.deps import web_router

router = web_router()


def _param(request: Request, key: str) -> str | None:
    return request.query_params.get(key, "").strip()[:200] or None


@router.get("/reports.csv")
def reports_csv(request: Request, actor: Reader, service: ServiceDep) -> Response:
    """The reports of the list (by status, name or reference) as a CSV download."""
    text = exports.records_csv(service, actor, REPORT, status=_param(request, "status"), query=_param(request, "q"))
    return csv_response(text, "reports")


@router.get("/cases.csv")
def cases_csv(request: Request, actor: Reader, service: ServiceDep) -> Response:
    """The cases of the list (by status) as a CSV download."""
    text = exports.records_csv(service, actor, CASE, status=_param(request, "status"), query=None)
    return csv_response(text, "cases")
