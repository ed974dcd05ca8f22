"""Cases (found persons): the intake form's fields, the case page, its correction, and the case file as PDF."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Reader, Recorder
from facetrace.store.workflow_models import CASE_STATUSES, CONDITIONS
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import CASE, workflow_for
from facetrace.usecases.service import Service
from facetrace.web import audit_rows, edits, services
from facetrace.web.deps import NO_STORE, FormDep, quote_ref, text, view, web_router
from facetrace.web.edits import Correction
from facetrace.web.facts import facts_context, read_descriptors, vocabulary
from facetrace.web.pages.records import RecordPages, install
from facetrace.web.pdf import build_case_pdf
from facetrace.web.photos import record_page_context
from facetrace.web.render import page

router = web_router()


def read_form(form: FormData | None = None) -> dict[str, Any]:
    """Return the intake form's values (a blank form when ``form`` is None)."""
    keys = ("condition", "found_at", "found_place", "holding_organisation", "description", "reference", "retain_until")
    if form is None:
        return {**{k: "" for k in keys}, "condition": "deceased", "kind": "", "descriptors": {}}
    return {
        **{k: text(form, k) for k in keys},
        "kind": text(form, "kind"),
        "descriptors": read_descriptors(form, "case"),
    }


def show_page(
    request: Request,
    actor: Actor,
    service: Service,
    reference: str,
    *,
    status: int = 200,
    error: str = "",
    problems: list[str] | None = None,
    correction: Correction | None = None,
    facts_error: dict[str, str] | None = None,
) -> Response:
    """Return the case's page (audited by the workflow as one case.view), with ``correction`` (the
    correction form sent back with its error) shown at the top. Raises NotFoundError."""
    wf = workflow_for(service, actor)
    detail = wf.cases.get_case(actor.user, reference)
    leads = wf.reviews.list_leads(actor.user, case=detail["id"], limit=1000)
    context = record_page_context(service, actor, detail["photos"], leads)
    records = [f"case:{detail['id']}", *(f"lead:{lead['id']}" for lead in leads)]
    records += [f"identification:{i['id']}" for i in detail["identifications"]]
    history = audit_rows.history_rows(service.db, records)
    return page(
        request,
        actor,
        "case.html",
        http_status=status,
        title=f"Case {detail['reference']}",
        c=detail,
        history=history,
        error=error,
        problems=problems or [],
        correction=correction,
        edit=edits.form_values(correction, "record", detail, edits.case_values),
        status_choices=edits.case_status_choices(detail["status"]),
        conditions=CONDITIONS,
        report_refs=services.report_refs(service.db, [i["report_id"] for i in detail["identifications"]]),
        facts_error=facts_error,
        **facts_context(service, actor, "case", detail["reference"]),
        **context,
    )


@router.post("/cases/{reference}/edit")
def correct_case(
    reference: str,
    request: Request,
    form: FormDep,
    actor: Recorder,
    service: ServiceDep,
) -> Response:
    """Correct a case's fields or status (only the fields changed on the form are sent; audited
    with the fields changed). A refusal shows the page again with the reason at the top and the input kept."""
    sent = edits.read_values(form, edits.CASE_FIELDS)
    wanted = edits.changes(edits.case_values(services.current_case(service.db, reference)), sent)
    return edits.submit(
        f"/cases/{quote_ref(reference)}",
        "record",
        sent,
        wanted,
        lambda: workflow_for(service, actor).cases.update_case(actor.user, reference, **wanted),
        lambda refused, status: show_page(request, actor, service, reference, status=status, correction=refused),
        "case_updated",
    )


@router.get("/cases/{reference}/report.pdf")
def case_pdf(reference: str, actor: Reader, service: ServiceDep) -> Response:
    """The case file as PDF: photos, candidates, decisions, evidence and an audit excerpt (audited)."""
    data, filename, records = build_case_pdf(workflow_for(service, actor), service, actor.user, reference)
    view(service, actor, "case.export", records, format="pdf", bytes=len(data))
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE},
    )


def fields(values: dict[str, Any]) -> dict[str, Any]:
    """Return the intake form's values as the workflow takes them."""
    kind = values.get("kind") or None
    return {
        "condition": values["condition"] or None,  # a kind that contradicts it is refused, in words
        "kind": kind,
        "descriptors": {k: v for k, v in values.get("descriptors", {}).items() if v},
        "found_at": values["found_at"] or None,
        "found_place": values["found_place"],
        "holding_organisation": values["holding_organisation"],
        "description": values["description"],
        "reference": values["reference"] or None,
        "retain_until": values["retain_until"] or None,
    }


PAGES = RecordPages(
    CASE,
    statuses=CASE_STATUSES,
    searchable=True,
    read_form=read_form,
    fields=fields,
    show=show_page,
    form_context={"conditions": CONDITIONS, "vocab": vocabulary()},
)
install(router, PAGES)
