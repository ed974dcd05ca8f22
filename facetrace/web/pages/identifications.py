"""Identifications: the list, one identification with its notifications, withdrawal and drafting."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Reader, Reviewer, Withdrawer
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import workflow_for
from facetrace.usecases.service import Service
from facetrace.web.deps import FormDep, text, web_router
from facetrace.web.facts import vocabulary
from facetrace.web.render import page, redirect
from facetrace.workflow.common import WITHDRAW_ROLES

router = web_router()


@router.get("/identifications")
def identifications(request: Request, actor: Reader, service: ServiceDep) -> Response:
    """Identifications, newest first."""
    rows = workflow_for(service, actor).identifications.list_identifications(actor.user)
    return page(request, actor, "identifications.html", title="Identifications", rows=rows, vocab=vocabulary())


def _identification_page(
    request: Request,
    actor: Actor,
    service: Service,
    ident_id: int,
    *,
    status: int = 200,
    draft_error: str = "",
    withdraw_error: str = "",
) -> Response:
    wf = workflow_for(service, actor)
    ident = wf.identifications.get_identification(actor.user, ident_id)
    # The page is one view, audited once (identification.view): the report is read for its contacts only.
    report = wf.reports.get_report(actor.user, ident["report"]["id"], audited=False) if ident["report"] else None
    contacts = report["contacts"] if report else []
    live = {(n["contact_id"], n["kind"]) for n in ident["notifications"] if n["status"] != "cancelled"}
    notified = {n["contact_id"] for n in ident["notifications"] if n["kind"] == "identification" and n["sent_at"]}
    if ident["status"] == "confirmed":
        draftable = [c for c in contacts if c["email"] and (c["id"], "identification") not in live]
    else:
        draftable = [c for c in contacts if c["id"] in notified and (c["id"], "correction") not in live]
    return page(
        request,
        actor,
        "identification.html",
        http_status=status,
        title=f"Identification {ident_id}",
        ident=ident,
        draftable=draftable,
        can_withdraw=any(actor.user.has_role(r) for r in WITHDRAW_ROLES),
        draft_error=draft_error,
        withdraw_error=withdraw_error,
        vocab=vocabulary(),
        is_admin=actor.user.has_role("admin"),
    )


@router.get("/identifications/{ident_id}")
def show_identification(ident_id: int, request: Request, actor: Reader, service: ServiceDep) -> Response:
    """An identification: who confirmed, the evidence, the notifications and their delivery."""
    return _identification_page(request, actor, service, ident_id)


@router.post("/identifications/{ident_id}/withdraw")
def withdraw(
    ident_id: int,
    request: Request,
    form: FormDep,
    actor: Withdrawer,
    service: ServiceDep,
) -> Response:
    """Withdraw an identification with a reason (corrections are drafted for approval)."""
    try:
        workflow_for(service, actor).identifications.withdraw_identification(
            actor.user, ident_id, reason=text(form, "reason")
        )
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _identification_page(request, actor, service, ident_id, status=exc.status, withdraw_error=exc.message)
    return redirect(f"/identifications/{ident_id}", "withdrawn")


@router.post("/identifications/{ident_id}/draft")
def draft(
    ident_id: int,
    request: Request,
    form: FormDep,
    actor: Reviewer,
    service: ServiceDep,
) -> Response:
    """Draft a notification to one registered contact of the identified report."""
    try:
        contact_id = int(text(form, "contact_id"))
    except ValueError:
        return _identification_page(request, actor, service, ident_id, status=422, draft_error="Choose a contact.")
    try:
        note = workflow_for(service, actor).notifications.draft_notification(actor.user, ident_id, contact_id)
    except FacetraceError as exc:
        if exc.status == 403 and exc.code != "policy":
            raise
        return _identification_page(request, actor, service, ident_id, status=exc.status, draft_error=exc.message)
    return redirect(f"/notifications/{note['id']}", "drafted")
