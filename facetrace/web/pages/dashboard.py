"""The dashboard: queues with counts, recent activity, and what the user's roles let them start."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import func, select

from facetrace.http.deps import CurrentActor, ServiceDep
from facetrace.store.accounts import AuditEvent, User
from facetrace.usecases.checklist import readiness_checklist
from facetrace.usecases.records import workflow_for
from facetrace.web import audit_rows, services
from facetrace.web.deps import web_router
from facetrace.web.render import page

router = web_router()


@router.get("/")
def dashboard(request: Request, actor: CurrentActor, service: ServiceDep):
    """Queues with counts, recent activity, and what the user's roles let them start."""
    user = actor.user
    context: dict[str, Any] = {
        "counts": None,
        "waiting": [],
        "activity": [],
        "audit_total": 0,
        "user_total": 0,
        "checklist": [],
    }
    if services.can_read(user):
        context["counts"] = services.queue_counts(service.db)
        rows = services.recent_activity(service.db)
        context["activity"] = audit_rows.add_links(service.db, rows, admin=user.has_role("admin"))
        with service.db.sessions() as session:
            approvers = workflow_for(service, actor).notifications.approver_roles(session)
        context["waiting"] = services.waiting_for(service.db, user, approvers)
    with service.db.sessions() as session:
        if user.has_role("auditor"):
            context["audit_total"] = session.execute(select(func.count(AuditEvent.id))).scalar() or 0
        if user.has_role("admin"):
            context["user_total"] = session.execute(select(func.count(User.id))).scalar() or 0
    if user.has_role("admin"):
        context["checklist"] = [item.as_dict() for item in readiness_checklist(service)]
    return page(request, actor, "dashboard.html", title="Dashboard", **context)
