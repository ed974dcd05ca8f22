"""The audit trail, for auditors: page and filter events, verify the hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from facetrace.api.schemas import AuditPage, ChainCheck
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Auditor
from facetrace.store.audit import list_events, verify_chain
from facetrace.usecases.actors import record_event

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
def events(
    *,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    actor: str | None = Query(None, max_length=200, description="User name (cli:NAME for the command line)."),
    action: str | None = Query(None, max_length=100, description="An action, or a prefix ending in '.'."),
    record: str | None = Query(None, max_length=200, description="A record such as person:12."),
    outcome: str | None = Query(None, max_length=20),
    since: datetime | None = Query(None, description="ISO time, inclusive."),
    until: datetime | None = Query(None, description="ISO time, exclusive."),
    oldest_first: bool = Query(False),
    who: Auditor,
    service: ServiceDep,
) -> Any:
    """Page through audit events (newest first unless ``oldest_first``), filtered."""
    filters = {"actor": actor, "action": action, "record": record, "outcome": outcome}
    with service.db.sessions() as session:
        rows, total = list_events(
            session,
            offset=offset,
            limit=limit,
            since=since,
            until=until,
            newest_first=not oldest_first,
            actor=actor,
            action=action,
            record=record,
            outcome=outcome,
        )
        items = [e.as_dict() for e in rows]
    record_event(service, who, "audit.view", detail={k: v for k, v in filters.items() if v} | {"count": len(items)})
    return {"items": items, "total": total, "offset": offset, "limit": limit}


@router.get("/verify", response_model=ChainCheck)
def verify(who: Auditor, service: ServiceDep) -> Any:
    """Check the hash chain: ``intact`` is false and ``problems`` says which events when an event
    was edited or deleted."""
    with service.db.sessions() as session:
        problems = verify_chain(session)
    record_event(
        service, who, "audit.verify", outcome="ok" if not problems else "error", detail={"problems": len(problems)}
    )
    return {"intact": not problems, "problems": problems}
