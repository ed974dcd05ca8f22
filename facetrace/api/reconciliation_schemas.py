"""Request and response bodies of the reconciliation routes (:mod:`facetrace.api.routers.reconciliation`):
what reports and cases record of the person besides photos (descriptors, marks, effects, primary
references, a case's kind), exclusions and agreement, search without a face, reopening a lead, and
an admin's confirmation of an identification by exception.

Request bodies forbid unknown keys; codes (sex, body region, effect kind...) are plain text here and
checked by the workflow, whose ``InvalidInput`` (422) names the field. Response bodies follow the
conventions of :mod:`facetrace.api.schemas`: every key required, times as ISO 8601 text.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from facetrace.api.schemas import (
    CaseMatching,
    DraftedNotifications,
    IdentificationView,
    LeadView,
    ReportMatching,
)

MAX_TEXT = 20_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -------------------------------------------------------------------------------------
class ReportDescriptorsIn(_Body):
    """A report's structured descriptors; fields left out become unknown."""

    sex: str | None = Field(default=None, description="female or male.")
    height: int | None = Field(default=None, description="Height in cm (one value); or height_min/height_max.")
    height_min: int | None = Field(default=None, description="cm")
    height_max: int | None = Field(default=None, description="cm")
    build: str | None = Field(default=None, description="slight, medium or heavy.")
    hair_colour: str | None = None
    hair_length: str | None = None
    eye_colour: str | None = None
    facial_hair: str | None = None


class CaseDescriptorsIn(ReportDescriptorsIn):
    """A case's structured descriptors, with the estimated age range; fields left out become unknown."""

    age_min: int | None = Field(default=None, description="Estimated age range, years.")
    age_max: int | None = None


class CaseKindIn(_Body):
    kind: str = Field(description="deceased, living, detained or body_part.")
    parent_case: str | None = Field(default=None, max_length=64, description="A body part's case of the body.")


class MarkIn(_Body):
    type: str = Field(description="tattoo, scar, birthmark, piercing, amputation, deformity or dental.")
    region: str = Field(description="Coded body region (forearm, chest...).")
    side: str | None = Field(default=None, description="left, right, centre or both.")
    aspect: str | None = Field(default=None, description="front, back, inner, outer, upper or lower.")
    description: str | None = Field(default=None, max_length=2000)
    keywords: list[str] | str | None = Field(default=None, description="A list, or comma-separated text.")


class EffectIn(_Body):
    kind: str = Field(description="clothing, footwear, jewellery, watch, glasses, document, phone or other.")
    colour: str | None = Field(default=None, max_length=100)
    inscription: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=2000)


class PrimaryReferenceIn(_Body):
    kind: str = Field(description="dna, dental or fingerprints.")
    status: str = Field(description="A status of that kind (dna: requested, collected, profiled, matched...).")
    holder: str | None = Field(default=None, max_length=300)
    sample_reference: str | None = Field(default=None, max_length=300)
    note: str | None = Field(default=None, max_length=2000)


class ReferenceStatusIn(_Body):
    status: str


class MarkRemoveIn(_Body):
    reason: str = Field(max_length=500, description="Why (required).")


class ReconcileRationaleIn(_Body):
    rationale: str = Field(max_length=MAX_TEXT, description="Why (required).")


class FactsSearchIn(_Body):
    target: str = Field(description="reports (the query describes a found person) or cases (a missing one).")
    descriptors: dict[str, Any] | None = Field(default=None, description="As on a case (reports) or report (cases).")
    marks: list[dict[str, Any]] | None = Field(default=None, max_length=20)
    date_of_birth: str | None = Field(default=None, description="Searching cases: YYYY, YYYY-MM or YYYY-MM-DD.")
    limit: int = Field(default=10, ge=1, le=50)


# -- responses ------------------------------------------------------------------------------------
class DescriptorsView(BaseModel):
    """Every descriptor field; null: unknown. Heights in cm, ages in years."""

    sex: str | None
    age_min: int | None
    age_max: int | None
    height_min: int | None
    height_max: int | None
    build: str | None
    hair_colour: str | None
    hair_length: str | None
    eye_colour: str | None
    facial_hair: str | None


class ReportDescriptorsSet(BaseModel):
    descriptors: DescriptorsView
    matching: ReportMatching


class CaseDescriptorsSet(BaseModel):
    descriptors: DescriptorsView
    matching: CaseMatching


class CaseKindView(BaseModel):
    kind: str
    condition: str
    parent_case: str | None


class MarkView(BaseModel):
    id: int
    type: str
    region: str
    side: str | None
    aspect: str | None
    location: str = Field(description="The body location in words.")
    description: str
    keywords: list[str]
    summary: str
    photo_image_ids: list[int]
    created_at: str | None


class ReportMarkAdded(BaseModel):
    mark: MarkView
    matching: ReportMatching


class CaseMarkAdded(BaseModel):
    mark: MarkView
    matching: CaseMatching


class MarkRemoved(BaseModel):
    removed: int


class EffectView(BaseModel):
    id: int
    kind: str
    colour: str
    inscription: str
    description: str
    created_at: str | None


class PrimaryReferenceView(BaseModel):
    id: int
    kind: str
    status: str
    holder: str
    sample_reference: str
    note: str
    created_at: str | None
    updated_at: str | None


class Rejection(BaseModel):
    by: str | None
    rationale: str
    at: str | None


class RejectedLead(BaseModel):
    lead_id: int
    case: str | None
    report: str | None
    rejections: list[Rejection]


class Exclusion(BaseModel):
    report: str | None
    report_id: int
    reasons: list[str]


class ReportFacts(BaseModel):
    reference: str
    descriptors: DescriptorsView
    marks: list[MarkView]
    effects: list[EffectView]
    primary_references: list[PrimaryReferenceView]
    rejected_leads: list[RejectedLead]


class CaseFacts(ReportFacts):
    kind: str
    parent_case: str | None
    exclusions: list[Exclusion] = Field(description="The reports this case's facts rule out, with the reasons.")


class FieldAgreementView(BaseModel):
    field: str
    label: str
    verdict: str
    report: Any
    case: Any
    lr: float


class MarkPairView(BaseModel):
    report_mark_id: int | None
    case_mark_id: int | None
    type: str
    region: str
    report: str
    case: str
    shared_words: list[str]
    lr: float


class AgreementView(BaseModel):
    fields: list[FieldAgreementView]
    marks: list[MarkPairView]
    agrees: int
    disagrees: int
    unknown: int
    log10_lr: float
    summary: str


class LeadMarkPair(MarkPairView):
    report_photo_image_ids: list[int]
    case_photo_image_ids: list[int]


class LeadAgreement(BaseModel):
    lead_id: int
    basis: str
    fields: list[FieldAgreementView]
    marks: list[LeadMarkPair]
    agrees: int
    disagrees: int
    unknown: int
    log10_lr: float
    summary: str
    exclusions: list[dict[str, Any]] = Field(description="The exclusions that apply to the pair (widened search).")


class FactsHit(BaseModel):
    reference: str
    id: int
    agreement: AgreementView
    adjusted_fmr: float | None
    basis: str


class FactsSearchResult(BaseModel):
    target: str
    results: list[FactsHit]
    excluded: int = Field(description="Records the query's facts rule out.")


class ReopenedLead(LeadView):
    """The lead as it stands after reopening."""


class HeldNotifications(DraftedNotifications):
    held: str | None = Field(description="Why no notification was drafted, or null.")


class ExceptionConfirmed(BaseModel):
    identification: IdentificationView
    notifications: HeldNotifications
