"""Video search as a background job: upload a video, poll its progress, read the tracks found.

``POST /search/video`` checks the upload at once (container sniffed from its bytes, header
within the video limits: 413/415/422 otherwise) and queues a ``video_search`` job; the job
finds, tracks and searches every person who appears (:meth:`Gallery.search_video`), in
worker processes so that the server's threads stay free. ``GET /search/video/ID`` shows the
job with its progress (frames done of total) and, once done, the result: the same JSON as
``facetrace search VIDEO --json``. ``POST /search/video/ID/cancel`` stops it at the next frame.
The rules are :mod:`facetrace.usecases.video`'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from facetrace.api.schemas import JobView
from facetrace.http.deps import ServiceDep, client_address, search_rate_limit
from facetrace.http.roles import Examiner, ExaminerOrReviewer
from facetrace.usecases import video as videos

router = APIRouter(prefix="/search/video", tags=["search"])


@router.post("", status_code=202, dependencies=[Depends(search_rate_limit)], response_model=JobView)
def start_video_search(
    request: Request,
    *,
    video: UploadFile = File(description="The video: MP4, MOV, WebM/Matroska or AVI (told apart by content)."),
    case_reference: str = Form(min_length=1, max_length=200, description="The case this search is for."),
    purpose: str = Form(min_length=1, max_length=1000, description="Why the search is made."),
    top: int = Form(5, ge=1, le=100, description="Candidates per track."),
    actor: Examiner,
    service: ServiceDep,
) -> Any:
    """Start a video search job: every person who appears is tracked and searched. Poll
    ``GET /search/video/ID`` for progress; the result is there once the job is done."""
    return videos.start(
        service,
        actor,
        video.file,
        video.filename,
        case_reference=case_reference,
        purpose=purpose,
        top=top,
        client=client_address(request),
    )


@router.get("/{job_id}", response_model=JobView)
def video_search(job_id: int, actor: ExaminerOrReviewer, service: ServiceDep) -> Any:
    """Show a video search job: state, progress (frames done of total) and, once done, its result
    (audited as ``search.video.view``). Any examiner or reviewer may open any video search, not only
    whoever started it; only they (or an admin) may cancel it."""
    return videos.show(service, actor, job_id)


@router.post("/{job_id}/cancel", response_model=JobView)
def cancel_video_search(job_id: int, actor: Examiner, service: ServiceDep) -> Any:
    """Cancel a queued or running video search (it stops at the next frame)."""
    return videos.cancel(service, actor, job_id)
