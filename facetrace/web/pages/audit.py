"""The audit trail for auditors: filters, pages, and the hash-chain check."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Auditor
from facetrace.store.audit import list_events, verify_chain
from facetrace.usecases.actors import record_event
from facetrace.web.deps import PAGE_SIZE, page_offset, web_router
from facetrace.web.render import page
from facetrace.workflow.common import InvalidInput, parse_date

router = web_router()


@router.get("/audit")
def audit(request: Request, actor: Auditor, service: ServiceDep) -> Response:
    """The audit trail with filters (user, action or prefix, record, outcome, dates), and the
    hash-chain check."""
    params = request.query_params
    filters = {k: params.get(k, "").strip()[:200] for k in ("actor", "action", "record", "outcome", "since", "until")}
    offset = page_offset(request)
    try:
        since = parse_date(filters["since"] or None, "from")
        until = parse_date(filters["until"] or None, "until")
    except InvalidInput:
        raise
    since_dt = datetime.combine(since, time.min, UTC) if since else None
    until_dt = datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None
    verified, problems = None, []
    with service.db.sessions() as session:
        if params.get("verify"):
            problems = verify_chain(session)
            verified = not problems
        rows, total = list_events(
            session,
            offset=offset,
            limit=PAGE_SIZE,
            actor=filters["actor"] or None,
            action=filters["action"] or None,
            record=filters["record"] or None,
            outcome=filters["outcome"] or None,
            since=since_dt,
            until=until_dt,
        )
        events = [e.as_dict() for e in rows]
    if verified is not None:
        record_event(
            service, actor, "audit.verify", outcome="ok" if verified else "error", detail={"problems": len(problems)}
        )
    record_event(
        service,
        actor,
        "audit.view",
        detail={k: v for k, v in filters.items() if v} | {"count": len(events), "via": "web"},
    )
    query_base = "/audit?" + urlencode({k: v for k, v in filters.items() if v}) + ("&" if any(filters.values()) else "")
    return page(
        request,
        actor,
        "audit.html",
        title="Audit trail",
        events=events,
        total=total,
        offset=offset,
        limit=PAGE_SIZE,
        has_next=offset + PAGE_SIZE < total,
        filters=filters,
        verified=verified,
        problems=problems,
        query_base=query_base,
    )
