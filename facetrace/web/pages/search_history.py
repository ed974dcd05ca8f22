"""Past searches (examiners, reviewers, auditors): every ad-hoc photo search and finished video
search, with who, when, case reference, purpose, faces or tracks found and matches."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from facetrace.http.deps import ServiceDep
from facetrace.http.roles import SearchHistoryReader
from facetrace.usecases.search_history import past_searches
from facetrace.web.deps import PAGE_SIZE, page_offset, web_router
from facetrace.web.render import page

router = web_router()


@router.get("/search/history")
def search_history(request: Request, actor: SearchHistoryReader, service: ServiceDep) -> Response:
    """Past photo and video searches, newest first, optionally one user's (audited as search.history.view)."""
    user = request.query_params.get("user", "").strip()[:200]
    offset = page_offset(request)
    rows, total = past_searches(service, actor, user=user or None, offset=offset, limit=PAGE_SIZE)
    query_base = "/search/history?" + (urlencode({"user": user}) + "&" if user else "")
    return page(
        request,
        actor,
        "search_history.html",
        title="Past searches",
        rows=rows,
        total=total,
        user_filter=user,
        offset=offset,
        limit=PAGE_SIZE,
        has_next=offset + PAGE_SIZE < total,
        query_base=query_base,
        can_open_video=any(actor.user.has_role(r) for r in ("examiner", "reviewer")),
    )
