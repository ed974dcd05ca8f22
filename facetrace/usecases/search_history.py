"""The history of past searches: every ad-hoc photo search and every finished video search, with
who made it, when, for which case reference and purpose, how many faces or tracks it found, and
its matches. It is read from the audit trail, where each search is recorded with exactly these
facts (``search`` and ``search.video`` events), so it needs no table of its own and cannot
disagree with the trail. Readable by examiners, reviewers and auditors; each reading is audited.
"""

from __future__ import annotations

from typing import Any

from facetrace.errors import PermissionDenied
from facetrace.store.accounts import AuditEvent
from facetrace.store.audit import list_events
from facetrace.usecases.actors import Actor, record_event
from facetrace.usecases.service import Service

SEARCH_ACTIONS = ("search", "search.video")
HISTORY_ROLES = ("examiner", "reviewer", "auditor")


def _job_id(records: list[str]) -> int | None:
    for record in records:
        kind, _, rid = record.partition(":")
        if kind == "job" and rid.isdigit():
            return int(rid)
    return None


def past_search(event: AuditEvent) -> dict[str, Any]:
    """Return one past search (a ``search`` or ``search.video`` audit event) as the history shows it."""
    detail = event.detail or {}
    video = event.action == "search.video"
    found = detail.get("tracks" if video else "faces")
    matches = detail.get("matches")
    row = event.as_dict()
    return {
        "event_id": event.id,
        "at": row["at"],
        "user": event.actor,
        "kind": "video" if video else "photo",
        "case_reference": detail.get("case_reference"),
        "purpose": detail.get("purpose"),
        "found": found if isinstance(found, int) else None,
        "matches": [str(m) for m in matches] if isinstance(matches, list) else [],
        "outcome": event.outcome,
        "error": detail.get("error"),
        "job_id": _job_id(list(event.records or [])) if video else None,
    }


def past_searches(
    service: Service, actor: Actor, *, user: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[dict[str, Any]], int]:
    """Return one page of past searches, newest first (only ``user``'s when given), and how many
    there are in all. Audited as ``search.history.view``.

    Raises:
        PermissionDenied: the actor is neither examiner, reviewer nor auditor.
    """
    if not any(actor.user.has_role(role) for role in HISTORY_ROLES):
        raise PermissionDenied("the search history needs the role examiner, reviewer or auditor")
    with service.db.sessions() as session:
        events, total = list_events(session, actions=SEARCH_ACTIONS, actor=user, offset=offset, limit=limit)
        rows = [past_search(e) for e in events]
    detail: dict[str, Any] = {"count": len(rows), "offset": offset} | ({"user": user} if user else {})
    record_event(service, actor, "search.history.view", detail=detail)
    return rows, total
