"""Server health: public, reveals nothing about the data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from facetrace import __version__

router = APIRouter(tags=["system"])


@router.get("/health")
def health() -> dict[str, Any]:
    """Return ``{"status": "ok", "version": ...}`` while the server runs (no authentication)."""
    return {"status": "ok", "version": __version__}
