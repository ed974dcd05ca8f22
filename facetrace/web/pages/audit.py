"""The audit trail for auditors: filters, pages, the hash-chain check, and the CSV download."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from facetrace.http.deps import ServiceDep
from facetrace.http.downloads import csv_response
from facetrace.http.roles import Auditor
from facetrace.store.audit import list_events, verify_chain
from facetrace.usecases import exports
from facetrace.usecases.actors import record_event
from facetrace.web.audit_rows import add_links
from facetrace.web.deps import PAGE_SIZE, page_offset, web_router
from facetrace.web.render import page
from facetrace.web.services import can_read
from facetrace.workflow.common import parse_date

router = web_router()
FILTER_KEYS = ("actor", "action", "record", "outcome", "since", "until")


@dataclass(frozen=True)
class AuditFilters:
    """The audit page's filters as typed (``text``) and as the trail's query takes them."""

    text: dict[str, str]
    since: datetime | None
    until: datetime | None

    def get(self, key: str) -> str | None:
        """Return one text filter, None when blank."""
        return self.text[key] or None

    @property
    def query(self) -> str:
        """The filters as a query string (without ``?``), the blank ones left out."""
        return urlencode({k: v for k, v in self.text.items() if v})


def read_filters(request: Request) -> AuditFilters:
    """Return the filters of the audit page's query string (dates as whole UTC days, ``until`` inclusive).

    Raises:
        InvalidInput: a date that is not YYYY-MM-DD.
    """
    params = request.query_params
    text = {k: params.get(k, "").strip()[:200] for k in FILTER_KEYS}
    since = parse_date(text["since"] or None, "from")
    until = parse_date(text["until"] or None, "until")
    return AuditFilters(
        text=text,
        since=datetime.combine(since, time.min, UTC) if since else None,
        until=datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None,
    )


@router.get("/audit")
def audit(request: Request, actor: Auditor, service: ServiceDep) -> Response:
    """The audit trail with filters (user, action or prefix, record, outcome, dates), each action
    with its plain-words label and each record linked to its page, and the hash-chain check."""
    filters = read_filters(request)
    offset = page_offset(request)
    verified, problems = None, []
    with service.db.sessions() as session:
        if request.query_params.get("verify"):
            problems = verify_chain(session)
            verified = not problems
        rows, total = list_events(
            session,
            offset=offset,
            limit=PAGE_SIZE,
            actor=filters.get("actor"),
            action=filters.get("action"),
            record=filters.get("record"),
            outcome=filters.get("outcome"),
            since=filters.since,
            until=filters.until,
        )
        events = [e.as_dict() for e in rows]
    # An auditor who also reads case files follows a record to its page; others to its trail.
    add_links(service.db, events, record_pages=can_read(actor.user), admin=actor.user.has_role("admin"))
    if verified is not None:
        record_event(
            service, actor, "audit.verify", outcome="ok" if verified else "error", detail={"problems": len(problems)}
        )
    shown = {k: v for k, v in filters.text.items() if v}
    record_event(service, actor, "audit.view", detail=shown | {"count": len(events), "via": "web"})
    query = filters.query
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
        filters=filters.text,
        verified=verified,
        problems=problems,
        query_base="/audit?" + query + ("&" if query else ""),
        csv_href="/audit.csv" + ("?" + query if query else ""),
    )


@router.get("/audit.csv")
def audit_csv(request: Request, actor: Auditor, service: ServiceDep) -> Response:
    """The events matching the audit page's filters as a CSV download (formula-like cells escaped;
    audited as audit.export)."""
    filters = read_filters(request)
    text = exports.audit_csv(
        service,
        actor,
        actor_name=filters.get("actor"),
        action=filters.get("action"),
        record=filters.get("record"),
        outcome=filters.get("outcome"),
        since=filters.since,
        until=filters.until,
    )
    return csv_response(text, "audit")
