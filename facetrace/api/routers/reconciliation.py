"""Reconciliation beyond the face over HTTP: descriptors, distinguishing marks (with their photos),
personal effects, primary identifier references and a case's kind; the facts of a record with its
exclusions, a lead's agreement, search by marks and descriptors without a face, reopening a
rejected lead, and an admin's confirmation of an identification by exception.

Thin, like :mod:`facetrace.api.routers.workflow`: each route checks the caller's roles, turns the
request into a :class:`facetrace.workflow.Workflow` call (``reconciliation``, ``identifications``)
and returns its JSON. The workflow checks the codes (422 naming the field) and the roles again,
and appends the audit events.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Query, UploadFile

from facetrace.api.reconciliation_schemas import (
    CaseDescriptorsIn,
    CaseDescriptorsSet,
    CaseFacts,
    CaseKindIn,
    CaseKindView,
    CaseMarkAdded,
    EffectIn,
    EffectView,
    ExceptionConfirmed,
    FactsSearchIn,
    FactsSearchResult,
    LeadAgreement,
    MarkIn,
    MarkRemoved,
    MarkView,
    PrimaryReferenceIn,
    PrimaryReferenceView,
    ReconcileRationaleIn,
    ReferenceStatusIn,
    ReopenedLead,
    ReportDescriptorsIn,
    ReportDescriptorsSet,
    ReportFacts,
    ReportMarkAdded,
)
from facetrace.http.deps import ServiceDep, uploaded
from facetrace.http.roles import Admin, Reader, Recorder, Reopener
from facetrace.usecases.records import read_photos, workflow_for

router = APIRouter(tags=["reconciliation"])


# -- descriptors and kind ---------------------------------------------------------------------------
@router.put("/reports/{reference}/descriptors", response_model=ReportDescriptorsSet)
def set_report_descriptors(reference: str, body: ReportDescriptorsIn, actor: Recorder, service: ServiceDep) -> Any:
    """Replace a report's descriptors (fields left out become unknown), then match it again."""
    return workflow_for(service, actor).reconciliation.set_descriptors(
        actor.user, "report", reference, body.model_dump(exclude_unset=True)
    )


@router.put("/cases/{reference}/descriptors", response_model=CaseDescriptorsSet)
def set_case_descriptors(reference: str, body: CaseDescriptorsIn, actor: Recorder, service: ServiceDep) -> Any:
    """Replace a case's descriptors, estimated age range included (fields left out become unknown),
    then search it again."""
    return workflow_for(service, actor).reconciliation.set_descriptors(
        actor.user, "case", reference, body.model_dump(exclude_unset=True)
    )


@router.put("/cases/{reference}/kind", response_model=CaseKindView)
def set_case_kind(reference: str, body: CaseKindIn, actor: Recorder, service: ServiceDep) -> Any:
    """Set a case's kind (the condition follows it); a body part may name the case of its body."""
    return workflow_for(service, actor).reconciliation.set_case_kind(
        actor.user, reference, body.kind, parent_case=body.parent_case
    )


# -- marks ------------------------------------------------------------------------------------------
@router.post("/reports/{reference}/marks", status_code=201, response_model=ReportMarkAdded)
def add_report_mark(reference: str, body: MarkIn, actor: Recorder, service: ServiceDep) -> Any:
    """Record a distinguishing mark on a report (add its photos with POST /marks/ID/photos), then match it."""
    return workflow_for(service, actor).reconciliation.add_mark(
        actor.user, "report", reference, body.model_dump(exclude_unset=True)
    )


@router.post("/cases/{reference}/marks", status_code=201, response_model=CaseMarkAdded)
def add_case_mark(reference: str, body: MarkIn, actor: Recorder, service: ServiceDep) -> Any:
    """Record a distinguishing mark on a case (add its photos with POST /marks/ID/photos), then search it."""
    return workflow_for(service, actor).reconciliation.add_mark(
        actor.user, "case", reference, body.model_dump(exclude_unset=True)
    )


@router.post("/marks/{mark_id}/photos", status_code=201, response_model=MarkView)
def add_mark_photos(
    mark_id: int,
    *,
    photos: list[UploadFile] = File(description="Photos of the mark (stored as they are, no face needed)."),
    actor: Recorder,
    service: ServiceDep,
) -> Any:
    """Add photos to a recorded mark; return the mark with all its photos."""
    return workflow_for(service, actor).reconciliation.add_mark_photos(
        actor.user, mark_id, read_photos(service, [uploaded(u) for u in photos])
    )


@router.delete("/marks/{mark_id}", response_model=MarkRemoved)
def remove_mark(
    mark_id: int,
    *,
    reason: str = Query(max_length=500, description="Why it was recorded in error (required)."),
    actor: Recorder,
    service: ServiceDep,
) -> Any:
    """Remove a mark recorded in error."""
    return workflow_for(service, actor).reconciliation.remove_mark(actor.user, mark_id, reason=reason)


# -- effects and primary references -----------------------------------------------------------------
@router.post("/reports/{reference}/effects", status_code=201, response_model=EffectView)
def add_report_effect(reference: str, body: EffectIn, actor: Recorder, service: ServiceDep) -> Any:
    """Record a piece of clothing or a personal effect on a report."""
    return workflow_for(service, actor).reconciliation.add_effect(
        actor.user, "report", reference, body.model_dump(exclude_unset=True)
    )


@router.post("/cases/{reference}/effects", status_code=201, response_model=EffectView)
def add_case_effect(reference: str, body: EffectIn, actor: Recorder, service: ServiceDep) -> Any:
    """Record a piece of clothing or a personal effect found with a case."""
    return workflow_for(service, actor).reconciliation.add_effect(
        actor.user, "case", reference, body.model_dump(exclude_unset=True)
    )


@router.post("/reports/{reference}/primary-references", status_code=201, response_model=PrimaryReferenceView)
def add_report_primary_reference(reference: str, body: PrimaryReferenceIn, actor: Recorder, service: ServiceDep) -> Any:
    """Record where a primary identifier of the missing person is held (references only, never the data)."""
    return workflow_for(service, actor).reconciliation.add_primary_reference(
        actor.user, "report", reference, body.model_dump(exclude_unset=True)
    )


@router.post("/cases/{reference}/primary-references", status_code=201, response_model=PrimaryReferenceView)
def add_case_primary_reference(reference: str, body: PrimaryReferenceIn, actor: Recorder, service: ServiceDep) -> Any:
    """Record where a primary identifier of the found person is held (references only, never the data)."""
    return workflow_for(service, actor).reconciliation.add_primary_reference(
        actor.user, "case", reference, body.model_dump(exclude_unset=True)
    )


@router.patch("/primary-references/{reference_id}", response_model=PrimaryReferenceView)
def set_primary_reference_status(
    reference_id: int, body: ReferenceStatusIn, actor: Recorder, service: ServiceDep
) -> Any:
    """Move a primary reference on (e.g. a DNA sample requested -> collected -> profiled -> matched)."""
    return workflow_for(service, actor).reconciliation.set_primary_reference_status(
        actor.user, reference_id, body.status
    )


# -- reading ----------------------------------------------------------------------------------------
@router.get("/reports/{reference}/facts", response_model=ReportFacts)
def report_facts(reference: str, actor: Reader, service: ServiceDep) -> Any:
    """What a report records beyond the face, with its rejected leads."""
    return workflow_for(service, actor).reconciliation.facts(actor.user, "report", reference)


@router.get("/cases/{reference}/facts", response_model=CaseFacts)
def case_facts(reference: str, actor: Reader, service: ServiceDep) -> Any:
    """What a case records beyond the face, its kind, the reports its facts rule out (with the
    reasons) and its rejected leads."""
    return workflow_for(service, actor).reconciliation.facts(actor.user, "case", reference)


@router.get("/leads/{lead_id}/agreement", response_model=LeadAgreement)
def lead_agreement(lead_id: int, actor: Reader, service: ServiceDep) -> Any:
    """A lead's agreement beyond the face as the records stand now: per descriptor, the corresponding
    marks with their photos, and the exclusions that apply to the pair."""
    return workflow_for(service, actor).reconciliation.lead_agreement(actor.user, lead_id)


@router.post("/leads/{lead_id}/reopen", response_model=ReopenedLead)
def reopen_lead(lead_id: int, body: ReconcileRationaleIn, actor: Reopener, service: ServiceDep) -> Any:
    """Reopen a rejected lead with a rationale (reviewers); 409 when it is not rejected."""
    return workflow_for(service, actor).reconciliation.reopen_lead(actor.user, lead_id, rationale=body.rationale)


@router.post("/facts/search", response_model=FactsSearchResult)
def search_facts(body: FactsSearchIn, actor: Reader, service: ServiceDep) -> Any:
    """Search reports or cases by descriptors and marks, without a face: records the query's facts rule
    out are left out, the rest ranked by agreement. Results are leads for examiners, never a match."""
    return workflow_for(service, actor).reconciliation.search(
        actor.user,
        target=body.target,
        descriptors=body.descriptors,
        marks=body.marks,
        date_of_birth=body.date_of_birth,
        limit=body.limit,
    )


# -- identifications --------------------------------------------------------------------------------
@router.post("/identifications/{identification_id}/confirm-by-exception", response_model=ExceptionConfirmed)
def confirm_by_exception(identification_id: int, body: ReconcileRationaleIn, actor: Admin, service: ServiceDep) -> Any:
    """Record an admin's exception: a preliminary identification becomes confirmed without a primary
    identifier result (none can be had); 409 when withdrawn or already confirmed."""
    return workflow_for(service, actor).identifications.confirm_by_exception(
        actor.user, identification_id, rationale=body.rationale
    )
