"""Background jobs (bulk import, re-indexing, video search): a durable queue in the database.

The ``jobs`` table is both what clients poll (state, progress, errors) and the queue the job runners
of every process take work from (:mod:`facetrace.usecases.jobs`): a runner *claims* the oldest queued
job (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that two processes never claim the same
one), records its name on it and renews a heartbeat while it runs. A job whose runner stopped
without finishing it (a killed process, a lost machine) is noticed by its stale heartbeat and queued
again, at most ``max_attempts`` times in all; then it is marked failed and resumable (the job kinds
are idempotent: an import skips what was already enrolled).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, false, or_, select, update
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
    # The queue: who runs it, when it last said so, how many times it was started, a cancel request.
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

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
            "attempts": self.attempts or 0,
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


def claim_next(session: Session, worker: str) -> Job | None:
    """Claim the oldest queued job for ``worker`` (state ``running``, heartbeat now, one more attempt);
    return it, or None when the queue is empty or another process claimed it first."""
    # SKIP LOCKED: a row another process is claiming is passed over, not waited for. SQLite has no
    # row locks (one process writes); the state condition of the update is what makes a claim unique.
    stmt = select(Job.id).where(Job.state == "queued").order_by(Job.id).limit(1).with_for_update(skip_locked=True)
    job_id = session.execute(stmt).scalar()
    if job_id is None:
        return None
    now = utcnow()
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "queued")
        .values(
            state="running",
            worker=worker,
            heartbeat_at=now,
            started_at=now,
            attempts=Job.attempts + 1,
            cancel_requested=False,
            message=None,
        )
        .execution_options(synchronize_session=False)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id, populate_existing=True)
    return job


def heartbeat(session: Session, worker: str, job_ids: list[int]) -> tuple[set[int], set[int]]:
    """Renew ``worker``'s claim on the running jobs ``job_ids``.

    Returns ``(cancel_requested, lost)``: the jobs a user asked to cancel, and those no longer
    ``worker``'s (queued again after a heartbeat came too late, or finished elsewhere).
    """
    if not job_ids:
        return set(), set()
    session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.worker == worker, Job.state == "running")
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(select(Job.id, Job.worker, Job.state, Job.cancel_requested).where(Job.id.in_(job_ids)))
    cancel, mine = set(), set()
    for job_id, owner, state, cancel_requested in rows:
        if owner == worker and state == "running":
            mine.add(job_id)
            if cancel_requested:
                cancel.add(job_id)
    return cancel, set(job_ids) - mine


def requeue_stale(session: Session, *, lease_seconds: float, max_attempts: int) -> dict[int, str]:
    """Take back the running jobs whose heartbeat is older than ``lease_seconds`` (their process
    stopped; 0: every running job, for a single-process server that just started): queue each again
    while it has attempts left, else mark it failed and resumable; one a user asked to cancel is
    cancelled. Return ``{job id: new state}``."""
    stmt = select(Job).where(Job.state == "running")
    if lease_seconds > 0:
        cutoff = utcnow() - timedelta(seconds=lease_seconds)
        stmt = stmt.where(or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))
    changed: dict[int, str] = {}
    for job in session.execute(stmt.with_for_update(skip_locked=True)).scalars():
        was = job.worker or "a stopped server"
        job.worker, job.heartbeat_at = None, None
        if job.cancel_requested:
            job.state, job.resumable, job.finished_at = "cancelled", True, utcnow()
            job.message = "cancelled by a user (its worker stopped)"
        elif (job.attempts or 0) < max_attempts:
            job.state = "queued"
            job.message = f"queued again: its worker ({was}) stopped during attempt {job.attempts} of {max_attempts}"
        else:
            job.state, job.resumable, job.finished_at = "failed", True, utcnow()
            job.message = (
                f"interrupted: its worker stopped during each of {max_attempts} attempts; resume it to try again"
            )
        changed[job.id] = job.state
    return changed


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
