"""File downloads that the API and the web pages answer alike: a CSV export, never cached."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.responses import Response

from facetrace.usecases.exports import csv_filename

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def csv_response(text: str, what: str) -> Response:
    """Return ``text`` as a CSV attachment named after ``what`` and the time
    (``facetrace-audit-20261207-1230.csv``), never cached, never sniffed as another type."""
    name = csv_filename(what, datetime.now(UTC))
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(text.encode("utf-8"), media_type=CSV_MEDIA_TYPE, headers=headers)
