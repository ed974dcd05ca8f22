"""Background jobs (bulk import, re-indexing): their state, progress and errors, in the database.

The database row is what clients poll; the work itself runs in the server process
(:mod:`facetrace.usecases.jobs`). A job left ``queued`` or ``running`` by a stopped server is marked
``failed`` on the next start, and can be resumed (enrollment is idempotent).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from facetrace.store.accounts import as_utc
from facetrace.store.models import Base, utcnow

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
MAX_STORED_ERRORS = 1000  # the count is always exact; the list is capped


class Job(Base):
    """One background job."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True, default="queued")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    resumable: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON-ready job resource (parameters that are server paths are left out)."""

        def iso(value: datetime | None) -> str | None:
            return as_utc(value).isoformat() if value else None

        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": {"done": self.done, "total": self.total},
            "error_count": self.error_count,
            "errors": list(self.errors or []),
            "result": self.result or {},
            "message": self.message,
            "resumable": self.resumable,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


def create_job(session: Session, kind: str, *, created_by: str | None, params: dict[str, Any]) -> Job:
    """Add a queued job; return it (flushed, with its id)."""
    job = Job(kind=kind, state="queued", params=params, created_by=created_by, errors=[], result={})
    session.add(job)
    session.flush()
    return job


def mark_interrupted(session: Session) -> list[int]:
    """Mark every queued or running job failed (their server stopped); return their ids."""
    ids = []
    for job in session.execute(select(Job).where(Job.state.in_(ACTIVE_STATES))).scalars():
        job.state = "failed"
        job.resumable = True
        job.finished_at = utcnow()
        job.message = "interrupted: the server stopped while the job was queued or running; resume it to finish"
        ids.append(job.id)
    return ids


def list_jobs(
    session: Session,
    *,
    created_by: str | None = None,
    kind: str | None = None,
    state: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> list[Job]:
    """Return jobs, newest first, optionally only those of one user, kind or state."""
    stmt = select(Job).order_by(Job.id.desc())
    if created_by is not None:
        stmt = stmt.where(Job.created_by == created_by)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if state:
        stmt = stmt.where(Job.state == state)
    return list(session.execute(stmt.offset(offset).limit(limit)).scalars())
