"""Background jobs run inside the server process: bulk import of an uploaded archive, re-indexing.

The ``jobs`` table holds each job's state, progress and errors (what clients poll); a thread pool
runs them. A job is defined by its kind and parameters, so a job interrupted by a restart (marked
failed and resumable on the next start) or cancelled can be resumed: enrollment is idempotent and
skips what was already enrolled.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import select

from facetrace.errors import ConflictError, FacetraceError, ManifestError, NotFoundError, disk_full_error
from facetrace.gallery import read_folder, read_manifest
from facetrace.logs import job_id_var
from facetrace.store.audit import append_event
from facetrace.store.db import Database
from facetrace.store.jobs import ACTIVE_STATES, MAX_STORED_ERRORS, Job, create_job, mark_interrupted
from facetrace.store.models import Person, utcnow

if TYPE_CHECKING:  # the service holds the runner; the runner hands the service to each job
    from facetrace.usecases.service import Service

log = logging.getLogger(__name__)
MAX_ARCHIVE_MEMBERS = 200_000


class JobCancelled(Exception):
    """Raised inside a job when a user cancelled it."""


class JobInterrupted(Exception):
    """Raised inside a job when the server is shutting down."""


class JobContext:
    """Handed to a job's work function: reports progress (throttled writes) and stops it when asked."""

    def __init__(self, runner: JobRunner, job_id: int, cancel: threading.Event) -> None:
        self.runner = runner
        self.job_id = job_id
        self.cancel = cancel
        self.errors: list[dict[str, Any]] = []
        self.done = 0
        self.total = 0
        self._written = 0.0

    def check(self) -> None:
        """Raise JobInterrupted or JobCancelled when the job must stop."""
        if self.runner.stopping:
            raise JobInterrupted
        if self.cancel.is_set():
            raise JobCancelled

    def progress(self, done: int, total: int, error_count: int = 0) -> None:
        """Record progress (written at most twice a second) and stop the job if asked to."""
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self._written >= 0.5 or done >= total:
            self._written = now
            with self.runner.db.session() as session:
                job = session.get(Job, self.job_id)
                if job is not None:
                    job.done, job.total, job.error_count = done, total, max(error_count, len(self.errors))
        self.check()


JobWork = Callable[["Service", JobContext, Job], dict[str, Any]]


class JobRunner:
    """Runs jobs in a thread pool of ``workers`` threads inside the server process."""

    def __init__(self, db: Database, *, workers: int = 1) -> None:
        self.db = db
        self.workers = max(1, workers)
        self.stopping = False
        self._service: Service | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._cancel: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def bind(self, service: Service) -> None:
        self._service = service

    def recover(self) -> list[int]:
        """Mark jobs left queued or running by a previous server failed and resumable; return their ids."""
        with self.db.session() as session:
            ids = mark_interrupted(session)
        if ids:
            log.warning("job(s) %s were interrupted by a restart: marked failed, resumable", ids)
        return ids

    def _submit(self, job_id: int) -> None:
        with self._lock:
            if self.stopping:
                raise ConflictError("the server is shutting down; the job will be marked resumable")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="facetrace-job")
            self._cancel[job_id] = threading.Event()
            self._executor.submit(self._run, job_id)

    def submit(self, kind: str, *, created_by: str | None, params: dict[str, Any]) -> Job:
        """Queue a new job of ``kind``; return its row."""
        if kind not in JOB_KINDS:
            raise FacetraceError(f"unknown job kind {kind!r}")
        with self.db.session() as session:
            job = create_job(session, kind, created_by=created_by, params=params)
        self._submit(job.id)
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
            job.state, job.message, job.finished_at = "queued", None, None
        self._submit(job_id)
        return job

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once, a running one at its next progress report; return it.

        Raises:
            NotFoundError: no such job.
            ConflictError: the job has already finished.
        """
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id}")
            if job.state not in ACTIVE_STATES:
                raise ConflictError(f"job {job_id} is already {job.state}")
            if job.state == "queued":
                job.state, job.finished_at, job.resumable = "cancelled", utcnow(), True
                job.message = "cancelled before it started"
        event = self._cancel.get(job_id)
        if event is not None:
            event.set()
        return job

    def _run(self, job_id: int) -> None:
        token = job_id_var.set(job_id)  # every log line of the job carries its id
        try:
            self._run_job(job_id)
        finally:
            job_id_var.reset(token)

    def _run_job(self, job_id: int) -> None:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.state != "queued" or self.stopping:
                return  # cancelled while queued, or the server is stopping (recovered on restart)
            job.state, job.started_at, job.message = "running", utcnow(), None
        ctx = JobContext(self, job_id, self._cancel.get(job_id) or threading.Event())
        state, message, resumable, result = "done", None, False, {}
        log.info("job %d (%s) started", job_id, job.kind)
        try:
            assert self._service is not None, "JobRunner.bind() was not called"
            result = JOB_KINDS[job.kind](self._service, ctx, job)
        except JobCancelled:
            state, message, resumable = "cancelled", "cancelled by a user", True
        except JobInterrupted:
            state, message, resumable = "failed", "interrupted: the server stopped; resume it to finish", True
        except FacetraceError as exc:
            state, message, resumable = "failed", exc.message, True
        except Exception as exc:  # a bug: the job fails, the server carries on
            log.exception("job %d (%s) failed", job_id, job.kind)
            state, message, resumable = "failed", f"internal error: {type(exc).__name__}", True
        with self.db.session() as session:
            row = session.get(Job, job_id)
            if row is not None:
                row.state, row.message, row.resumable, row.result = state, message, resumable, result
                row.done, row.total = ctx.done, ctx.total
                row.error_count = len(ctx.errors)
                row.errors = ctx.errors[:MAX_STORED_ERRORS]
                row.finished_at = utcnow()
        self._cancel.pop(job_id, None)
        log.info(
            "job %d (%s) %s: %d of %d done, %d error(s)",
            job_id,
            job.kind,
            state,
            ctx.done,
            ctx.total,
            len(ctx.errors),
            extra={"job_kind": job.kind, "job_state": state},
        )

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop: running jobs stop at their next progress report and are marked resumable."""
        with self._lock:
            self.stopping = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        # Jobs still queued never ran: mark them as a restart would.
        with self.db.session() as session:
            for job in session.execute(select(Job).where(Job.state == "queued")).scalars():
                job.state, job.resumable, job.finished_at = "failed", True, utcnow()
                job.message = "interrupted: the server stopped before the job started; resume it"


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
