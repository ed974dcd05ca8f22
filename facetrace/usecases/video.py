"""Video search as a background job: start it from an uploaded video, show its progress and
result, cancel it; and the job's work itself.

Starting checks the upload at once (container sniffed from its bytes, header within the video
limits) and queues a ``video_search`` job; the job finds, tracks and searches every person who
appears (:meth:`Gallery.search_video`) in worker processes, so that the server's threads stay
free.

Who may open a video search: every examiner and reviewer, not only whoever started it. Case files
are not divided between users (every examiner and reviewer reads every case), so the colleagues
entitled to a search's case are those whose work is identification: the examiners who search and
the reviewers who check what a search found. Each opening of a finished search's result is audited
(``search.video.view``). Only whoever started a search (or an admin) may cancel it.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

from facetrace.errors import (
    CancelledError,
    ConflictError,
    FacetraceError,
    NotFoundError,
    PermissionDenied,
    VideoError,
    VideoTooLargeError,
)
from facetrace.gallery.video import video_limits
from facetrace.store.audit import append_event
from facetrace.store.jobs import Job
from facetrace.store.models import Person
from facetrace.usecases.actors import Actor, audited, record_event
from facetrace.usecases.errors import UnsupportedMediaType
from facetrace.usecases.jobs import JOB_KINDS, JobContext
from facetrace.usecases.service import Service
from facetrace.usecases.uploads import safe_name
from facetrace.vision.video import SNIFF_BYTES, probe_video, sniff_video_format

VIDEO_JOB = "video_search"
CHUNK = 1 << 20


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


def start(
    service: Service,
    actor: Actor,
    video: BinaryIO,
    filename: str | None,
    *,
    case_reference: str,
    purpose: str,
    top: int,
    client: str | None,
) -> dict[str, Any]:
    """Check an uploaded video and queue its search; return the job. Audited (``search.video.start``).

    Raises:
        FacetraceError: a blank case reference or purpose.
        UnsupportedMediaType: not a supported container.
        VideoTooLargeError, VideoError: over the video limits, empty or unreadable.
    """
    case_reference, purpose = case_reference.strip(), purpose.strip()
    name = safe_name(filename or "video", default="video")
    with audited(service, actor, "search.video.start", case_reference=case_reference, purpose=purpose) as note:
        if not case_reference or not purpose:
            raise FacetraceError("case_reference and purpose must not be blank")
        head = video.read(SNIFF_BYTES)
        video.seek(0)
        if head and sniff_video_format(head) is None:
            raise UnsupportedMediaType(f"{name}: not a supported video (MP4, MOV, WebM/Matroska or AVI)")
        folder = service.settings.home / "jobs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"video-{secrets.token_hex(8)}.upload"
        try:
            size, sha256 = save_upload(video, path, service.settings.video_max_bytes, name)
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
                "client": client,
            },
        )
        note.records = [f"job:{job.id}"]
    return job_view(job)


VIEW_ROLES = ("examiner", "reviewer")  # who may open any video search (see the module's docstring)


def _video_job(service: Service, job_id: int) -> Job:
    with service.db.sessions() as session:
        job = session.get(Job, job_id)
    if job is None or job.kind != VIDEO_JOB:
        raise NotFoundError(f"no video search {job_id}")
    return job


def job_view(job: Job) -> dict[str, Any]:
    """Return a video search job as the API shows it, with the case reference and purpose it was made for."""
    params = job.params or {}
    return {**job.as_dict(), "case_reference": params.get("case_reference"), "purpose": params.get("purpose")}


def may_cancel(actor: Actor, job: dict[str, Any]) -> bool:
    """Return whether ``actor`` may cancel this video search: whoever started it, or an admin."""
    return job.get("created_by") == actor.name or actor.user.has_role("admin")


def show(service: Service, actor: Actor, job_id: int) -> dict[str, Any]:
    """Return a video search job: state, progress and, once done, its result (each opening of a
    result audited as ``search.video.view``). Any examiner or reviewer may open any video search.

    Raises:
        PermissionDenied: the actor is neither examiner nor reviewer.
        NotFoundError: no such video search.
    """
    if not any(actor.user.has_role(role) for role in VIEW_ROLES):
        raise PermissionDenied("opening a video search needs the role examiner or reviewer")
    job = _video_job(service, job_id)
    out = job_view(job)
    if job.state == "done":
        detail = {"tracks": len(out["result"].get("tracks", [])), "case_reference": out["case_reference"]}
        record_event(service, actor, "search.video.view", records=[f"job:{job.id}"], detail=detail)
    return out


def cancel(service: Service, actor: Actor, job_id: int) -> dict[str, Any]:
    """Cancel a queued or running video search (it stops at the next frame); return it. Audited.

    Raises:
        NotFoundError: no such video search.
        PermissionDenied: started by someone else (and the actor is no admin).
        ConflictError: it has already finished.
    """
    job = job_view(_video_job(service, job_id))
    if not may_cancel(actor, job):
        record_event(service, actor, "search.video.cancel", records=[f"job:{job_id}"], outcome="denied")
        raise PermissionDenied(f"only {job['created_by'] or 'whoever started it'} or an admin may cancel this search")
    service.jobs.cancel(job_id)
    record_event(service, actor, "search.video.cancel", records=[f"job:{job_id}"])
    return job_view(_video_job(service, job_id))


def run_video_search(service: Service, ctx: JobContext, job: Job) -> dict[str, Any]:
    """The work of a video search job: search the saved video; return the result. Audited (``search.video``)."""
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
JOB_KINDS[VIDEO_JOB] = run_video_search
