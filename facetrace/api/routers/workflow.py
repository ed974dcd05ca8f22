"""The identification workflow over HTTP: reports, cases, leads, identifications, notifications.

Thin: each route checks the caller's roles (:func:`require_roles`, the same roles the workflow
service enforces again), turns the request into a :class:`facetrace.workflow.Workflow` call and
returns its JSON. The service appends the audit events, refusals included, in its own
transactions; the client address is their source.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Query, UploadFile
from pydantic import BaseModel, Field

from facetrace.api.schemas import (
    CaseDetail,
    CaseListItem,
    CaseMatched,
    CasePhotosAdded,
    CaseUpdated,
    ContactView,
    DuplicateListItem,
    DuplicateView,
    Erasure,
    EvidenceView,
    IdentificationDetail,
    IdentificationListItem,
    Items,
    LeadDetail,
    LeadListItem,
    MergeResult,
    NotificationDetail,
    NotificationSummary,
    NotificationView,
    OutboxRun,
    Page,
    RematchResult,
    ReportCreated,
    ReportDetail,
    ReportListItem,
    ReportMatching,
    ReportPhotosAdded,
    ReportUpdated,
    ReviewResult,
    WithdrawResult,
)
from facetrace.http.deps import ServiceDep, uploaded
from facetrace.http.roles import (
    Approver,
    Matcher,
    Merger,
    Reader,
    Recorder,
    RecordEraser,
    Reviewer,
    Sender,
    Withdrawer,
)
from facetrace.usecases.records import CASE, REPORT, read_photos, workflow_for
from facetrace.usecases.service import Service
from facetrace.workflow import PhotoInput

router = APIRouter(tags=["workflow"])
MAX_TEXT = 20_000


def _photos(service: Service, uploads: list[UploadFile]) -> list[PhotoInput]:
    return read_photos(service, [uploaded(u) for u in uploads])


def _page(rows: list[dict[str, Any]], offset: int, limit: int) -> dict[str, Any]:
    return {
        "items": rows[:limit],
        "offset": offset,
        "limit": limit,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


# -- bodies -----------------------------------------------------------------------------------------
class ContactIn(BaseModel):
    name: str = Field(max_length=300)
    relation: str = Field(max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    language: str = Field(default="en", max_length=16, description="Preferred language code (en, uk, ru...).")


class ContactUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=300)
    relation: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    language: str | None = Field(default=None, max_length=16)


class ReportIn(BaseModel):
    name: str = Field(max_length=300)
    reported_by: str = Field(max_length=300, description="Provenance: who reported.")
    source: str = Field(max_length=300, description="Provenance: where the report comes from.")
    legal_basis: str = Field(max_length=300, description="Provenance: the legal basis for holding it.")
    consent: bool = False
    consent_date: str | None = Field(default=None, description="YYYY-MM-DD")
    date_of_birth: str | None = Field(default=None, description="YYYY, YYYY-MM or YYYY-MM-DD")
    description: str = Field(default="", max_length=MAX_TEXT)
    reference: str | None = Field(default=None, max_length=64, description="Default: R-NNNNNN.")
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)
    retain_until: str | None = Field(default=None, description="ISO date or date-time after which it is erased.")
    descriptors: dict[str, Any] | None = Field(
        default=None,
        description="Structured descriptors: sex, height (or height_min/height_max, cm), build, hair_colour, "
        "hair_length, eye_colour, facial_hair; codes as in docs/reconciliation.md.",
    )


class ReportUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=300)
    date_of_birth: str | None = None
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    status: str | None = Field(default=None, description="missing, located_alive or closed.")
    reported_by: str | None = Field(default=None, max_length=300)
    source: str | None = Field(default=None, max_length=300)
    legal_basis: str | None = Field(default=None, max_length=300)
    consent: bool | None = None
    consent_date: str | None = None
    retain_until: str | None = Field(
        default=None, description="ISO date or date-time after which it is erased; null removes it."
    )


class CaseIn(BaseModel):
    condition: str | None = Field(default=None, description="deceased or alive (or give kind).")
    kind: str | None = Field(default=None, description="deceased, living, detained or body_part; sets the condition.")
    descriptors: dict[str, Any] | None = Field(
        default=None,
        description="Structured descriptors: sex, age_min/age_max (years), height_min/height_max (cm), build, "
        "hair_colour, hair_length, eye_colour, facial_hair.",
    )
    found_at: str | None = Field(default=None, description="ISO date or date-time.")
    found_place: str = Field(default="", max_length=500)
    holding_organisation: str = Field(default="", max_length=300)
    description: str = Field(default="", max_length=MAX_TEXT)
    reference: str | None = Field(default=None, max_length=64, description="Default: C-NNNNNN.")
    retain_until: str | None = Field(default=None, description="ISO date or date-time after which it is erased.")


class CaseUpdate(BaseModel):
    condition: str | None = None
    found_at: str | None = None
    found_place: str | None = Field(default=None, max_length=500)
    holding_organisation: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    status: str | None = Field(default=None, description="open or closed.")
    retain_until: str | None = Field(
        default=None, description="ISO date or date-time after which it is erased; null removes it."
    )


class EraseIn(BaseModel):
    reason: str = Field(default="erasure request", min_length=1, max_length=500, description="The legal reason.")
    force: bool = Field(default=False, description="Erase even with a lead under review or a pending notification.")


class ReviewIn(BaseModel):
    decision: str = Field(description="confirm, reject or inconclusive.")
    rationale: str = Field(max_length=MAX_TEXT, description="Why (required).")


class EvidenceIn(BaseModel):
    kind: str = Field(description="dna, fingerprints, dental, documents, personal_effects, witness or other.")
    description: str = Field(default="", max_length=MAX_TEXT)
    reference: str | None = Field(default=None, max_length=300)


class MergeIn(BaseModel):
    into: str = Field(max_length=64, description="The report that stays.")
    rationale: str = Field(max_length=MAX_TEXT, description="Why (required).")


class RationaleIn(BaseModel):
    rationale: str = Field(max_length=MAX_TEXT, description="Why (required).")


class ReasonIn(BaseModel):
    reason: str = Field(max_length=MAX_TEXT, description="Why (required).")


class DraftIn(BaseModel):
    contact_id: int


class DraftEditIn(BaseModel):
    subject: str | None = Field(default=None, max_length=500, description="New subject (null: unchanged).")
    body: str | None = Field(default=None, max_length=50_000, description="New plain text (null: unchanged).")


class ApproveIn(BaseModel):
    include_images: list[int] = Field(
        default_factory=list, max_length=20, description="Photos of the case to attach (default: none)."
    )


class SendIn(BaseModel):
    notification_ids: list[int] | None = Field(default=None, description="Only these (default: all approved).")
    stale_after_s: float | None = Field(default=None, ge=0)


class ResolveIn(BaseModel):
    resolution: str = Field(description="delivered, resend or cancel.")
    rationale: str = Field(max_length=MAX_TEXT, description="Why (required).")


# -- reports ----------------------------------------------------------------------------------------
@router.get("/reports", response_model=Page[ReportListItem])
def list_reports(
    *,
    status: str | None = Query(None),
    q: str | None = Query(
        None,
        max_length=200,
        description="A name in any script or spelling (Melnyk, Мельник, melnik), or part of a reference: "
        "exact names first, then containing, then close spellings.",
    ),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: Reader,
    service: ServiceDep,
) -> Any:
    """List missing-person reports, newest first."""
    rows = REPORT.list_records(
        workflow_for(service, actor), actor, status=status, query=q, offset=offset, limit=limit + 1
    )
    return _page(rows, offset, limit)


@router.post("/reports", status_code=201, response_model=ReportCreated)
def create_report(body: ReportIn, actor: Recorder, service: ServiceDep) -> Any:
    """Register a report with its provenance and contacts; add photos with POST /reports/REF/photos."""
    data = body.model_dump()
    data["contacts"] = [c.model_dump() for c in body.contacts]
    return REPORT.create(workflow_for(service, actor), actor, **data)


@router.get("/reports/{reference}", response_model=ReportDetail)
def show_report(reference: str, actor: Reader, service: ServiceDep) -> Any:
    """Show a report with its contacts, photos, leads, duplicate flags and identifications."""
    return REPORT.show(workflow_for(service, actor), actor, reference)


@router.patch("/reports/{reference}", response_model=ReportUpdated)
def update_report(reference: str, body: ReportUpdate, actor: Recorder, service: ServiceDep) -> Any:
    """Change a report's fields (only those sent), then match it again."""
    return REPORT.update(workflow_for(service, actor), actor, reference, **body.model_dump(exclude_unset=True))


@router.post("/reports/{reference}/erase", response_model=Erasure)
def erase_report(reference: str, body: EraseIn, actor: RecordEraser, service: ServiceDep) -> Any:
    """Erase a report end to end (merged reports, photos, templates, contacts, leads, identifications,
    notifications); 409 ``erasure_blocked`` while work is in progress on it, unless ``force``."""
    return REPORT.erase(workflow_for(service, actor), actor, reference, reason=body.reason, force=body.force)


@router.post("/reports/{reference}/photos", status_code=201, response_model=ReportPhotosAdded)
def add_report_photos(
    reference: str,
    *,
    photos: list[UploadFile] = File(description="Reference photos (the largest face of each is enrolled)."),
    actor: Recorder,
    service: ServiceDep,
) -> Any:
    """Enroll reference photos of a report, then match it against the open cases."""
    return REPORT.add_photos(workflow_for(service, actor), actor, reference, _photos(service, photos))


@router.post("/reports/{reference}/contacts", status_code=201, response_model=ContactView)
def add_contact(reference: str, body: ContactIn, actor: Recorder, service: ServiceDep) -> Any:
    """Register a family contact on a report: the only possible recipients of notifications."""
    return workflow_for(service, actor).reports.add_contact(actor.user, reference, **body.model_dump())


@router.patch("/contacts/{contact_id}", response_model=ContactView)
def update_contact(contact_id: int, body: ContactUpdate, actor: Recorder, service: ServiceDep) -> Any:
    """Correct a contact's details (only the fields sent)."""
    return workflow_for(service, actor).reports.update_contact(
        actor.user, contact_id, **body.model_dump(exclude_unset=True)
    )


@router.post("/reports/{reference}/match", response_model=ReportMatching)
def match_report(reference: str, actor: Matcher, service: ServiceDep) -> Any:
    """Search a report against the open cases (and other reports) again; idempotent."""
    return REPORT.match(workflow_for(service, actor), actor, reference)


@router.post("/reports/{reference}/merge", response_model=MergeResult)
def merge_report(reference: str, body: MergeIn, actor: Merger, service: ServiceDep) -> Any:
    """Merge this report into another (the same person reported twice); both histories stay."""
    return workflow_for(service, actor).matching.merge_reports(
        actor.user, reference, body.into, rationale=body.rationale
    )


@router.get("/duplicates", response_model=Items[DuplicateListItem])
def list_duplicates(
    *,
    status: str | None = Query("open", description="open, merged or dismissed; empty for all."),
    actor: Reader,
    service: ServiceDep,
) -> Any:
    """List possible duplicate reports."""
    return {"items": workflow_for(service, actor).matching.list_duplicates(actor.user, status=status or None)}


@router.post("/duplicates/{flag_id}/dismiss", response_model=DuplicateView)
def dismiss_duplicate(flag_id: int, body: RationaleIn, actor: Merger, service: ServiceDep) -> Any:
    """Record that two flagged reports are different people."""
    return workflow_for(service, actor).matching.dismiss_duplicate(actor.user, flag_id, rationale=body.rationale)


# -- cases ------------------------------------------------------------------------------------------
@router.get("/cases", response_model=Page[CaseListItem])
def list_cases(
    *,
    status: str | None = Query(None),
    q: str | None = Query(
        None,
        max_length=200,
        description="Part of a reference, or the name (any script or spelling) of a report that a lead ties "
        "the case to.",
    ),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: Reader,
    service: ServiceDep,
) -> Any:
    """List cases, newest first."""
    rows = CASE.list_records(
        workflow_for(service, actor), actor, status=status, query=q, offset=offset, limit=limit + 1
    )
    return _page(rows, offset, limit)


@router.post("/cases", status_code=201, response_model=CasePhotosAdded)
def create_case(body: CaseIn, actor: Recorder, service: ServiceDep) -> Any:
    """Open a case; add its photos with POST /cases/REF/photos (each addition searches it again)."""
    return CASE.create(workflow_for(service, actor), actor, **body.model_dump())


@router.get("/cases/{reference}", response_model=CaseDetail)
def show_case(reference: str, actor: Reader, service: ServiceDep) -> Any:
    """Show a case with its photos, leads and identifications."""
    return CASE.show(workflow_for(service, actor), actor, reference)


@router.patch("/cases/{reference}", response_model=CaseUpdated)
def update_case(reference: str, body: CaseUpdate, actor: Recorder, service: ServiceDep) -> Any:
    """Change a case's fields (only those sent); an open case is searched again."""
    return CASE.update(workflow_for(service, actor), actor, reference, **body.model_dump(exclude_unset=True))


@router.post("/cases/{reference}/erase", response_model=Erasure)
def erase_case(reference: str, body: EraseIn, actor: RecordEraser, service: ServiceDep) -> Any:
    """Erase a case end to end (photos, templates, leads, identifications, notifications); 409
    ``erasure_blocked`` while work is in progress on it, unless ``force``."""
    return CASE.erase(workflow_for(service, actor), actor, reference, reason=body.reason, force=body.force)


@router.post("/cases/{reference}/photos", status_code=201, response_model=CasePhotosAdded)
def add_case_photos(
    reference: str,
    *,
    photos: list[UploadFile] = File(description="Photos of the person (the largest face of each is used)."),
    actor: Recorder,
    service: ServiceDep,
) -> Any:
    """Add photos to a case (all checked first: one without a face stores nothing), then search it."""
    return CASE.add_photos(workflow_for(service, actor), actor, reference, _photos(service, photos))


@router.post("/cases/{reference}/match", response_model=CaseMatched)
def match_case(
    reference: str,
    *,
    widen: bool = Query(
        False,
        description="Search all reports, past the exclusions the case's facts give (examiner or reviewer; "
        "audited with the exclusions it overrode).",
    ),
    actor: Matcher,
    service: ServiceDep,
) -> Any:
    """Search a case against the reports its facts do not rule out again; idempotent."""
    return CASE.match(workflow_for(service, actor), actor, reference, widen=widen)


# -- leads ------------------------------------------------------------------------------------------
@router.get("/leads", response_model=Page[LeadListItem])
def list_leads(
    *,
    status: str | None = Query(None),
    case: str | None = Query(None, max_length=64),
    report: str | None = Query(None, max_length=64),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: Reader,
    service: ServiceDep,
) -> Any:
    """The review queue: leads, best score first."""
    rows = workflow_for(service, actor).reviews.list_leads(
        actor.user, status=status, case=case, report=report, offset=offset, limit=limit + 1
    )
    return _page(rows, offset, limit)


@router.post("/leads/rematch", response_model=RematchResult)
def rematch(actor: Matcher, service: ServiceDep) -> Any:
    """Search every open case and every report again (after a recalibration or bulk import)."""
    return workflow_for(service, actor).matching.match_all(actor.user)


@router.get("/leads/{lead_id}", response_model=LeadDetail)
def show_lead(lead_id: int, actor: Reader, service: ServiceDep) -> Any:
    """Show a lead with its case, report, reviews, evidence and identification."""
    return workflow_for(service, actor).reviews.get_lead(actor.user, lead_id)


@router.post("/leads/{lead_id}/reviews", status_code=201, response_model=ReviewResult)
def review_lead(lead_id: int, body: ReviewIn, actor: Reviewer, service: ServiceDep) -> Any:
    """Review a lead. A reviewer's confirmation after a different user's establishes the identification."""
    return workflow_for(service, actor).reviews.review_lead(
        actor.user, lead_id, decision=body.decision, rationale=body.rationale
    )


@router.post("/leads/{lead_id}/evidence", status_code=201, response_model=EvidenceView)
def add_evidence(lead_id: int, body: EvidenceIn, actor: Reviewer, service: ServiceDep) -> Any:
    """Record corroborating evidence on a lead."""
    return workflow_for(service, actor).reviews.add_evidence(actor.user, lead_id, **body.model_dump())


# -- identifications --------------------------------------------------------------------------------
@router.get("/identifications", response_model=Items[IdentificationListItem])
def list_identifications(*, status: str | None = Query(None), actor: Reader, service: ServiceDep) -> Any:
    """List identifications, newest first."""
    return {"items": workflow_for(service, actor).identifications.list_identifications(actor.user, status=status)}


@router.get("/identifications/{identification_id}", response_model=IdentificationDetail)
def show_identification(identification_id: int, actor: Reader, service: ServiceDep) -> Any:
    """Show an identification with its reviews, evidence and notifications."""
    return workflow_for(service, actor).identifications.get_identification(actor.user, identification_id)


@router.post("/identifications/{identification_id}/withdraw", response_model=WithdrawResult)
def withdraw_identification(identification_id: int, body: ReasonIn, actor: Withdrawer, service: ServiceDep) -> Any:
    """Withdraw an identification: unsent notifications are cancelled, corrections drafted."""
    return workflow_for(service, actor).identifications.withdraw_identification(
        actor.user, identification_id, reason=body.reason
    )


@router.post("/identifications/{identification_id}/notifications", status_code=201, response_model=NotificationView)
def draft_notification(identification_id: int, body: DraftIn, actor: Reviewer, service: ServiceDep) -> Any:
    """Draft a notification to one registered contact of the identified report."""
    return workflow_for(service, actor).notifications.draft_notification(actor.user, identification_id, body.contact_id)


# -- notifications ----------------------------------------------------------------------------------
@router.get("/notifications", response_model=Page[NotificationSummary])
def list_notifications(
    *,
    status: str | None = Query(None),
    identification_id: int | None = Query(None),
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    actor: Reader,
    service: ServiceDep,
) -> Any:
    """List notifications, newest first (without their text)."""
    rows = workflow_for(service, actor).notifications.list_notifications(
        actor.user, status=status, identification_id=identification_id, offset=offset, limit=limit + 1
    )
    return _page(rows, offset, limit)


@router.post("/notifications/send", response_model=OutboxRun)
def send_notifications(body: SendIn, actor: Sender, service: ServiceDep) -> Any:
    """Run the outbox: send approved notifications by SMTP, each at most once."""
    return workflow_for(service, actor).outbox.send_notifications(
        actor.user, notification_ids=body.notification_ids, stale_after_s=body.stale_after_s
    )


@router.get("/notifications/{notification_id}", response_model=NotificationDetail)
def show_notification(notification_id: int, actor: Reader, service: ServiceDep) -> Any:
    """Show a notification with its text and delivery attempts."""
    return workflow_for(service, actor).notifications.get_notification(actor.user, notification_id)


@router.patch("/notifications/{notification_id}", response_model=NotificationView)
def edit_notification(notification_id: int, body: DraftEditIn, actor: Reviewer, service: ServiceDep) -> Any:
    """Edit a draft's subject or text before approval (its drafter only; 409 once approved). The draft is
    marked edited (``edited_at``) and no longer rendered again; its HTML alternative is dropped. Audited."""
    return workflow_for(service, actor).notifications.edit_draft(
        actor.user, notification_id, subject=body.subject, body=body.body
    )


@router.post("/notifications/{notification_id}/approve", response_model=NotificationView)
def approve_notification(notification_id: int, body: ApproveIn, actor: Reviewer, service: ServiceDep) -> Any:
    """Approve a draft (someone other than the drafter, with a role the review policy allows: reviewers, or
    examiners and reviewers); photos only if listed. The draft is rendered again from the current settings
    first: 409 when its text changed (read it again, then approve), 409 ``settings_missing`` while the
    organisation or mail settings are not set."""
    return workflow_for(service, actor).notifications.approve_notification(
        actor.user, notification_id, include_images=body.include_images
    )


@router.post("/notifications/{notification_id}/cancel", response_model=NotificationView)
def cancel_notification(notification_id: int, body: ReasonIn, actor: Approver, service: ServiceDep) -> Any:
    """Cancel a notification not yet sent."""
    return workflow_for(service, actor).notifications.cancel_notification(
        actor.user, notification_id, reason=body.reason
    )


@router.post("/notifications/{notification_id}/resolve", response_model=NotificationView)
def resolve_notification(notification_id: int, body: ResolveIn, actor: Sender, service: ServiceDep) -> Any:
    """Settle a notification whose delivery is unknown, failed or refused."""
    return workflow_for(service, actor).outbox.resolve_notification(
        actor.user, notification_id, resolution=body.resolution, rationale=body.rationale
    )
