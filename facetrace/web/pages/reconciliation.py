"""Reconciliation beyond the face on the pages: a report's or case's descriptors, kind, marks (with
their photos), personal effects and primary identifier references; a case's search widened past
its exclusions; reopening a rejected lead; an admin's confirmation by exception; and the search by
marks and description.

Every form offers coded fields as select lists; the workflow checks every code, so a code posted
by hand is refused with the page shown again and the reason in words (never a traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError, NotFoundError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Admin, Reader, Recorder, Reopener, Reviewer
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import workflow_for
from facetrace.usecases.service import Service
from facetrace.web import facts as web_facts
from facetrace.web.deps import FormDep, quote_ref, text, uploads_of, web_router
from facetrace.web.pages import cases, reports
from facetrace.web.pages.records import RecordPages
from facetrace.web.photos import check_mark_uploads
from facetrace.web.render import page, redirect, safe_next
from facetrace.workflow.reconcile.facts import DESCRIPTOR_FIELDS

router = web_router()
PAGES: dict[str, RecordPages] = {"report": reports.PAGES, "case": cases.PAGES}


def _record_form(
    kind: str,
    reference: str,
    request: Request,
    actor: Actor,
    service: Service,
    card: str,
    call: Callable[[], Any],
    notice: str,
) -> Response:
    """Run ``call`` (a workflow change of the record's facts); redirect to the record's page with
    ``notice``, or show the page again with the reason under ``card`` (refusals of role or a
    missing record become error pages)."""
    try:
        call()
    except FacetraceError as exc:
        if exc.status in (403, 404) and exc.code != "policy":
            raise
        pages = PAGES[kind]
        return pages.show(
            request, actor, service, reference, status=exc.status, facts_error={"card": card, "message": exc.message}
        )
    response = redirect(f"/{kind}s/{quote_ref(reference)}", notice)
    response.headers["location"] += f"#{card}"  # back to the card the form was on
    return response


def _install(kind: str) -> None:
    plural = f"{kind}s"

    def describe(reference: str, request: Request, form: FormDep, actor: Recorder, service: ServiceDep) -> Response:
        """Replace the record's descriptors (chosen from lists), then match it again."""
        wf = workflow_for(service, actor)
        values = web_facts.read_descriptors(form, kind)
        return _record_form(
            kind,
            reference,
            request,
            actor,
            service,
            "description",
            lambda: wf.reconciliation.set_descriptors(actor.user, kind, reference, values),
            "described",
        )

    def add_mark(reference: str, request: Request, form: FormDep, actor: Recorder, service: ServiceDep) -> Response:
        """Record a distinguishing mark with its photos (checked first: size, format), then match again."""
        photos, problems = check_mark_uploads(service, uploads_of(form, "mark_photos"))
        if problems:
            message = "These photos cannot be used; nothing was stored: " + "; ".join(problems)
            return PAGES[kind].show(
                request, actor, service, reference, status=422, facts_error={"card": "marks", "message": message}
            )
        wf = workflow_for(service, actor)
        mark = web_facts.read_mark(form)
        return _record_form(
            kind,
            reference,
            request,
            actor,
            service,
            "marks",
            lambda: wf.reconciliation.add_mark(actor.user, kind, reference, mark, photos),
            "mark_added",
        )

    def remove_mark(
        reference: str, mark_id: int, request: Request, form: FormDep, actor: Recorder, service: ServiceDep
    ) -> Response:
        """Remove a mark recorded in error, with the reason (audited)."""
        wf = workflow_for(service, actor)
        _own(service, actor, kind, reference, "marks", mark_id)
        return _record_form(
            kind,
            reference,
            request,
            actor,
            service,
            "marks",
            lambda: wf.reconciliation.remove_mark(actor.user, mark_id, reason=text(form, "reason")),
            "mark_removed",
        )

    def add_effect(reference: str, request: Request, form: FormDep, actor: Recorder, service: ServiceDep) -> Response:
        """Record a piece of clothing or a personal effect."""
        wf = workflow_for(service, actor)
        effect = {k: text(form, k) for k in ("kind", "colour", "inscription", "description")}
        return _record_form(
            kind,
            reference,
            request,
            actor,
            service,
            "effects",
            lambda: wf.reconciliation.add_effect(actor.user, kind, reference, effect),
            "effect_added",
        )

    def add_reference(
        reference: str, request: Request, form: FormDep, actor: Recorder, service: ServiceDep
    ) -> Response:
        """Record where a DNA sample, dental records or fingerprints are held (a reference, never the data)."""
        wf = workflow_for(service, actor)
        item = {k: text(form, k) for k in ("kind", "status", "holder", "sample_reference", "note")}
        return _record_form(
            kind,
            reference,
            request,
            actor,
            service,
            "primary",
            lambda: wf.reconciliation.add_primary_reference(actor.user, kind, reference, item),
            "primary_reference_added",
        )

    def set_reference_status(
        reference: str, item_id: int, request: Request, form: FormDep, actor: Recorder, service: ServiceDep
    ) -> Response:
        """Move a primary reference on to another status of its kind."""
        wf = workflow_for(service, actor)
        _own(service, actor, kind, reference, "primary_references", item_id)
        return _record_form(
            kind,
            reference,
            request,
            actor,
            service,
            "primary",
            lambda: wf.reconciliation.set_primary_reference_status(actor.user, item_id, text(form, "status")),
            "primary_reference_updated",
        )

    base = f"/{plural}/{{reference}}"
    router.add_api_route(f"{base}/descriptors", describe, methods=["POST"])
    router.add_api_route(f"{base}/marks", add_mark, methods=["POST"])
    router.add_api_route(f"{base}/marks/{{mark_id}}/remove", remove_mark, methods=["POST"])
    router.add_api_route(f"{base}/effects", add_effect, methods=["POST"])
    router.add_api_route(f"{base}/primary-references", add_reference, methods=["POST"])
    router.add_api_route(f"{base}/primary-references/{{item_id}}", set_reference_status, methods=["POST"])


def _own(service: Service, actor: Actor, kind: str, reference: str, key: str, item_id: int) -> None:
    """Refuse (404) a mark or primary reference that is not the record's own: the path names both."""
    facts = workflow_for(service, actor).reconciliation.facts(actor.user, kind, reference)
    if item_id not in {item["id"] for item in facts[key]}:
        raise NotFoundError(f"{kind} {reference} has no such {key.replace('_', ' ')[:-1]} {item_id}")


for _kind in ("report", "case"):
    _install(_kind)


@router.post("/cases/{reference}/kind")
def set_case_kind(reference: str, request: Request, form: FormDep, actor: Recorder, service: ServiceDep) -> Response:
    """Set the case's kind (and, for a body part, the case of the body it belongs to)."""
    wf = workflow_for(service, actor)
    kind, parent = text(form, "kind"), text(form, "parent_case") or None
    return _record_form(
        "case",
        reference,
        request,
        actor,
        service,
        "description",
        lambda: wf.reconciliation.set_case_kind(actor.user, reference, kind, parent_case=parent),
        "case_kind_set",
    )


@router.post("/cases/{reference}/widen")
def widen_search(reference: str, request: Request, form: FormDep, actor: Reviewer, service: ServiceDep) -> Response:
    """Search all reports for the case, its exclusions ignored (an examiner's decision, audited)."""
    result = workflow_for(service, actor).matching.match_case(actor.user, reference, widen=True)
    leads = result.get("leads") or {}
    notice = "widened_found" if leads.get("created") or leads.get("updated") else "widened_nothing"
    response = redirect(f"/cases/{quote_ref(reference)}", notice)
    response.headers["location"] += "#exclusions"
    return response


@router.post("/leads/{lead_id}/reopen")
def reopen_lead(lead_id: int, request: Request, form: FormDep, actor: Reopener, service: ServiceDep) -> Response:
    """Reopen a rejected lead with a rationale; back to the page the form was on."""
    workflow_for(service, actor).reconciliation.reopen_lead(actor.user, lead_id, rationale=text(form, "rationale"))
    back = safe_next(text(form, "next") or f"/leads/{lead_id}")
    return redirect(back.split("?")[0].split("#")[0], "lead_reopened")


@router.post("/identifications/{ident_id}/confirm")
def confirm_by_exception(ident_id: int, request: Request, form: FormDep, actor: Admin, service: ServiceDep) -> Response:
    """An admin's exception: a preliminary identification becomes confirmed without a primary
    identifier result, with the rationale (audited); the notifications the policy now allows are drafted."""
    workflow_for(service, actor).identifications.confirm_by_exception(
        actor.user, ident_id, rationale=text(form, "rationale")
    )
    return redirect(f"/identifications/{ident_id}", "confirmed_by_exception")


# -- search by marks and description ------------------------------------------------------------------


def _search_form(form: Any = None) -> dict[str, str]:
    keys = (
        "target",
        *DESCRIPTOR_FIELDS,
        "age_min",
        "age_max",
        "height_min",
        "height_max",
        "date_of_birth",
        "mark_type",
        "mark_region",
        "mark_side",
        "mark_keywords",
    )
    values = {k: (text(form, k) if form is not None else "") for k in keys}
    values["target"] = values["target"] or "reports"
    return values


def _search_page(
    request: Request,
    actor: Actor,
    values: dict[str, str],
    *,
    status: int = 200,
    error: str = "",
    result: dict[str, Any] | None = None,
) -> Response:
    return page(
        request,
        actor,
        "search_marks.html",
        http_status=status,
        title="Search by marks and description",
        form=values,
        error=error,
        result=result,
        vocab=web_facts.vocabulary(),
    )


@router.get("/search/marks")
def search_marks_form(request: Request, actor: Reader) -> Response:
    """The search by marks and description: no face, ranked by agreement."""
    return _search_page(request, actor, _search_form())


@router.post("/search/marks")
def search_marks(request: Request, form: FormDep, actor: Reader, service: ServiceDep) -> Response:
    """Search reports or cases by descriptors and one mark; the results are leads for examiners, never a match."""
    values = _search_form(form)
    descriptors: dict[str, Any] = {k: values[k] or None for k in DESCRIPTOR_FIELDS}
    descriptors.update(height_min=values["height_min"] or None, height_max=values["height_max"] or None)
    if values["target"] == "reports":
        descriptors.update(age_min=values["age_min"] or None, age_max=values["age_max"] or None)
    marks = []
    if values["mark_type"] or values["mark_region"] or values["mark_keywords"]:
        marks.append(
            {
                "type": values["mark_type"] or None,
                "region": values["mark_region"] or None,
                "side": values["mark_side"] or None,
                "keywords": values["mark_keywords"],
            }
        )
    try:
        result = workflow_for(service, actor).reconciliation.search(
            actor.user,
            target=values["target"],
            descriptors=descriptors,
            marks=marks,
            date_of_birth=(values["date_of_birth"] or None) if values["target"] == "cases" else None,
        )
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return _search_page(request, actor, values, status=exc.status, error=exc.message)
    return _search_page(request, actor, values, result=result)
