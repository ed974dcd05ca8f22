"""Missing-person reports: the intake form's fields, the report page, family contacts, and the
corrections of a report and of its contacts."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrace.errors import FacetraceError, NotFoundError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Recorder
from facetrace.store.workflow_models import REPORT_STATUSES
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import REPORT, workflow_for
from facetrace.usecases.service import Service
from facetrace.web import audit_rows, edits, services
from facetrace.web.deps import LANGUAGES, FormDep, offered_languages, quote_ref, text, texts, web_router
from facetrace.web.edits import Correction
from facetrace.web.facts import facts_context, read_descriptors, vocabulary
from facetrace.web.pages.records import RecordPages, install
from facetrace.web.photos import record_page_context
from facetrace.web.render import page, redirect

router = web_router()


def read_form(form: FormData | None = None) -> dict[str, Any]:
    """Return the intake form's values (a blank form, with one empty contact, when ``form`` is None)."""
    if form is None:
        return {
            "name": "",
            "date_of_birth": "",
            "reference": "",
            "description": "",
            "reported_by": "",
            "source": "",
            "legal_basis": "",
            "consent": False,
            "consent_date": "",
            "retain_until": "",
            "contacts": [{"name": "", "relation": "", "email": "", "phone": "", "language": "en"}],
            "descriptors": {},
        }
    keys = ("name", "relation", "email", "phone", "language")
    columns = [texts(form, f"contact_{k}") for k in keys]
    contacts = []
    for n in range(max((len(c) for c in columns), default=0)):
        row = {k: (col[n] if n < len(col) else "") for k, col in zip(keys, columns, strict=True)}
        contacts.append(row)
    return {
        **{k: text(form, k) for k in ("name", "date_of_birth", "reference", "description")},
        **{k: text(form, k) for k in ("reported_by", "source", "legal_basis", "consent_date", "retain_until")},
        "consent": text(form, "consent") == "yes",
        "contacts": contacts or read_form()["contacts"],
        "descriptors": read_descriptors(form, "report"),
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
    contact_error: str = "",
    correction: Correction | None = None,
    facts_error: dict[str, str] | None = None,
) -> Response:
    """Return the report's page (audited by the workflow as one report.view), with ``correction`` (a
    correction form sent back with its error) shown at the top. Raises NotFoundError."""
    detail = workflow_for(service, actor).reports.get_report(actor.user, reference)
    context = record_page_context(service, actor, detail["photos"], leads_with_references(service, detail))
    lead_records = [f"lead:{lead['id']}" for lead in detail["leads"]]
    history = audit_rows.history_rows(service.db, [f"report:{detail['id']}", *lead_records])
    return page(
        request,
        actor,
        "report.html",
        http_status=status,
        title=f"Report {detail['reference']}",
        r=detail,
        history=history,
        error=error,
        problems=problems or [],
        contact_error=contact_error,
        languages=offered_languages(service),
        correction=correction,
        edit=edits.form_values(correction, "record", detail, edits.report_values),
        contact_forms={
            c["id"]: edits.form_values(correction, f"contact:{c['id']}", c, edits.contact_values)
            for c in detail["contacts"]
        },
        status_choices=edits.report_status_choices(detail["status"]),
        report_refs=services.report_refs(service.db, related_reports(detail)),
        case_refs=services.case_refs(service.db, [i["case_id"] for i in detail["identifications"]]),
        facts_error=facts_error,
        **facts_context(service, actor, "report", detail["reference"]),
        **context,
    )


def related_reports(detail: dict[str, Any]) -> list[int]:
    """Return the ids of the reports a report's page names: its duplicates and the report it was merged into."""
    ids = [i for d in detail["duplicates"] for i in (d["report_id"], d["other_report_id"])]
    return [*ids, *([detail["merged_into_id"]] if detail["merged_into_id"] else [])]


def leads_with_references(service: Service, detail: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the report's leads with the references of their case and report, for links."""
    cases = services.case_refs(service.db, [lead["case_id"] for lead in detail["leads"]])
    return [
        {**lead, "case": cases[lead["case_id"]]["reference"], "report": detail["reference"]}
        if lead["case_id"] in cases
        else lead
        for lead in detail["leads"]
    ]


@router.post("/reports/{reference}/contacts")
def add_contact(
    reference: str,
    request: Request,
    form: FormDep,
    actor: Recorder,
    service: ServiceDep,
) -> Response:
    """Register a family contact on a report."""
    try:
        workflow_for(service, actor).reports.add_contact(
            actor.user,
            reference,
            name=text(form, "name"),
            relation=text(form, "relation"),
            email=text(form, "email") or None,
            phone=text(form, "phone") or None,
            language=text(form, "language") or "en",
        )
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return show_page(request, actor, service, reference, status=exc.status, contact_error=exc.message)
    return redirect(f"/reports/{quote_ref(reference)}", "contact_added")


@router.post("/reports/{reference}/edit")
def correct_report(
    reference: str,
    request: Request,
    form: FormDep,
    actor: Recorder,
    service: ServiceDep,
) -> Response:
    """Correct a report's fields or status (only the fields changed on the form are sent; audited
    with the fields changed). A refusal shows the page again with the reason at the top and the input kept."""
    sent = edits.read_values(form, edits.REPORT_FIELDS)
    wanted = edits.changes(edits.report_values(services.current_report(service.db, reference)), sent)
    return edits.submit(
        f"/reports/{quote_ref(reference)}",
        "record",
        sent,
        wanted,
        lambda: workflow_for(service, actor).reports.update_report(actor.user, reference, **wanted),
        lambda refused, status: show_page(request, actor, service, reference, status=status, correction=refused),
        "report_updated",
    )


@router.post("/reports/{reference}/contacts/{contact_id}")
def correct_contact(
    reference: str,
    contact_id: int,
    request: Request,
    form: FormDep,
    actor: Recorder,
    service: ServiceDep,
) -> Response:
    """Correct a contact of the report (audited; the contact's details are not written into the
    audit trail). A refusal shows the page again with the reason at the top and the input kept."""
    contact = services.contact(service.db, contact_id)
    owner = services.report_refs(service.db, [contact["report_id"]]) if contact else {}
    if contact is None or owner.get(contact["report_id"], {}).get("reference") != reference:
        raise NotFoundError(f"report {reference} has no contact {contact_id}")
    sent = edits.read_values(form, edits.CONTACT_FIELDS)
    wanted = edits.changes(edits.contact_values(contact), sent)
    return edits.submit(
        f"/reports/{quote_ref(reference)}",
        f"contact:{contact_id}",
        sent,
        wanted,
        lambda: workflow_for(service, actor).reports.update_contact(actor.user, contact_id, **wanted),
        lambda refused, status: show_page(request, actor, service, reference, status=status, correction=refused),
        "contact_updated",
    )


def fields(values: dict[str, Any]) -> dict[str, Any]:
    """Return the intake form's values as the workflow takes them (contacts left blank are dropped)."""
    contacts = [
        {k: (v or None) if k in ("email", "phone") else v for k, v in c.items()}
        for c in values["contacts"]
        if any(c[k] for k in ("name", "relation", "email", "phone"))
    ]
    return {
        "name": values["name"],
        "reported_by": values["reported_by"],
        "source": values["source"],
        "legal_basis": values["legal_basis"],
        "consent": values["consent"],
        "consent_date": values["consent_date"] or None,
        "date_of_birth": values["date_of_birth"] or None,
        "description": values["description"],
        "reference": values["reference"] or None,
        "contacts": contacts,
        "retain_until": values["retain_until"] or None,
        "descriptors": {k: v for k, v in values.get("descriptors", {}).items() if v},
    }


PAGES = RecordPages(
    REPORT,
    statuses=REPORT_STATUSES,
    searchable=True,
    read_form=read_form,
    fields=fields,
    show=show_page,
    form_context={"languages": LANGUAGES, "vocab": vocabulary()},
)
install(router, PAGES)
