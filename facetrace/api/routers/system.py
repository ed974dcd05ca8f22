"""Server health and readiness: public, revealing nothing about the data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from facetrace import __version__
from facetrace.api.errors import error_body
from facetrace.api.readiness import readiness
from facetrace.api.schemas import Health, NotReady, Readiness
from facetrace.http.deps import ServiceDep

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health)
def health() -> dict[str, Any]:
    """Return ``{"status": "ok", "version": ...}`` while the server runs (no authentication)."""
    return {"status": "ok", "version": __version__}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": NotReady, "description": "Not ready: `error.checks` says which checks failed."}},
)
def ready(service: ServiceDep) -> Any:
    """Whether the server can serve now (no authentication; meant to be polled): the database answers
    at the newest schema revision, the index is loaded and in line with the database, the image
    analysis workers are usable, jobs are accepted and the data home has free disk space.
    200 ``{"status": "ready", "checks": {...}}``, else 503 with the failing checks."""
    checks = readiness(service)
    listed = {name: check.as_dict() for name, check in checks.items()}
    failing = [name for name, check in checks.items() if not check.ok]
    if not failing:
        return {"status": "ready", "checks": listed}
    # An error body like every other (``{"error": {"code", "message"}}``), with the checks inside it.
    body = error_body("not_ready", "not ready: " + "; ".join(f"{name} {checks[name].detail}" for name in failing))
    body["error"]["checks"] = listed
    return JSONResponse(body, status_code=503)
