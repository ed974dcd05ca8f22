"""Fields of reports and cases: their references, which arguments were given, which fields differ,
and what the audit trail records of a change."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from facetrace.workflow.common import as_utc, iso

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


def audit_value(value: Any) -> Any:
    """Return a field's value as the audit trail's JSON keeps it (dates as ISO text)."""
    if isinstance(value, date):  # a datetime is a date too
        return iso(value)
    return value


def apply_audited_changes(
    row: Any, changes: dict[str, Any], private: frozenset[str]
) -> tuple[list[str], dict[str, Any]]:
    """Set the fields of ``row`` that ``changes`` changes; return their names and the audit detail
    ``{"changed", "before", "after"}``.

    The values of ``private`` fields (personal data: names, descriptions, contact details) stay out
    of ``before`` and ``after``: the trail is append-only and outlives the erasure of the record, so
    it names only *that* such a field changed.
    """
    before = {key: audit_value(getattr(row, key)) for key in changes if key not in private}
    changed = apply_changes(row, changes)
    public = [key for key in changed if key not in private]
    return changed, {
        "changed": changed,
        "before": {key: before[key] for key in public},
        "after": {key: audit_value(getattr(row, key)) for key in public},
    }


def provisional_reference(chosen: str | None) -> str:
    """Return the reference to insert a new record with: the chosen one, or a unique placeholder
    until its id is known."""
    return chosen or f"pending-{uuid.uuid4().hex}"
