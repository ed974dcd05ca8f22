"""Fields of reports and cases: their references, which arguments were given, which fields differ."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from facetrace.workflow.common import as_utc

#: The default of an optional argument that may also be set to None (None clears the field).
UNSET: Any = object()


def differs(old: Any, new: Any) -> bool:
    """Whether a field changes (SQLite hands back naive UTC datetimes: compare them as aware ones)."""
    if isinstance(old, datetime) and isinstance(new, datetime):
        return as_utc(old) != as_utc(new)
    return bool(old != new)


def apply_changes(row: Any, changes: dict[str, Any]) -> list[str]:
    """Set the fields of ``row`` that ``changes`` changes; return their names, in the given order."""
    changed = [key for key, value in changes.items() if differs(getattr(row, key), value)]
    for key in changed:
        setattr(row, key, changes[key])
    return changed


def provisional_reference(chosen: str | None) -> str:
    """Return the reference to insert a new record with: the chosen one, or a unique placeholder
    until its id is known."""
    return chosen or f"pending-{uuid.uuid4().hex}"
