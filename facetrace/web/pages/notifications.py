"""Notifications to family contacts: the queues, one notification, approval, sending, cancelling, resolving."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Approver, Reader, Reviewer, Sender
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import workflow_for
from facetrace.usecases.service import Service
from facetrace.web import services
from facetrace.web.deps import PAGE_SIZE, FormDep, page_offset, text, texts, web_router
from facetrace.web.render import page, redirect
from facetrace.workflow.common import SEND_ROLES

router = web_router()
PROBLEM_STATUSES = ("failed", "refused", "unknown", "sending")
# The notice after an approval, by the notification's status then: what really happened to the message.
APPROVAL_NOTICES = {
    "approved": "approved_queued",
    "sent": "approved_sent",
    "failed": "approved_failed",
    "refused": "approved_refused",
    "sending": "approved_unknown",
    "unknown": "approved_unknown",
}


@router.get("/notifications")
def notifications(request: Request, actor: Reader, service: ServiceDep) -> Response:
    """Notifications by queue: awaiting approval, approved, sent, needing attention, all."""
    status = request.query_params.get("status", "")
    offset = page_offset(request)
    wf = workflow_for(service, actor)
    if status == "problems":
        rows = [
            r for s in PROBLEM_STATUSES for r in wf.notifications.list_notifications(actor.user, status=s, limit=1000)
        ]
        rows = sorted(rows, key=lambda r: r["id"], reverse=True)[offset : offset + PAGE_SIZE + 1]
    else:
        rows = wf.notifications.list_notifications(
            actor.user, status=status or None, offset=offset, limit=PAGE_SIZE + 1
        )
    return page(
        request,
        actor,
        "notifications.html",
        title="Notifications",
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
    )


def _notification_page(
    request: Request,
    actor: Actor,
    service: Service,
    nid: int,
    *,
    status: int = 200,
    action_error: str = "",
    edit: dict[str, str] | None = None,
) -> Response:
    wf = workflow_for(service, actor)
    note = wf.notifications.get_notification(actor.user, nid)
    # The page is one view, audited once (notification.view): the identification and case are read for context.
    ident = wf.identifications.get_identification(actor.user, note["identification_id"], audited=False)
    case = wf.cases.get_case(actor.user, ident["case_id"], audited=False) if ident["case"] else None
    case_photos = case["photos"] if case else []
    contact = services.contact(service.db, note["contact_id"])
    blockers = wf.notifications.approval_blockers(actor.user, nid)
    changes = wf.notifications.changes_from_rendered(actor.user, nid)
    user = actor.user
    return page(
        request,
        actor,
        "notification.html",
        http_status=status,
        title=f"Notification {nid}",
        n=note,
        contact=contact,
        case_photos=case_photos,
        own_draft=note["drafted_by_id"] == user.id,
        can_approve=any(user.has_role(r) for r in blockers["approver_roles"]),
        blockers=blockers,
        changes=changes,
        edit=edit or {"subject": note["subject"], "body": note["body"]},
        can_send=any(user.has_role(r) for r in SEND_ROLES),
        action_error=action_error,
    )


@router.get("/notifications/{nid}")
def show_notification(nid: int, request: Request, actor: Reader, service: ServiceDep) -> Response:
    """A notification: the message as it will be sent, approval, delivery status and attempts."""
    return _notification_page(request, actor, service, nid)


def _notification_action(
    request: Request, actor: Actor, service: Service, nid: int, action: Any, notice: str
) -> Response:
    try:
        action()
    except FacetraceError as exc:
        if exc.status == 404 or (exc.status == 403 and exc.code != "policy"):
            raise
        try:
            return _notification_page(request, actor, service, nid, status=exc.status, action_error=exc.message)
        except FacetraceError:  # e.g. an admin (who may send) cannot read the page: show the error itself
            raise exc from None
    return redirect(f"/notifications/{nid}", notice)


@router.post("/notifications/{nid}/approve")
def approve(
    nid: int,
    request: Request,
    form: FormDep,
    actor: Reviewer,
    service: ServiceDep,
) -> Response:
    """Approve a draft (someone other than the drafter, with a role the review policy allows), attaching
    only the photos ticked, and hand it to the mail server at once when the approver may send; the
    notice then says what really happened (sent, queued, or failed and why)."""
    try:
        include = sorted({int(v) for v in texts(form, "include_images") if v})
    except ValueError:
        include = []
        return _notification_page(request, actor, service, nid, status=422, action_error="bad photo selection")
    wf = workflow_for(service, actor)

    outcome = {"status": "approved"}

    def act() -> None:
        outcome["status"] = wf.notifications.approve_notification(actor.user, nid, include_images=include)["status"]
        if any(actor.user.has_role(r) for r in SEND_ROLES):
            run = wf.outbox.send_notifications(actor.user, notification_ids=[nid])
            for result in run["results"]:
                outcome["status"] = result["status"]

    response = _notification_action(request, actor, service, nid, act, "approved")
    if response.status_code != 303:
        return response
    return redirect(f"/notifications/{nid}", APPROVAL_NOTICES.get(outcome["status"], "approved_unknown"))


@router.post("/notifications/{nid}/edit")
def edit(
    nid: int,
    request: Request,
    form: FormDep,
    actor: Reviewer,
    service: ServiceDep,
) -> Response:
    """Edit a draft's subject and text before approval (its drafter only); the approver sees the changes."""
    typed = {"subject": text(form, "subject"), "body": str(form.get("body") or "")}
    try:
        workflow_for(service, actor).notifications.edit_draft(
            actor.user, nid, subject=typed["subject"], body=typed["body"]
        )
    except FacetraceError as exc:
        if exc.status == 404 or (exc.status == 403 and exc.code != "policy"):
            raise
        return _notification_page(request, actor, service, nid, status=exc.status, action_error=exc.message, edit=typed)
    return redirect(f"/notifications/{nid}", "edited")


@router.post("/notifications/{nid}/send")
def send(
    nid: int,
    request: Request,
    _form: FormDep,
    actor: Sender,
    service: ServiceDep,
) -> Response:
    """Run the outbox for this notification (approved, or failed and retryable): at most once."""
    wf = workflow_for(service, actor)
    return _notification_action(
        request, actor, service, nid, lambda: wf.outbox.send_notifications(actor.user, notification_ids=[nid]), "sent"
    )


@router.post("/notifications/{nid}/cancel")
def cancel(
    nid: int,
    request: Request,
    form: FormDep,
    actor: Approver,
    service: ServiceDep,
) -> Response:
    """Cancel a notification not yet sent, with a reason."""
    wf = workflow_for(service, actor)
    reason = text(form, "reason")
    return _notification_action(
        request,
        actor,
        service,
        nid,
        lambda: wf.notifications.cancel_notification(actor.user, nid, reason=reason),
        "cancelled",
    )


@router.post("/notifications/{nid}/resolve")
def resolve(
    nid: int,
    request: Request,
    form: FormDep,
    actor: Sender,
    service: ServiceDep,
) -> Response:
    """Settle a delivery of unknown outcome (or failed/refused): delivered, resend or cancel."""
    wf = workflow_for(service, actor)
    resolution, rationale = text(form, "resolution"), text(form, "rationale")
    return _notification_action(
        request,
        actor,
        service,
        nid,
        lambda: wf.outbox.resolve_notification(actor.user, nid, resolution=resolution, rationale=rationale),
        "resolved",
    )
