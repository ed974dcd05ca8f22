"""Ad-hoc search of a photo (examiners), for a case reference and a purpose, with scores in plain words."""

from __future__ import annotations

import base64

from fastapi import Depends, Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep, read_image_upload, search_rate_limit
from facetrace.http.roles import Examiner
from facetrace.usecases import search as searches
from facetrace.usecases.uploads import ImageBytes
from facetrace.web import images, services
from facetrace.web.deps import FormDep, text, uploads_of, web_router
from facetrace.web.render import page

router = web_router()


@router.get("/search")
def search_form(request: Request, actor: Examiner) -> Response:
    """The ad-hoc search form (examiners): a photo, a case reference and a purpose."""
    form = {"case_reference": "", "purpose": ""}
    return page(request, actor, "search.html", title="Search", form=form, error="", result=None, probe=None)


def _data_url(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


@router.post("/search", dependencies=[Depends(search_rate_limit)])
def search(
    request: Request,
    form: FormDep,
    actor: Examiner,
    service: ServiceDep,
) -> Response:
    """Search every face of the photo (audited with the case reference and purpose, as the API's
    search); show each face with its quality and candidates, with their scores in plain words."""
    values = {"case_reference": text(form, "case_reference"), "purpose": text(form, "purpose")}

    def again(status: int, error: str) -> Response:
        return page(
            request,
            actor,
            "search.html",
            http_status=status,
            title="Search",
            form=values,
            error=error,
            result=None,
            probe=None,
        )

    uploads = uploads_of(form, "image")
    if not values["case_reference"] or not values["purpose"]:
        return again(422, "A case reference and a purpose are required for every search.")
    if len(uploads) != 1:
        return again(422, "Choose one photo to search.")
    upload = uploads[0]
    try:
        data, name = read_image_upload(upload, service.settings.max_upload_bytes)
        result = searches.search(
            service,
            actor,
            ImageBytes(data, name),  # read and checked above: the search's audit records the same image
            case_reference=values["case_reference"][:200],
            purpose=values["purpose"][:1000],
            top=5,
        )
        rgb = images.load_rgb(data, service.settings.max_pixels)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return again(exc.status, exc.message)
    min_quality = service.settings.min_quality
    person_ids = sorted({c["person"]["id"] for f in result["faces"] for c in f["candidates"]})
    reports = services.person_report_refs(service.db, person_ids)
    for face in result["faces"]:
        face["crop_src"] = _data_url(images.face_crop_jpeg(rgb, face["box"], size=200))
        face["problems"] = services.quality_problems(face["quality"], face["quality"]["score"], min_quality)
        for cand in face["candidates"]:
            cand["report"] = reports.get(cand["person"]["id"])
    height, width = rgb.shape[:2]
    probe = {"src": _data_url(images.encode_jpeg(rgb, max_side=1000)), "width": width, "height": height}
    return page(request, actor, "search.html", title="Search", form=values, error="", result=result, probe=probe)
