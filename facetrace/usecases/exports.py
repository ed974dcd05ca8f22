"""CSV exports of the audit trail and of the report and case lists, for spreadsheets.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return, which some spreadsheets skip before reading a formula) as a formula, so that a name typed
into a report as ``=HYPERLINK(...)`` would become a live link or worse once exported. Every such cell
is written with a leading single quote, which spreadsheets show as text. The file is UTF-8 with a
byte-order mark (so that spreadsheets read Cyrillic names right), comma-separated, written by
Python's :mod:`csv` module. Each export is audited: what was exported, with which filters, how many rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from facetrace.store.audit import iter_events
from facetrace.usecases.actors import Actor, audited
from facetrace.usecases.audit_labels import action_label
from facetrace.usecases.records import RecordKind, workflow_for
from facetrace.usecases.service import Service

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_EXPORT_ROWS = 100_000  # one export stays a file a spreadsheet opens
BATCH = 1000
BOM = "\ufeff"
AUDIT_COLUMNS = ("id", "at", "actor", "source", "action", "label", "records", "outcome", "detail", "hash")
REPORT_COLUMNS = (
    "reference",
    "name",
    "date_of_birth",
    "status",
    "description",
    "reported_by",
    "source",
    "legal_basis",
    "consent",
    "consent_date",
    "retain_until",
    "created_at",
    "updated_at",
)
CASE_COLUMNS = (
    "reference",
    "condition",
    "found_at",
    "found_place",
    "holding_organisation",
    "status",
    "description",
    "retain_until",
    "created_at",
    "updated_at",
)


def safe_cell(value: Any) -> str:
    """Return ``value`` as the text of a CSV cell that no spreadsheet runs as a formula: None is
    empty, and text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
    leading single quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    cell = value if isinstance(value, str) else str(value)
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a CSV file (with a UTF-8 byte-order mark) of ``header`` and ``rows``, every cell
    passed through :func:`safe_cell`."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def csv_filename(what: str, now: datetime) -> str:
    """Return the download name of an export, e.g. ``facetrace-audit-20261207-1230.csv``."""
    return f"facetrace-{what}-{now:%Y%m%d-%H%M}.csv"


def audit_csv(
    service: Service,
    actor: Actor,
    *,
    actor_name: str | None = None,
    action: str | None = None,
    record: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """Return the audit events matching the filters (those of the audit page), newest first, as
    CSV (at most :data:`MAX_EXPORT_ROWS`). Audited as ``audit.export`` with the filters and the count.
    The caller checks the auditor role."""
    typed = {"actor": actor_name, "action": action, "record": record, "outcome": outcome}
    shown = {k: v for k, v in typed.items() if v} | {
        k: v.isoformat() for k, v in (("since", since), ("until", until)) if v
    }
    with audited(service, actor, "audit.export", format="csv") as note:
        note.detail.update(shown)  # a filter is named "action", like audited()'s own argument
        with service.db.sessions() as session:
            rows = [
                (
                    e.id,
                    e.as_dict()["at"],
                    e.actor or "system",
                    e.source,
                    e.action,
                    action_label(e.action),
                    " ".join(e.records or []),
                    e.outcome,
                    json.dumps(e.detail or {}, ensure_ascii=False, sort_keys=True),
                    e.hash,
                )
                for e in iter_events(
                    session,
                    limit=MAX_EXPORT_ROWS,
                    actor=actor_name,
                    action=action,
                    record=record,
                    outcome=outcome,
                    since=since,
                    until=until,
                )
            ]
        note.detail["rows"] = len(rows)
    return csv_text(AUDIT_COLUMNS, rows)


def _record_row(kind: RecordKind, record: dict[str, Any]) -> list[Any]:
    if kind.name == "report":
        provenance = record["provenance"]
        return [record.get(c, provenance.get(c)) for c in REPORT_COLUMNS]
    return [record.get(c) for c in CASE_COLUMNS]


def records_csv(service: Service, actor: Actor, kind: RecordKind, *, status: str | None, query: str | None) -> str:
    """Return the reports or cases (``kind``) of the list with these filters, newest first, as CSV
    (at most :data:`MAX_EXPORT_ROWS`). Audited as ``report.list_export`` or ``case.list_export``.

    Raises:
        PermissionDenied: the actor may not read the records. InvalidInput: an unknown status.
    """
    shown = {"status": status, "q": query, "format": "csv"}
    with audited(service, actor, f"{kind.name}.list_export", **shown) as note:
        wf = workflow_for(service, actor)
        records: list[dict[str, Any]] = []
        while len(records) < MAX_EXPORT_ROWS:
            page = kind.list_records(wf, actor, status=status, query=query, offset=len(records), limit=BATCH)
            records.extend(page)
            if len(page) < BATCH:
                break
        note.detail["rows"] = len(records)
    columns = REPORT_COLUMNS if kind.name == "report" else CASE_COLUMNS
    return csv_text(columns, (_record_row(kind, r) for r in records[:MAX_EXPORT_ROWS]))
