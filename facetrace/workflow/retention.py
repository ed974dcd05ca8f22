"""Retention: erase every person, report and case whose ``retain_until`` has passed.

Dates are set explicitly on each record (CLI, API, web form, manifest column); there is no default
policy. :func:`apply_retention` lists what is due and erases each record through
:class:`facetrace.workflow.erasure.Eraser`, one transaction and one audit event per record (reason
"retention expired"). It is idempotent and safe to rerun after a crash: a record already erased is
simply no longer listed, an erasure interrupted after its commit is finished first, and a record whose
date was pushed back meanwhile is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from facetrace.errors import ConflictError, NotFoundError
from facetrace.gallery import Gallery
from facetrace.store.models import Person
from facetrace.store.workflow_models import Case, Report
from facetrace.workflow.common import InvalidInput, as_utc, iso, parse_datetime
from facetrace.workflow.erasure import Eraser, ErasureBlocked

RETENTION_REASON = "retention expired"
ProgressFn = Callable[[int, int, int], None]  # done, total, errors


@dataclass(frozen=True)
class DueRecord:
    """One record whose retention date has passed."""

    kind: str  # person, report or case
    id: int
    reference: str  # the report/case reference, or the person's external id
    retain_until: datetime

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "retain_until": iso(self.retain_until)}


def parse_retain_until(value: str | datetime | None, field: str = "retain_until") -> datetime | None:
    """Return a retention date as an aware UTC datetime (a bare date means its start, UTC), or None.

    Raises:
        InvalidInput: not an ISO 8601 date or date-time.
    """
    parsed = parse_datetime(value, field)
    return parsed.astimezone(UTC) if parsed is not None else None


def due_records(gallery: Gallery, now: datetime) -> list[DueRecord]:
    """Return the records whose ``retain_until`` is at or before ``now``: reports first (they take
    their gallery persons with them), then cases, then the remaining persons."""
    cutoff = as_utc(now)
    out: list[DueRecord] = []
    with gallery.db.sessions() as session:
        for kind, model, label in (
            ("report", Report, Report.reference),
            ("case", Case, Case.reference),
            ("person", Person, Person.external_id),
        ):
            rows = session.execute(
                select(model.id, label, model.retain_until)
                .where(model.retain_until.is_not(None), model.retain_until <= cutoff)
                .order_by(model.retain_until, model.id)
            ).all()
            out.extend(DueRecord(kind, int(i), str(ref), as_utc(when)) for i, ref, when in rows)  # type: ignore[arg-type]
    return out


def apply_retention(
    gallery: Gallery,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    force: bool = False,
    actor: str | None = None,
    source: str | None = None,
    progress: ProgressFn | None = None,
    vacuum_full: bool = True,
) -> dict[str, Any]:
    """Erase (or with ``dry_run`` only list) every record whose retention date is at or before ``now``
    (default: the current time); return what was due, erased, blocked and already gone.

    ``force`` erases records with work in progress too (a lead under review, a pending notification);
    a notification being sent still blocks. Per-record refusals do not stop the run. On PostgreSQL
    the run ends with a VACUUM FULL of the erased-from tables when any erasure happened since the last
    one (``vacuum_full`` False skips it: old bytes may then stay in free page space for a while).
    """
    when = as_utc(now) if now is not None else datetime.now(UTC)
    assert when is not None
    eraser = Eraser(gallery)
    finished = 0 if dry_run else eraser.finish_pending()
    due = due_records(gallery, when)
    result: dict[str, Any] = {
        "now": iso(when),
        "dry_run": dry_run,
        "due": [d.as_dict() for d in due],
        "erased": [],
        "blocked": [],
        "already_erased": [],
        "interrupted_erasures_finished": finished,
        "vacuum_full": False,
    }
    if dry_run:
        return result
    errors = 0
    if progress:
        progress(0, len(due), 0)
    for done, record in enumerate(due, start=1):
        try:
            erased = eraser.erase(
                record.kind,
                record.id,
                actor=actor,
                source=source,
                reason=RETENTION_REASON,
                force=force,
                retain_until=record.retain_until,
                expect_retain_until=True,
            )
            result["erased"].append({**record.as_dict(), "removed": erased})
        except ErasureBlocked as exc:
            errors += 1
            result["blocked"].append({**record.as_dict(), "reason": exc.message})
        except NotFoundError:  # erased with its report, or by another run meanwhile
            result["already_erased"].append(record.as_dict())
        except ConflictError as exc:  # its date was changed since it was listed
            errors += 1
            result["blocked"].append({**record.as_dict(), "reason": exc.message})
        if progress:
            progress(done, len(due), errors)
    if vacuum_full:
        result["vacuum_full"] = eraser.vacuum_full_if_due()
    return result


__all__ = ["RETENTION_REASON", "DueRecord", "InvalidInput", "apply_retention", "due_records", "parse_retain_until"]
