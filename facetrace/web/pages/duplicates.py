"""Possible duplicate reports (the same person reported twice): both reports side by side, with
merge and dismiss (the workflow's :meth:`~facetrace.workflow.matching.MatchingService.merge_reports`
and :meth:`~facetrace.workflow.matching.MatchingService.dismiss_duplicate`), each with a rationale."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError, NotFoundError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Merger, Reader
from facetrace.store.workflow_models import DUPLICATE_STATUSES
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import workflow_for
from facetrace.usecases.service import Service
from facetrace.web.deps import FormDep, quote_ref, text, web_router
from facetrace.web.photos import photos_for_page
from facetrace.web.render import page, redirect
from facetrace.workflow.common import MERGE_ROLES

router = web_router()


def find_flag(service: Service, actor: Actor, flag_id: int) -> dict[str, Any]:
    """Return a duplicate flag with both reports' JSON views. Raises NotFoundError, PermissionDenied."""
    for flag in workflow_for(service, actor).matching.list_duplicates(actor.user, status=None):
        if flag["id"] == flag_id:
            return flag
    raise NotFoundError(f"no duplicate flag {flag_id}")


def side(service: Service, actor: Actor, report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return one side of the comparison: the report with its contacts, its faces and photos
    (read through the workflow, which audits the view), or None when the report was erased."""
    if report is None:
        return None
    detail = workflow_for(service, actor).reports.get_report(actor.user, report["reference"])
    photos, faces = photos_for_page(service, detail["photos"])
    return {"r": detail, "photos": photos, "faces": faces}


def show_flag(
    request: Request,
    actor: Actor,
    service: Service,
    flag_id: int,
    *,
    status: int = 200,
    error: str = "",
    rationale: str = "",
    into: str = "",
) -> Response:
    """Return the side-by-side page of a duplicate flag, with a refusal's reason at the top and
    the typed rationale kept. Raises NotFoundError, PermissionDenied."""
    flag = find_flag(service, actor, flag_id)
    return page(
        request,
        actor,
        "duplicate.html",
        http_status=status,
        title=f"Possible duplicate {flag_id}",
        d=flag,
        sides=[side(service, actor, flag["report"]), side(service, actor, flag["other_report"])],
        min_quality=service.settings.min_quality,
        can_merge=any(actor.user.has_role(r) for r in MERGE_ROLES),
        error=error,
        rationale=rationale,
        into=into,
    )


@router.get("/duplicates")
def list_duplicates(request: Request, actor: Reader, service: ServiceDep) -> Response:
    """The possible duplicate reports, both reports linked (default: those still to decide)."""
    status = request.query_params.get("status", "open")
    flags = workflow_for(service, actor).matching.list_duplicates(actor.user, status=status or None)
    return page(
        request,
        actor,
        "duplicates.html",
        title="Possible duplicate reports",
        rows=flags,
        status=status,
        statuses=DUPLICATE_STATUSES,
    )


@router.get("/duplicates/{flag_id}")
def show_duplicate(flag_id: int, request: Request, actor: Reader, service: ServiceDep) -> Response:
    """Two reports flagged as possibly the same person, side by side: names, dates, descriptions,
    faces and photos, contacts; merge or dismiss with a rationale."""
    return show_flag(request, actor, service, flag_id)


@router.post("/duplicates/{flag_id}/merge")
def merge_duplicate(flag_id: int, request: Request, form: FormDep, actor: Merger, service: ServiceDep) -> Response:
    """Merge the flagged report that is not kept into the one kept (the form's ``into``), with a rationale."""
    flag = find_flag(service, actor, flag_id)
    into, rationale = text(form, "into"), text(form, "rationale")
    references = [r["reference"] for r in (flag["report"], flag["other_report"]) if r is not None]
    if into not in references or len(references) != 2:
        return show_flag(
            request,
            actor,
            service,
            flag_id,
            status=422,
            error="Choose the report to keep: the other one is merged into it.",
            rationale=rationale,
        )
    source = next(ref for ref in references if ref != into)
    try:
        workflow_for(service, actor).matching.merge_reports(actor.user, source, into, rationale=rationale)
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return show_flag(
            request, actor, service, flag_id, status=exc.status, error=exc.message, rationale=rationale, into=into
        )
    return redirect(f"/reports/{quote_ref(into)}", "reports_merged")


@router.post("/duplicates/{flag_id}/dismiss")
def dismiss_duplicate(flag_id: int, request: Request, form: FormDep, actor: Merger, service: ServiceDep) -> Response:
    """Record that the two flagged reports are different people, with a rationale."""
    rationale = text(form, "rationale")
    try:
        workflow_for(service, actor).matching.dismiss_duplicate(actor.user, flag_id, rationale=rationale)
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return show_flag(request, actor, service, flag_id, status=exc.status, error=exc.message, rationale=rationale)
    return redirect(f"/duplicates/{flag_id}", "duplicate_dismissed")
