"""The web UI: server-rendered pages (Jinja2) for intake, examiners, reviewers, auditors and
administrators, over the same use-cases, workflow, roles and audit trail as the API.

:data:`router` holds every page (one module per area in :mod:`facetrace.web.pages`, mirroring
:mod:`facetrace.api.routers`), the authenticated (and audited) routes of photos and face crops,
and the package's own static files; the composition root (:mod:`facetrace.server`) includes it.

Every page checks the caller's roles on the server (:mod:`facetrace.http.roles`, whose refusals
are audited), every form post carries the session's CSRF token, and every photo or face crop is
served by an authenticated route that appends an audit event: biometric media never sit in a
public folder. State changes go through the use-cases (:mod:`facetrace.usecases`) and the
workflow, which record their audit events themselves.
"""

from fastapi import APIRouter

from facetrace.web.pages import (
    audit,
    auth,
    cases,
    dashboard,
    duplicates,
    exports,
    identifications,
    intake,
    leads,
    media,
    notifications,
    org_settings,
    reconciliation,
    reports,
    search,
    search_history,
    setup,
    users,
    video,
)

PAGE_MODULES = (
    intake,
    auth,
    setup,
    dashboard,
    reports,
    cases,
    reconciliation,
    duplicates,
    leads,
    identifications,
    notifications,
    search,
    video,
    search_history,
    audit,
    exports,
    users,
    org_settings,
    media,
)
router = APIRouter()
for _module in PAGE_MODULES:
    router.include_router(_module.router)

__all__ = ["router"]
