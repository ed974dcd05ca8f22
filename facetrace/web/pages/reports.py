"""Missing-person reports: the intake form's fields, the report page, and family contacts."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Recorder
from facetrace.store.workflow_models import REPORT_STATUSES
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import REPORT, workflow_for
from facetrace.usecases.service import Service
from facetrace.web import services
from facetrace.web.deps import LANGUAGES, FormDep, offered_languages, quote_ref, text, texts, view, web_router
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
) -> Response:
    """Return the report's page (audited as report.view). Raises NotFoundError."""
    detail = workflow_for(service, actor).reports.get_report(actor.user, reference)
    context = record_page_context(service, actor, detail["photos"], detail["leads"])
    lead_records = [f"lead:{lead['id']}" for lead in detail["leads"]]
    history = services.record_history(service.db, [f"report:{detail['id']}", *lead_records])
    view(service, actor, "report.view", [f"report:{detail['id']}"], reference=detail["reference"])
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
        **context,
    )


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
    }


PAGES = RecordPages(
    REPORT,
    statuses=REPORT_STATUSES,
    searchable=True,
    read_form=read_form,
    fields=fields,
    show=show_page,
    form_context={"languages": LANGUAGES},
)
install(router, PAGES)
