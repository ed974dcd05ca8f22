"""Video search as a background job: upload a video, poll its progress, read the tracks found.

``POST /search/video`` checks the upload at once (container sniffed from its bytes, header
within the video limits: 413/415/422 otherwise) and queues a ``video_search`` job; the job
finds, tracks and searches every person who appears (:meth:`Gallery.search_video`), in
worker processes so that the server's threads stay free. ``GET /search/video/ID`` shows the
job with its progress (frames done of total) and, once done, the result: the same JSON as
``facetrace search VIDEO --json``. ``POST /search/video/ID/cancel`` stops it at the next frame.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from sqlalchemy import select

from facetrace.api.deps import Actor, audited, client_address, get_service, record_event, require_roles
from facetrace.api.errors import UnsupportedMediaType
from facetrace.api.jobs import JOB_KINDS, JobContext
from facetrace.api.ratelimit import search_rate_limit
from facetrace.api.schemas import JobView
from facetrace.api.service import Service
from facetrace.errors import (
    CancelledError,
    ConflictError,
    FacetraceError,
    NotFoundError,
    VideoError,
    VideoTooLargeError,
)
from facetrace.store.audit import append_event
from facetrace.store.jobs import Job
from facetrace.store.models import Person

router = APIRouter(prefix="/search/video", tags=["search"])
examiners = require_roles("examiner")
VIDEO_JOB = "video_search"
CHUNK = 1 << 20


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isalnum() or c in "._- " else "_" for c in base).strip(" .")
    return cleaned[:150] or "video"


def save_upload(source: BinaryIO, target: Path, limit: int, name: str) -> tuple[int, str]:
    """Copy an upload to ``target`` in chunks; return its size and sha256.

    Raises:
        VideoTooLargeError: more than ``limit`` bytes. VideoError: empty.
    """
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise VideoTooLargeError(f"{name}: larger than the video limit of {limit:,} bytes")
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise VideoError(f"{name}: empty file")
    return size, digest.hexdigest()


@router.post("", status_code=202, dependencies=[Depends(search_rate_limit)], response_model=JobView)
def start_video_search(
    request: Request,
    video: UploadFile = File(description="The video: MP4, MOV, WebM/Matroska or AVI (told apart by content)."),
    case_reference: str = Form(min_length=1, max_length=200, description="The case this search is for."),
    purpose: str = Form(min_length=1, max_length=1000, description="Why the search is made."),
    top: int = Form(5, ge=1, le=100, description="Candidates per track."),
    actor: Actor = Depends(examiners),
    service: Service = Depends(get_service),
) -> Any:
    """Start a video search job: every person who appears is tracked and searched. Poll
    ``GET /search/video/ID`` for progress; the result is there once the job is done."""
    from facetrace.gallery.video import video_limits
    from facetrace.vision.video import SNIFF_BYTES, probe_video, sniff_video_format

    case_reference, purpose = case_reference.strip(), purpose.strip()
    name = _safe_name(video.filename or "video")
    with audited(service, actor, "search.video.start", case_reference=case_reference, purpose=purpose) as note:
        if not case_reference or not purpose:
            raise FacetraceError("case_reference and purpose must not be blank")
        head = video.file.read(SNIFF_BYTES)
        video.file.seek(0)
        if head and sniff_video_format(head) is None:
            raise UnsupportedMediaType(f"{name}: not a supported video (MP4, MOV, WebM/Matroska or AVI)")
        folder = service.settings.home / "jobs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"video-{secrets.token_hex(8)}.upload"
        try:
            size, sha256 = save_upload(video.file, path, service.settings.video_max_bytes, name)
            info = probe_video(path, video_limits(service.gallery), name=name)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        note.detail.update(video_sha256=sha256, bytes=size, duration_s=round(info.duration_s, 3))
        job = service.jobs.submit(
            VIDEO_JOB,
            created_by=actor.name,
            params={
                "path": str(path),
                "name": name,
                "top": top,
                "sha256": sha256,
                "case_reference": case_reference,
                "purpose": purpose,
                "client": client_address(request),
            },
        )
        note.records = [f"job:{job.id}"]
    return job.as_dict()


def _own_video_job(service: Service, actor: Actor, job_id: int) -> Job:
    with service.db.sessions() as session:
        job = session.get(Job, job_id)
    if job is None or job.kind != VIDEO_JOB or (job.created_by != actor.name and not actor.user.has_role("admin")):
        raise NotFoundError(f"no video search {job_id}")
    return job


@router.get("/{job_id}", response_model=JobView)
def video_search(job_id: int, actor: Actor = Depends(examiners), service: Service = Depends(get_service)) -> Any:
    """Show a video search job: state, progress (frames done of total) and, once done, its result."""
    return _own_video_job(service, actor, job_id).as_dict()


@router.post("/{job_id}/cancel", response_model=JobView)
def cancel_video_search(job_id: int, actor: Actor = Depends(examiners), service: Service = Depends(get_service)) -> Any:
    """Cancel a queued or running video search (it stops at the next frame)."""
    _own_video_job(service, actor, job_id)
    service.jobs.cancel(job_id)
    record_event(service, actor, "search.video.cancel", records=[f"job:{job_id}"])
    return _own_video_job(service, actor, job_id).as_dict()


def _run_video_search(service: Service, ctx: JobContext, job: Job) -> dict[str, Any]:
    params = job.params
    path = Path(params["path"])
    if not path.is_file():
        raise ConflictError("the uploaded video is gone; upload it again")
    try:
        result = service.gallery.search_video(
            path,
            name=params["name"],
            top_k=int(params.get("top", 5)),
            progress=ctx.progress,
            cancel=lambda: ctx.runner.stopping or ctx.cancel.is_set(),
            workers=service.settings.workers or None,
            isolate=True,  # the face models never run in the server's threads
        )
    except CancelledError:
        ctx.check()  # raises the runner's own cancelled / interrupted signal
        raise
    except FacetraceError:
        service.metrics.count_search("video", "error")
        path.unlink(missing_ok=True)  # the file itself is unusable: resuming cannot help
        raise
    service.metrics.count_search("video", "match" if any(t["match"] for t in result["tracks"]) else "no_match")
    path.unlink(missing_ok=True)
    persons = sorted({c["person"]["id"] for t in result["tracks"] for c in t["candidates"]})
    with service.db.session() as session:
        known = set(session.execute(select(Person.id).where(Person.id.in_(persons))).scalars()) if persons else set()
        append_event(
            session,
            actor=job.created_by,
            action="search.video",
            records=[f"job:{job.id}"] + [f"person:{p}" for p in persons if p in known],
            source=params.get("client"),
            detail={
                "case_reference": params.get("case_reference"),
                "purpose": params.get("purpose"),
                "video_sha256": params.get("sha256"),
                "tracks": len(result["tracks"]),
                "matches": [t["match"] for t in result["tracks"] if t["match"]],
            },
        )
    return result


# The job runner finds work functions by kind; this module adds its own.
JOB_KINDS[VIDEO_JOB] = _run_video_search
