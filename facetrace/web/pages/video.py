"""Video search (examiners): the form, the job's page with its progress and tracks, cancelling."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep, client_address, search_rate_limit
from facetrace.http.roles import Examiner, ExaminerOrReviewer
from facetrace.usecases import video as videos
from facetrace.usecases.actors import Actor
from facetrace.usecases.service import Service
from facetrace.web import services
from facetrace.web.deps import FormDep, text, uploads_of, web_router
from facetrace.web.render import page, redirect

router = web_router()
VIDEO_FORM = "search_video.html"


@router.get("/search/video")
def video_search_form(request: Request, actor: Examiner) -> Response:
    """The video search form (examiners): a video, a case reference and a purpose."""
    form = {"case_reference": "", "purpose": ""}
    return page(request, actor, VIDEO_FORM, title="Video search", form=form, error="", job=None)


@router.post("/search/video", dependencies=[Depends(search_rate_limit)])
def start_video_search(
    request: Request,
    form: FormDep,
    actor: Examiner,
    service: ServiceDep,
) -> Response:
    """Start a video search job, exactly as the API's ``POST /search/video`` (checks, audit and
    job included); redirect to its page. A refused upload is shown on the form with the reason."""
    values = {"case_reference": text(form, "case_reference"), "purpose": text(form, "purpose")}

    def again(status: int, error: str) -> Response:
        return page(
            request, actor, VIDEO_FORM, http_status=status, title="Video search", form=values, error=error, job=None
        )

    uploads = uploads_of(form, "video")
    if not values["case_reference"] or not values["purpose"]:
        return again(422, "A case reference and a purpose are required for every search.")
    if len(uploads) != 1:
        return again(422, "Choose one video to search.")
    try:
        job = videos.start(
            service,
            actor,
            uploads[0].file,
            uploads[0].filename,
            case_reference=values["case_reference"][:200],
            purpose=values["purpose"][:1000],
            top=5,
            client=client_address(request),
        )
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return again(exc.status, exc.message)
    return redirect(f"/search/video/{int(job['id'])}")


def _video_job_page(request: Request, actor: Actor, service: Service, job: dict[str, Any]) -> Response:
    result = job["result"] if job["state"] == "done" else None
    if result:
        person_ids = sorted({c["person"]["id"] for t in result["tracks"] for c in t["candidates"]})
        reports = services.person_report_refs(service.db, person_ids)
        for track in result["tracks"]:
            thumbnail = track.get("thumbnail_jpeg_base64")
            # The page's CSP allows img-src data:, as for the ad-hoc search's face crops.
            track["thumbnail_src"] = f"data:image/jpeg;base64,{thumbnail}" if thumbnail else None
            for cand in track["candidates"]:
                cand["report"] = reports.get(cand["person"]["id"])
    running = job["state"] in ("queued", "running")
    progress = job["progress"]
    percent = round(100 * progress["done"] / progress["total"]) if progress.get("total") else 0
    return page(
        request,
        actor,
        VIDEO_FORM,
        title=f"Video search {job['id']}",
        form=None,
        error="",
        job=job,
        result=result,
        running=running,
        percent=percent,
        can_cancel=videos.may_cancel(actor, job),
    )


@router.get("/search/video/{job_id}")
def video_search_job(job_id: int, request: Request, actor: ExaminerOrReviewer, service: ServiceDep) -> Response:
    """A video search job: its progress while it runs (the page refreshes itself every two seconds,
    without script), then each track with its time span, thumbnail and candidates. Any examiner or
    reviewer may open it (the result's opening audited by the use-case)."""
    job = videos.show(service, actor, job_id)
    return _video_job_page(request, actor, service, job)


@router.post("/search/video/{job_id}/cancel")
def cancel_video_search(
    job_id: int,
    request: Request,
    _form: FormDep,
    actor: Examiner,
    service: ServiceDep,
) -> Response:
    """Cancel a queued or running video search (audited, as the API's cancel); back to its page."""
    videos.cancel(service, actor, job_id)
    return redirect(f"/search/video/{job_id}")
