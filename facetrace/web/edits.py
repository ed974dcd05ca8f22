"""The correction forms of a report, a case and a contact: the values a form starts from (the record
as it is), the values it was sent back with, and the changes to hand to the workflow.

Only the fields sent whose text differs from the record's are passed on, so a field left alone is
never rewritten (a date shown without its time keeps its time), a field not sent is not cleared
(consent is a yes/no choice, not a box whose absence would mean "no"), and a status that only the
workflow sets (identified, merged, under review) is not refused when left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrace.errors import FacetraceError
from facetrace.web.deps import text
from facetrace.web.render import redirect
from facetrace.workflow.cases import MANUAL_CASE_STATUSES
from facetrace.workflow.reports import MANUAL_REPORT_STATUSES

REPORT_FIELDS = (
    "name",
    "date_of_birth",
    "description",
    "reported_by",
    "source",
    "legal_basis",
    "consent",
    "consent_date",
    "retain_until",
    "status",
)
CASE_FIELDS = ("condition", "found_at", "found_place", "holding_organisation", "description", "retain_until", "status")
CONTACT_FIELDS = ("name", "relation", "email", "phone", "language")
# Fields that an empty box clears (None to the workflow) rather than sets to "".
CLEARABLE = {"date_of_birth", "consent_date", "retain_until", "found_at", "email", "phone"}


@dataclass(frozen=True)
class Correction:
    """A correction form sent back with its error: which form (``record`` or ``contact:ID``), the
    input as it was typed, and the reason it was refused."""

    target: str
    values: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _day(value: str | None) -> str:
    """Return the ``YYYY-MM-DD`` of an ISO date or date-time ("" for None)."""
    return (value or "")[:10]


def report_values(report: dict[str, Any]) -> dict[str, str]:
    """Return a report (its JSON view) as the correction form shows it."""
    prov = report["provenance"]
    return {
        "name": report["name"],
        "date_of_birth": report["date_of_birth"] or "",
        "description": report["description"] or "",
        "reported_by": prov["reported_by"],
        "source": prov["source"],
        "legal_basis": prov["legal_basis"],
        "consent": "yes" if prov["consent"] else "",
        "consent_date": _day(prov["consent_date"]),
        "retain_until": _day(report["retain_until"]),
        "status": report["status"],
    }


def case_values(case: dict[str, Any]) -> dict[str, str]:
    """Return a case (its JSON view) as the correction form shows it."""
    return {
        "condition": case["condition"],
        "found_at": _day(case["found_at"]),
        "found_place": case["found_place"] or "",
        "holding_organisation": case["holding_organisation"] or "",
        "description": case["description"] or "",
        "retain_until": _day(case["retain_until"]),
        "status": case["status"],
    }


def contact_values(contact: dict[str, Any]) -> dict[str, str]:
    """Return a contact (its JSON view) as the correction form shows it."""
    return {key: contact[key] or "" for key in CONTACT_FIELDS}


def read_values(form: FormData, keys: tuple[str, ...]) -> dict[str, str]:
    """Return the correction form's fields as typed (stripped); a field the form did not send is
    left out, so it is left as it is rather than cleared."""
    # Browsers send a text area's line breaks as CRLF; the record keeps LF.
    return {key: text(form, key).replace("\r\n", "\n") for key in keys if key in form}


def changes(current: dict[str, str], sent: dict[str, str]) -> dict[str, Any]:
    """Return the fields whose sent text differs from the record's, as the workflow takes them:
    an emptied date or address is None (cleared), consent a bool."""
    out: dict[str, Any] = {}
    for key, value in sent.items():
        if value == current.get(key, ""):
            continue
        if key == "consent":
            out[key] = value == "yes"
        elif key in CLEARABLE and not value:
            out[key] = None
        else:
            out[key] = value
    return out


def status_choices(current: str, manual: tuple[str, ...]) -> list[str]:
    """Return the statuses a form offers: those set by hand, after the current one when only the
    workflow sets it (kept as it is unless another is chosen)."""
    return list(manual) if current in manual else [current, *manual]


def report_status_choices(current: str) -> list[str]:
    """Return the statuses the report correction form offers."""
    return status_choices(current, MANUAL_REPORT_STATUSES)


def case_status_choices(current: str) -> list[str]:
    """Return the statuses the case correction form offers."""
    return status_choices(current, MANUAL_CASE_STATUSES)


def form_values(
    correction: Correction | None,
    target: str,
    record: dict[str, Any],
    values_of: Callable[[dict[str, Any]], dict[str, str]],
) -> dict[str, str]:
    """Return what the ``target`` form shows: the input sent back with an error, else the record."""
    if correction is not None and correction.target == target:
        return {**values_of(record), **correction.values}
    return values_of(record)


def submit(
    path: str,
    form_key: str,
    sent: dict[str, Any],
    wanted: dict[str, Any],
    update: Callable[[], object],
    show_again: Callable[[Correction, int], Response],
    done: str,
) -> Response:
    """Apply a correction form: nothing changed, a redirect to ``path`` saying so; else ``update()`` and a
    redirect with the notice ``done``; a refusal (other than 403/404, which propagate) shows the page again
    through ``show_again`` with the reason at the top and the form ``form_key`` as it was sent."""
    if not wanted:
        return redirect(path, "nothing_changed")
    try:
        update()
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return show_again(Correction(form_key, sent, exc.message), exc.status)
    return redirect(path, done)
