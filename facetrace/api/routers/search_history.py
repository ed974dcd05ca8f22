"""Past searches, for examiners, reviewers and auditors: every ad-hoc photo search and every
finished video search with who, when, case reference, purpose, faces or tracks found and matches
(read from the audit trail: :mod:`facetrace.usecases.search_history`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from facetrace.api.schemas import PastSearchPage
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import SearchHistoryReader
from facetrace.usecases.search_history import past_searches

router = APIRouter(prefix="/searches", tags=["search"])


@router.get("", response_model=PastSearchPage)
def list_past_searches(
    *,
    user: str | None = Query(None, max_length=200, description="Only this user's searches."),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: SearchHistoryReader,
    service: ServiceDep,
) -> Any:
    """Past photo and video searches, newest first (audited as ``search.history.view``)."""
    items, total = past_searches(service, actor, user=user, offset=offset, limit=limit)
    return {"items": items, "total": total, "offset": offset, "limit": limit}
