"""Background jobs: bulk import of an uploaded archive, re-indexing, video search.

The ``jobs`` table is a durable queue (:mod:`facetrace.store.jobs`): starting a job writes a queued
row, and a :class:`JobRunner` in any process that runs jobs (every ``facetrace serve`` by default, or
the ``facetrace worker`` processes of a deployment on PostgreSQL) claims it, runs it in a thread and
renews its heartbeat. Progress, the result and a cancel request go through the row, so that any
process can show or cancel any job. A job whose process died is queued again when its heartbeat is
``job_lease_seconds`` old (at most ``job_max_attempts`` starts), then marked failed and resumable; a
server stopping cleanly puts its running jobs back in the queue. The job kinds are idempotent:
enrollment skips what was already enrolled, so a job run again finishes what it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import select, update

from facetrace.errors import ConflictError, FacetraceError, ManifestError, NotFoundError, disk_full_error
from facetrace.gallery import read_folder, read_manifest
from facetrace.logs import job_id_var
from facetrace.store.audit import append_event
from facetrace.store.db import Database
from facetrace.store.jobs import (
    ACTIVE_STATES,
    MAX_STORED_ERRORS,
    Job,
    claim_next,
    create_job,
    heartbeat,
    requeue_stale,
)
from facetrace.store.models import Person, utcnow

if TYPE_CHECKING:  # the service holds the runner; the runner hands the service to each job
    from facetrace.usecases.service import Service

log = logging.getLogger(__name__)
MAX_ARCHIVE_MEMBERS = 200_000


class JobCancelled(Exception):
    """Raised inside a job when a user cancelled it."""


class JobInterrupted(Exception):
    """Raised inside a job when its process is stopping, or the job is no longer its own."""


class JobContext:
    """Handed to a job's work function: reports progress (throttled writes) and stops it when asked."""

    def __init__(self, runner: JobRunner, job_id: int, cancel: threading.Event) -> None:
        self.runner = runner
        self.job_id = job_id
        self.cancel = cancel
        self.lost = threading.Event()  # another process took the job over (this one's heartbeat was late)
        self.errors: list[dict[str, Any]] = []
        self.done = 0
        self.total = 0
        self._written = 0.0

    def check(self) -> None:
        """Raise JobInterrupted or JobCancelled when the job must stop."""
        if self.runner.stopping or self.lost.is_set():
            raise JobInterrupted
        if self.cancel.is_set():
            raise JobCancelled

    def progress(self, done: int, total: int, error_count: int = 0) -> None:
        """Record progress (written at most twice a second) and stop the job if asked to, from this
        process or another one."""
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self._written >= 0.5 or done >= total:
            self._written = now
            with self.runner.db.session() as session:
                job = session.get(Job, self.job_id)
                if job is not None:
                    job.done, job.total, job.error_count = done, total, max(error_count, len(self.errors))
                    if job.cancel_requested:
                        self.cancel.set()
        self.check()


JobWork = Callable[["Service", JobContext, Job], dict[str, Any]]


class JobRunner:
    """Takes jobs from the queue in the database and runs up to ``workers`` of them at a time in threads.

    ``run_jobs=False`` (an API process of a deployment whose ``facetrace worker`` processes run the
    jobs): jobs are queued and shown here, run elsewhere; this process still takes back the jobs of
    workers that died. On a single-process database (SQLite) every job left running when the
    server starts is taken back at once.
    """

    def __init__(
        self,
        db: Database,
        *,
        workers: int = 1,
        run_jobs: bool = True,
        lease_seconds: float = 30.0,
        max_attempts: int = 3,
        poll_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.workers = max(1, workers)
        self.run_jobs = run_jobs
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        # Unique per process and start: the name a claimed job carries (shown to operators).
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stopping = False
        self._service: Service | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._contexts: dict[int, JobContext] = {}  # the jobs this process runs
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._loop_thread: threading.Thread | None = None

    def bind(self, service: Service) -> None:
        self._service = service

    def recover(self) -> dict[int, str]:
        """Take back the jobs of stopped processes (on SQLite: every running job, since this is the only
        process); return ``{job id: new state}``."""
        return self._take_back(0.0 if self.db.single_process else self.lease_seconds)

    def _take_back(self, lease_seconds: float) -> dict[int, str]:
        with self.db.session() as session:
            changed = requeue_stale(session, lease_seconds=lease_seconds, max_attempts=self.max_attempts)
        if changed:
            log.warning("job(s) taken back from a process that stopped: %s", changed)
            self._wake.set()
        return changed

    def start(self) -> None:
        """Take back what stopped processes left, then start taking jobs from the queue."""
        self.recover()
        self._ensure_loop()

    def _ensure_loop(self) -> None:
        with self._lock:
            if self.stopping or (self._loop_thread is not None and self._loop_thread.is_alive()):
                return
            self._loop_thread = threading.Thread(target=self._loop, name="facetrace-job-queue", daemon=True)
            self._loop_thread.start()

    def submit(self, kind: str, *, created_by: str | None, params: dict[str, Any]) -> Job:
        """Queue a new job of ``kind``; return its row.

        Raises:
            FacetraceError: an unknown kind. ConflictError: this process is shutting down.
        """
        if kind not in JOB_KINDS:
            raise FacetraceError(f"unknown job kind {kind!r}")
        if self.stopping:
            raise ConflictError("the server is shutting down; start the job again in a moment")
        with self.db.session() as session:
            job = create_job(session, kind, created_by=created_by, params=params)
        self._ensure_loop()
        self._wake.set()
        return job

    def resume(self, job_id: int) -> Job:
        """Queue a failed or cancelled resumable job again; return it.

        Raises:
            NotFoundError: no such job.
            ConflictError: the job is not resumable, or its input is gone.
        """
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id}")
            if job.state not in ("failed", "cancelled") or not job.resumable:
                raise ConflictError(f"job {job_id} is {job.state} and cannot be resumed")
            folder = job.params.get("folder")
            if folder and not Path(folder).is_dir():
                raise ConflictError(f"job {job_id}'s uploaded files are gone; upload the archive again")
            job.state, job.message, job.finished_at, job.attempts = "queued", None, None, 0
        self._ensure_loop()
        self._wake.set()
        return job

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once, a running one (in any process) at its next progress report;
        return it.

        Raises:
            NotFoundError: no such job.
            ConflictError: the job has already finished.
        """
        with self.db.session() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise NotFoundError(f"no job {job_id}")
            if job.state not in ACTIVE_STATES:
                raise ConflictError(f"job {job_id} is already {job.state}")
            if job.state == "queued":
                job.state, job.finished_at, job.resumable = "cancelled", utcnow(), True
                job.message = "cancelled before it started"
            else:
                job.cancel_requested = True  # read by the process running it
        context = self._contexts.get(job_id)
        if context is not None:
            context.cancel.set()
        return job

    # -- the queue loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        next_reap = next_beat = 0.0
        failing = False
        while not self.stopping:
            now = time.monotonic()
            try:
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + self.lease_seconds / 4
                if now >= next_reap:  # every process watches for dead ones, so someone always does
                    self._take_back(self.lease_seconds)
                    next_reap = now + self.lease_seconds / 2
                if self.run_jobs:
                    self._claim_while_free()
                failing = False
            except Exception as exc:  # the database is away for a moment: try again at the next turn
                if not failing:  # once per outage, not once a second
                    log.warning("the job queue cannot be read (%s); retrying every %g s", exc, self.poll_seconds)
                failing = True
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _heartbeat(self) -> None:
        with self._lock:
            running = list(self._contexts)
        if not running:
            return
        with self.db.session() as session:
            cancel, lost = heartbeat(session, self.worker_id, running)
        for job_id in cancel | lost:
            context = self._contexts.get(job_id)
            if context is not None:
                (context.cancel if job_id in cancel else context.lost).set()

    def _claim_while_free(self) -> None:
        while not self.stopping:
            with self._lock:
                if len(self._contexts) >= self.workers:
                    return
                with self.db.session() as session:
                    job = claim_next(session, self.worker_id)
                    if job is None:
                        return
                    job_id, kind = job.id, job.kind
                self._contexts[job_id] = JobContext(self, job_id, threading.Event())
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="facetrace-job")
                self._executor.submit(self._run, job_id, kind)

    def _run(self, job_id: int, kind: str) -> None:
        token = job_id_var.set(job_id)  # every log line of the job carries its id
        try:
            self._run_job(job_id, kind)
        finally:
            job_id_var.reset(token)
            with self._lock:
                self._contexts.pop(job_id, None)
            self._wake.set()  # a slot is free

    def _run_job(self, job_id: int, kind: str) -> None:
        ctx = self._contexts[job_id]
        state, message, resumable, result = "done", None, False, {}
        log.info("job %d (%s) started by %s", job_id, kind, self.worker_id)
        try:
            assert self._service is not None, "JobRunner.bind() was not called"
            with self.db.session() as session:
                job = session.get(Job, job_id)
                assert job is not None
                session.expunge(job)
            result = JOB_KINDS[kind](self._service, ctx, job)
        except JobCancelled:
            state, message, resumable = "cancelled", "cancelled by a user", True
        except JobInterrupted:
            state, message = "queued", "queued again: the process running it stopped"
        except FacetraceError as exc:
            state, message, resumable = "failed", exc.message, True
        except Exception as exc:  # a bug: the job fails, the process carries on
            log.exception("job %d (%s) failed", job_id, kind)
            state, message, resumable = "failed", f"internal error: {type(exc).__name__}", True
        values: dict[str, Any] = {
            "state": state,
            "message": message,
            "resumable": resumable,
            "result": result,
            "done": ctx.done,
            "total": ctx.total,
            "error_count": len(ctx.errors),
            "errors": ctx.errors[:MAX_STORED_ERRORS],
        }
        if state == "queued":  # back to the queue: a clean stop does not use up one of its attempts
            values.update(worker=None, heartbeat_at=None, attempts=Job.attempts - 1)
        else:
            values["finished_at"] = utcnow()
        with self.db.session() as session:
            # Only while the job is still this process's: one taken back after a late heartbeat
            # belongs to whoever claimed it since.
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == self.worker_id, Job.state == "running")
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        log.info(
            "job %d (%s) %s: %d of %d done, %d error(s)",
            job_id,
            kind,
            state,
            ctx.done,
            ctx.total,
            len(ctx.errors),
            extra={"job_kind": kind, "job_state": state},
        )

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop: running jobs stop at their next progress report and go back to the queue (another
        process, or this server's next start, runs them); queued jobs stay queued."""
        with self._lock:
            self.stopping = True
            executor, self._executor = self._executor, None
            loop = self._loop_thread
        self._wake.set()
        if loop is not None:
            loop.join(timeout)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


# -- job kinds ---------------------------------------------------------------------------------
def extract_archive(archive: Path | BinaryIO, dest: Path, *, max_bytes: int) -> int:
    """Extract a zip archive (a path or a seekable file) safely into ``dest``; return the number of files.

    Raises:
        ManifestError: not a zip archive, a damaged, encrypted or unsupported member, a member path
            that leaves ``dest`` (absolute, ``..``) or cannot be a file there, a link, too many
            members, or more than ``max_bytes`` uncompressed.
        DiskFullError: the disk is full.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except Exception as exc:  # zipfile raises many types on damaged archives: see _member_chunks
        raise ManifestError(f"the archive is not a readable zip file ({_zip_reason(exc)})") from None
    with zf:
        # Not ZipInfo.is_dir(): it fails (IndexError) on a member with an empty name.
        members = [m for m in zf.infolist() if not m.filename.endswith("/")]
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise ManifestError(f"the archive has more than {MAX_ARCHIVE_MEMBERS} files")
        if sum(m.file_size for m in members) > max_bytes:
            raise ManifestError(f"the archive unpacks to more than {max_bytes:,} bytes")
        written = 0
        for member in members:
            rel = PurePosixPath(member.filename.replace("\\", "/"))
            if rel.is_absolute() or ".." in rel.parts or not rel.parts or ":" in rel.parts[0]:
                raise ManifestError(f"archive member {member.filename!r} leaves the archive's folder; refused")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise ManifestError(f"archive member {member.filename!r} is a link; refused")
            target = dest.joinpath(*rel.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    # Count what is actually written: the sizes in the zip's directory may lie.
                    for chunk in _member_chunks(zf, member):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ManifestError(f"the archive unpacks to more than {max_bytes:,} bytes")
                        out.write(chunk)
            except OSError as exc:
                # A name too long, or a file where another member needs a folder ("a" and "a/b").
                raise disk_full_error(exc, "unpacking the archive") or ManifestError(
                    f"archive member {member.filename!r} cannot be unpacked ({exc.strerror or exc})"
                ) from None
        return len(members)


def _zip_reason(exc: BaseException) -> str:
    """Return a one-line, bounded description of what zipfile raised."""
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def _member_chunks(zf: zipfile.ZipFile, member: zipfile.ZipInfo) -> Iterator[bytes]:
    """Yield the uncompressed bytes of ``member`` in chunks of at most 1 MiB.

    Raises:
        ManifestError: the member cannot be read: damaged (bad CRC, header or compressed data),
            encrypted, or compressed with a method or zip version Python cannot read.
    """
    try:
        with zf.open(member) as src:
            while chunk := src.read(1 << 20):
                yield chunk
    except Exception as exc:
        # Damaged archives make zipfile raise BadZipFile, zlib.error, NotImplementedError,
        # RuntimeError (encrypted), UnicodeDecodeError, IndexError, OSError... (found by
        # fuzz/fuzz_manifest.py): all mean the same to the person who uploaded it.
        raise ManifestError(f"archive member {member.filename!r} cannot be read ({_zip_reason(exc)})") from None


def import_items(folder: Path, params: dict[str, Any]) -> tuple[list[Any], list[dict[str, str]]]:
    """Read what an extracted archive asks to enroll: ``manifest.csv`` (or the only CSV file at its
    top) when present, else IDENTITY/IMAGE folders with the provenance given in ``params``.

    Raises:
        ManifestError: no manifest and no provenance, or nothing to enroll.
    """
    csvs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    manifest = folder / "manifest.csv" if (folder / "manifest.csv").is_file() else (csvs[0] if len(csvs) == 1 else None)
    if manifest is not None:
        items, problems = read_manifest(manifest)
        return items, [{"file": p.where, "error": p.message} for p in problems]
    if len(csvs) > 1:
        raise ManifestError("the archive holds several CSV files at its top and none is named manifest.csv")
    if not params.get("source") or not params.get("legal_basis"):
        raise ManifestError(
            "the archive has no manifest.csv: a folder import needs source and legal_basis (provenance)"
        )
    # A folder of IDENTITY/IMAGE, possibly wrapped in one top folder.
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    root = subdirs[0] if len(subdirs) == 1 and not any(p.is_file() for p in subdirs[0].iterdir()) else folder
    return read_folder(root, source=params["source"], legal_basis=params["legal_basis"]), []


def _run_import(service: Service, ctx: JobContext, job: Job) -> dict[str, Any]:
    folder = Path(job.params["folder"])
    items, problems = import_items(folder, job.params)
    ctx.errors.extend(problems)
    outcome = service.gallery.enroll(
        items,
        progress=lambda done, total, errors: ctx.progress(done, total, errors + len(problems)),
        workers=service.settings.workers,
        nice=service.settings.job_nice,
    )
    for error in outcome.errors:
        error = dict(error)
        with contextlib.suppress(KeyError, ValueError):  # name files relative to the archive, not the server
            error["file"] = str(Path(error["file"]).relative_to(folder))
        ctx.errors.append(error)
    ids = [i.external_id for i in items]
    with service.db.session() as session:
        person_ids = (
            list(session.execute(select(Person.id).where(Person.external_id.in_(ids))).scalars()) if ids else []
        )
        result = {k: v for k, v in outcome.as_dict().items() if k != "errors"}
        result["error_count"] = len(ctx.errors)
        append_event(
            session,
            actor=job.created_by,
            action="person.import",
            records=[f"job:{job.id}"] + [f"person:{i}" for i in sorted(person_ids)],
            outcome="ok" if outcome.images_enrolled or outcome.images_skipped else "error",
            source=job.params.get("client"),
            detail=result,
        )
    shutil.rmtree(folder, ignore_errors=True)  # the images are in the media store now
    return result


def _run_reindex(service: Service, ctx: JobContext, job: Job) -> dict[str, Any]:
    ctx.progress(0, 1)
    faces = service.gallery.rebuild_index()
    ctx.progress(1, 1)
    with service.db.session() as session:
        append_event(
            session,
            actor=job.created_by,
            action="index.rebuild",
            records=[f"job:{job.id}"],
            source=job.params.get("client"),
            detail={"faces": faces},
        )
    return {"faces": faces}


JOB_KINDS: dict[str, JobWork] = {"import": _run_import, "reindex": _run_reindex}
