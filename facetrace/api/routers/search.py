"""1:N search, 1:1 compare and face detection on uploaded images."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile

from facetrace.api.deps import Actor, audited, get_service, read_image_upload, require_roles
from facetrace.api.errors import InvalidRequest
from facetrace.api.ratelimit import search_rate_limit
from facetrace.api.service import Service
from facetrace.store.media import sha256_bytes

router = APIRouter(tags=["search"])


@router.post("/search", dependencies=[Depends(search_rate_limit)])
def search(
    image: UploadFile = File(description="The probe photo."),
    case_reference: str = Form(min_length=1, max_length=200, description="The case this search is for."),
    purpose: str = Form(min_length=1, max_length=1000, description="Why the search is made."),
    top: int = Form(5, ge=1, le=100, description="Candidates per face."),
    actor: Actor = Depends(require_roles("examiner")),
    service: Service = Depends(get_service),
) -> Any:
    """Search every face of the photo against the gallery, with calibrated scores and match
    decisions (the same JSON as ``facetrace search --json``). The case reference and purpose are
    recorded with the search in the audit trail."""
    case_reference, purpose = case_reference.strip(), purpose.strip()
    with (
        service.metrics.counting_search("image") as tally,
        audited(service, actor, "search", case_reference=case_reference, purpose=purpose) as note,
    ):
        if not case_reference or not purpose:
            raise InvalidRequest("case_reference and purpose must not be blank")
        data, name = read_image_upload(image, service.settings.max_upload_bytes)
        note.detail["image_sha256"] = sha256_bytes(data)
        result = service.gallery.search(data, name=name, top_k=top).to_dict()
        persons = {c["person"]["id"] for f in result["faces"] for c in f["candidates"]}
        note.records = [f"person:{p}" for p in sorted(persons)]
        note.detail["faces"] = len(result["faces"])
        note.detail["matches"] = [f["match"] for f in result["faces"] if f["match"]]
        tally.match = bool(note.detail["matches"])
    return result


@router.post("/compare", dependencies=[Depends(search_rate_limit)])
def compare(
    a: UploadFile = File(description="First photo."),
    b: UploadFile = File(description="Second photo."),
    actor: Actor = Depends(require_roles("examiner", "reviewer")),
    service: Service = Depends(get_service),
) -> Any:
    """1:1 verification: are the largest faces of the two photos the same person?"""
    with service.metrics.counting_search("compare") as tally, audited(service, actor, "compare") as note:
        limit = service.settings.max_upload_bytes
        (data_a, name_a), (data_b, name_b) = read_image_upload(a, limit), read_image_upload(b, limit)
        note.detail["images"] = [sha256_bytes(data_a), sha256_bytes(data_b)]
        result = service.gallery.compare(data_a, data_b, names=(name_a, name_b)).to_dict()
        note.detail.update(score=result["score"], match=result["match"])
        tally.match = bool(result["match"])
    return result


@router.post("/detect")
def detect(
    image: UploadFile = File(description="A photo."),
    actor: Actor = Depends(require_roles("intake", "examiner")),
    service: Service = Depends(get_service),
) -> Any:
    """Find the faces of a photo, with landmarks and quality (no search, nothing stored)."""
    with audited(service, actor, "detect") as note:
        data, name = read_image_upload(image, service.settings.max_upload_bytes)
        note.detail["image_sha256"] = sha256_bytes(data)
        faces = service.gallery.detect(data, name)
        note.detail["faces"] = len(faces)
    return {
        "image": name,
        "faces": [{**f.as_dict(), "quality_ok": f.quality.score >= service.settings.min_quality} for f in faces],
    }
