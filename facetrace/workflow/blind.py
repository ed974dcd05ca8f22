"""Blind confirmation: an examiner does not see the other examiners' decisions on a lead until
they have recorded their own (or the lead is closed), so the second confirmation is independent."""

from __future__ import annotations

from typing import Any

from facetrace.store.accounts import User


def reviews_visible(lead: dict[str, Any], user: User) -> bool:
    """Return whether ``user`` may see the other examiners' decisions on a lead: once they have
    recorded their own, or once the lead is closed (identified or withdrawn)."""
    if lead["status"] in ("identified", "withdrawn"):
        return True
    return any(r["reviewer_id"] == user.id for r in lead.get("reviews", []))


def blind_lead(lead: dict[str, Any], user: User) -> dict[str, Any]:
    """Return the lead as ``user`` may see it: other users' reviews hidden while blind (only
    their number is kept), and a status that gives no decision away."""
    if reviews_visible(lead, user):
        return {**lead, "blind": False, "hidden_reviews": 0}
    others = [r for r in lead.get("reviews", []) if r["reviewer_id"] != user.id]
    status = lead["status"] if lead["status"] == "open" else "under_review"
    return {**lead, "reviews": [], "blind": True, "hidden_reviews": len(others), "status": status}
