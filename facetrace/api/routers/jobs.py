"""Background jobs: bulk import of an uploaded archive, re-indexing; their progress and errors."""

from __future__ import annotations

import secrets
import shutil
from typing import Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from facetrace.api.schemas import JobPage, JobView
from facetrace.errors import NotFoundError
from facetrace.http.deps import ServiceDep, client_address
from facetrace.http.roles import Admin, Intake, IntakeOrAdmin
from facetrace.store.jobs import JOB_STATES, Job, list_jobs
from facetrace.usecases.actors import Actor, record_event
from facetrace.usecases.errors import UnsupportedMediaType
from facetrace.usecases.jobs import extract_archive, import_items
from facetrace.usecases.service import Service

router = APIRouter(prefix="/jobs", tags=["jobs"])
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _own_job(service: Service, actor: Actor, job_id: int) -> Job:
    """Return the job if the caller may see it (their own; an admin sees all). Raises NotFoundError."""
    with service.db.sessions() as session:
        job = session.get(Job, job_id)
    if job is None or (job.created_by != actor.name and not actor.user.has_role("admin")):
        raise NotFoundError(f"no job {job_id}")
    return job


@router.post("/import", status_code=202, response_model=JobView)
def import_archive(
    request: Request,
    *,
    archive: UploadFile = File(
        description="A zip archive: manifest.csv with the photos it names, or IDENTITY/IMAGE folders."
    ),
    source: str | None = Form(None, max_length=300, description="Provenance, for an archive of folders."),
    legal_basis: str | None = Form(None, max_length=300, description="Legal basis, for an archive of folders."),
    actor: Intake,
    service: ServiceDep,
) -> Any:
    """Start a bulk import job. The archive is checked and unpacked now (422 when it is unusable);
    enrollment runs in the background: poll ``GET /jobs/ID`` for progress and per-file errors."""
    head = archive.file.read(4)
    archive.file.seek(0)
    if head not in ZIP_MAGIC:
        raise UnsupportedMediaType("the archive must be a zip file")
    jobs_dir = service.settings.home / "jobs"
    folder = jobs_dir / f"upload-{secrets.token_hex(8)}"
    folder.mkdir(parents=True)
    params = {"source": (source or "").strip(), "legal_basis": (legal_basis or "").strip()}
    try:
        files = extract_archive(archive.file, folder, max_bytes=service.settings.max_import_bytes)
        items, problems = import_items(folder, params)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job = service.jobs.submit(
        "import",
        created_by=actor.name,
        params={**params, "folder": str(folder), "client": client_address(request), "files": files},
    )
    record_event(
        service,
        actor,
        "job.import",
        records=[f"job:{job.id}"],
        detail={"files": files, "persons": len(items), "manifest_problems": len(problems)},
    )
    return job.as_dict()


@router.post("/reindex", status_code=202, response_model=JobView)
def reindex(request: Request, actor: Admin, service: ServiceDep) -> Any:
    """Start a job that rebuilds the vector index from the database."""
    job = service.jobs.submit("reindex", created_by=actor.name, params={"client": client_address(request)})
    record_event(service, actor, "job.reindex", records=[f"job:{job.id}"])
    return job.as_dict()


@router.get("", response_model=JobPage)
def jobs(
    *,
    kind: str | None = Query(None, max_length=40),
    state: str | None = Query(None, pattern="^(" + "|".join(JOB_STATES) + ")$"),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: IntakeOrAdmin,
    service: ServiceDep,
) -> Any:
    """List jobs, newest first: the caller's own (an admin sees every job)."""
    owner = None if actor.user.has_role("admin") else actor.name
    with service.db.sessions() as session:
        rows = list_jobs(session, created_by=owner, kind=kind, state=state, offset=offset, limit=limit)
        return {"items": [j.as_dict() for j in rows], "offset": offset, "limit": limit}


@router.get("/{job_id}", response_model=JobView)
def job(job_id: int, actor: IntakeOrAdmin, service: ServiceDep) -> Any:
    """Show a job: state, progress (done of total), error count and the per-file errors."""
    return _own_job(service, actor, job_id).as_dict()


@router.post("/{job_id}/cancel", response_model=JobView)
def cancel(job_id: int, actor: IntakeOrAdmin, service: ServiceDep) -> Any:
    """Cancel a queued or running job (work already committed stays; the job can be resumed)."""
    _own_job(service, actor, job_id)
    job = service.jobs.cancel(job_id)
    record_event(service, actor, "job.cancel", records=[f"job:{job_id}"])
    return _own_job(service, actor, job.id).as_dict()


@router.post("/{job_id}/resume", status_code=202, response_model=JobView)
def resume(job_id: int, actor: IntakeOrAdmin, service: ServiceDep) -> Any:
    """Run a failed (e.g. interrupted by a restart) or cancelled job again; what was already done is skipped."""
    _own_job(service, actor, job_id)
    job = service.jobs.resume(job_id)
    record_event(service, actor, "job.resume", records=[f"job:{job_id}"])
    return job.as_dict()
