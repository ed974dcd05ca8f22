"""The intake and search forms' photo check: the faces of one photo and whether it is usable."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from facetrace.http.deps import ServiceDep, read_image_upload
from facetrace.http.roles import Recorder
from facetrace.store.media import sha256_bytes
from facetrace.usecases.actors import record_event
from facetrace.web.deps import NO_STORE, FormDep, uploads_of, web_router
from facetrace.web.photos import photo_feedback
from facetrace.workflow.common import InvalidInput

router = web_router()


@router.post("/intake/check-photo")
def check_photo(
    request: Request,
    form: FormDep,
    actor: Recorder,
    service: ServiceDep,
) -> JSONResponse:
    """For the intake and search forms' script: the faces of one photo, their quality, and
    whether the photo is usable (nothing is stored). Audited as a detection."""
    kind = request.query_params.get("kind", "report")
    if kind not in ("report", "case", "search"):
        raise InvalidInput("kind must be report, case or search")
    uploads = uploads_of(form, "photo")
    if len(uploads) != 1:
        raise InvalidInput("send one photo in the field 'photo'")
    data, name = read_image_upload(uploads[0], service.settings.max_upload_bytes)
    feedback = photo_feedback(service, data, uploads[0].filename or name, kind)
    record_event(
        service,
        actor,
        "detect",
        detail={"image_sha256": sha256_bytes(data), "faces": len(feedback["faces"]), "via": "web intake check"},
    )
    return JSONResponse(feedback, headers=NO_STORE)
