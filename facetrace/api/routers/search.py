"""1:N search, 1:1 compare and face detection on uploaded images."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile

from facetrace.api.schemas import CompareResult, DetectResult, SearchResult
from facetrace.http.deps import ServiceDep, search_rate_limit, uploaded
from facetrace.http.roles import Examiner, ExaminerOrReviewer, IntakeOrExaminer
from facetrace.usecases import search as searches

router = APIRouter(tags=["search"])


@router.post("/search", dependencies=[Depends(search_rate_limit)], response_model=SearchResult)
def search(
    *,
    image: UploadFile = File(description="The probe photo."),
    case_reference: str = Form(min_length=1, max_length=200, description="The case this search is for."),
    purpose: str = Form(min_length=1, max_length=1000, description="Why the search is made."),
    top: int = Form(5, ge=1, le=100, description="Candidates per face."),
    actor: Examiner,
    service: ServiceDep,
) -> Any:
    """Search every face of the photo against the gallery, with calibrated scores and match
    decisions (the same JSON as ``facetrace search --json``). The case reference and purpose are
    recorded with the search in the audit trail."""
    return searches.search(service, actor, uploaded(image), case_reference=case_reference, purpose=purpose, top=top)


@router.post("/compare", dependencies=[Depends(search_rate_limit)], response_model=CompareResult)
def compare(
    *,
    a: UploadFile = File(description="First photo."),
    b: UploadFile = File(description="Second photo."),
    actor: ExaminerOrReviewer,
    service: ServiceDep,
) -> Any:
    """1:1 verification: are the largest faces of the two photos the same person?"""
    return searches.compare(service, actor, uploaded(a), uploaded(b))


@router.post("/detect", response_model=DetectResult)
def detect(*, image: UploadFile = File(description="A photo."), actor: IntakeOrExaminer, service: ServiceDep) -> Any:
    """Find the faces of a photo, with landmarks and quality (no search, nothing stored)."""
    return searches.detect(service, actor, uploaded(image))
