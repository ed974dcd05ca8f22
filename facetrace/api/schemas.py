"""Response bodies of the API, as Pydantic models: declared as ``response_model`` on every JSON route,
so that ``/api/v1/openapi.json`` documents each body and the server checks what it sends.

The models describe the JSON the lower layers already build (the Gallery's search and compare
results, the workflow's record views, the stores' ``as_dict``) key for key: every key is required
(a key that may hold nothing is ``X | None``, never left out). Times are ISO 8601 text, kept as
``str`` so that a response is sent exactly as it was built. Models whose bodies carry keys that
vary (a job's result, an audit event's detail, a record's metadata) hold them in ``dict`` fields,
or allow extra keys, so that a response is never stripped of a key.

Words as in the glossary: report, case, lead, review, identification, candidate, probe.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from facetrace.api.errors import ErrorDetail

Role = Literal["admin", "intake", "examiner", "reviewer", "auditor"]
ReportStatus = Literal["missing", "located_alive", "identified_deceased", "closed", "merged"]
CaseStatus = Literal["open", "under_review", "identified", "closed"]
Condition = Literal["deceased", "alive"]
LeadBasis = Literal["face", "face_and_secondary", "marks"]
IdentificationLevel = Literal["preliminary", "confirmed"]
LeadStatus = Literal["open", "under_review", "rejected", "identified", "withdrawn"]
Decision = Literal["confirm", "reject", "inconclusive"]
EvidenceKind = Literal["dna", "fingerprints", "dental", "documents", "personal_effects", "witness", "other"]
IdentificationStatus = Literal["confirmed", "withdrawn"]
DuplicateStatus = Literal["open", "merged", "dismissed"]
NotificationKind = Literal["identification", "correction"]
NotificationStatus = Literal["draft", "approved", "sending", "sent", "failed", "refused", "unknown", "cancelled"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
Box = list[int]  # left, top, right, bottom in pixels

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_offset`` is null on the last page."""

    items: list[T]
    offset: int
    limit: int
    next_offset: int | None


class Items(BaseModel, Generic[T]):
    """A whole (unpaged) list."""

    items: list[T]


# -- system --------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"]
    version: str


class ReadinessCheck(BaseModel):
    ok: bool
    detail: str = Field(description="What was found, in one line.")


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, ReadinessCheck] = Field(description="Each readiness check by name (database, index...).")


class NotReadyDetail(ErrorDetail):
    checks: dict[str, ReadinessCheck] = Field(description="Every readiness check; the failing ones say why.")


class NotReady(BaseModel):
    """The 503 body of GET /ready: an error body with the checks inside it."""

    error: NotReadyDetail


# -- accounts ------------------------------------------------------------------------------------
class UserView(BaseModel):
    id: int
    username: str
    display_name: str
    roles: list[Role]
    disabled: bool
    created_at: str


class LoginResult(BaseModel):
    user: UserView
    csrf_token: str = Field(description="Send as X-CSRF-Token with every non-GET request made with the cookie.")
    expires_at: str


class LogoutResult(BaseModel):
    logged_out: bool = Field(description="Whether a login session was ended (false for an API token).")


class Me(BaseModel):
    user: UserView
    via: Literal["token", "session"]
    csrf_token: str | None = Field(description="The session's CSRF token; null when signed in with a token.")


class TokenView(BaseModel):
    id: int
    name: str
    created_at: str
    expires_at: str
    revoked: bool
    last_used_at: str | None


class NewToken(TokenView):
    token: str = Field(description="The secret: shown in this response only.")


class RoleView(BaseModel):
    role: Role
    description: str


# -- audit ---------------------------------------------------------------------------------------
class AuditEventView(BaseModel):
    """One entry of the hash-chained audit trail."""

    id: int
    at: str
    actor: str | None
    action: str
    records: list[str] = Field(description="The records concerned, such as person:12 or lead:3.")
    outcome: str
    source: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventView]
    total: int
    offset: int
    limit: int


class PastSearch(BaseModel):
    """One past search, from the audit trail: an ad-hoc photo search or a finished video search."""

    event_id: int = Field(description="The audit event that records it.")
    at: str
    user: str | None
    kind: Literal["photo", "video"]
    case_reference: str | None
    purpose: str | None
    found: int | None = Field(description="Faces (photo) or tracks (video) found.")
    matches: list[str] = Field(description="The persons matched (external ids).")
    outcome: str
    error: str | None = Field(description="The error code of a search that failed.")
    job_id: int | None = Field(description="A video search's job (GET /search/video/ID).")


class PastSearchPage(BaseModel):
    items: list[PastSearch]
    total: int
    offset: int
    limit: int


class ChainCheck(BaseModel):
    intact: bool
    problems: list[str] = Field(description="One line per event found edited or deleted (empty: intact).")


# -- faces, candidates and searches --------------------------------------------------------------
class QualityView(BaseModel):
    score: float = Field(description="Face quality, 0-100.")
    eye_distance_px: float
    sharpness: float
    detector_score: float
    yaw_deg: float


class FaceView(BaseModel):
    """One detected face: box, landmarks and quality (never the embedding)."""

    box: Box
    landmarks: list[list[float]]
    detector: str
    detection_score: float
    quality: QualityView
    model_id: str


class DetectedFaceView(FaceView):
    quality_ok: bool = Field(description="Whether the quality reaches the minimum for a match decision.")


class PersonRef(BaseModel):
    id: int
    external_id: str
    name: str


class Candidate(BaseModel):
    """A gallery entry returned for a probe, with its score and calibration."""

    rank: int
    person: PersonRef
    face_id: int
    score: float = Field(description="Similarity of probe and candidate (higher = more alike).")
    similarity: float = Field(description="The raw cosine similarity behind the score.")
    fmr: float = Field(description="FMR(score): share of comparisons of two different people scoring at least this.")
    fpir: float = Field(description="FPIR(score, N) for this gallery of N people.")
    fpir_extrapolated: bool
    match: bool
    reason: str = Field(description="Why this candidate is or is not a match.")


class QualityBandView(BaseModel):
    """The band of a probe face's quality and what it means for the error rates of its search (measured)."""

    name: str = Field(description="The band: unusable (below the minimum quality), poor, fair or good.")
    label: str = Field(description="The band in words, e.g. 'good quality'.")
    low: float = Field(description="The lowest quality in the band.")
    high: float = Field(description="The quality where the band ends (not included).")
    true_match_rate: float = Field(description="Share of searches for someone in the gallery that found them.")
    false_match_rate: float = Field(
        description="Share of searches for someone not in the gallery that matched someone else."
    )
    advice: str = Field(description="What the band means for an examiner, in plain words.")


class ProbeResult(DetectedFaceView):
    """One probe face of a search with its candidates and the match decision."""

    candidates: list[Candidate]
    match: str | None = Field(description="The external id of the matching person, or null.")
    quality_band: QualityBandView = Field(
        description="The band of the face's quality, with its measured error rates and advice in plain words."
    )


class GalleryFacts(BaseModel):
    persons: int = Field(description="N: the number of people in the gallery.")
    model_id: str


class SearchPolicy(BaseModel):
    target_fpir: float
    threshold: float = Field(description="The score at which FPIR(s, N) equals the target.")
    calibrated: bool
    min_quality: float
    explanation: str


class SearchResult(BaseModel):
    """A 1:N search of every face of a photo (as ``facetrace search --json``)."""

    image: str
    gallery: GalleryFacts
    policy: SearchPolicy
    faces: list[ProbeResult]


class CompareResult(BaseModel):
    """1:1 verification of the largest face of each photo."""

    score: float
    similarity: float
    fmr: float
    threshold: float
    target_fmr: float
    match: bool
    calibrated: bool
    faces: list[FaceView]


class DetectResult(BaseModel):
    image: str
    faces: list[DetectedFaceView]


# -- persons of the gallery ----------------------------------------------------------------------
class PersonView(BaseModel):
    id: int
    external_id: str
    name: str
    metadata: dict[str, Any]
    source: str = Field(description="Provenance: where the photos come from.")
    legal_basis: str
    collected_at: str | None
    retain_until: str | None


class NameMatchView(BaseModel):
    """How a record matched a name query (docs/api.md, "Names across scripts and spellings")."""

    tier: Literal["exact", "contains", "close"] = Field(
        description="exact: every word of the query is a word of the name (after transliteration); "
        "contains: every word is part of a word of the name, or the reference contains the text; "
        "close: a close spelling."
    )
    score: float = Field(description="Similarity 0-100 (100 for exact and contains).")


class PersonListItem(PersonView):
    faces: int
    name_match: NameMatchView | None = Field(default=None, description="Only when the list is searched (q).")


class StoredFace(BaseModel):
    id: int
    box: Box
    quality: float
    model_id: str


class StoredImage(BaseModel):
    id: int
    sha256: str
    original_name: str
    width: int
    height: int
    faces: list[StoredFace]


class PersonDetail(PersonView):
    images: list[StoredImage]


class FileError(BaseModel):
    """Why one file was not enrolled."""

    file: str
    error: str
    code: str = Field("error", description="The error's code, as in an error body (e.g. image_too_large, no_face).")


class EnrollOutcomeView(BaseModel):
    persons_created: int
    images_enrolled: int
    images_skipped: int = Field(description="Already enrolled (an idempotent rerun).")
    errors: list[FileError]
    error_count: int


class EnrollResult(BaseModel):
    person: PersonDetail
    enrolled: EnrollOutcomeView


class Erasure(BaseModel):
    """What an erasure removed, by kind of row."""

    kind: Literal["person", "report", "case"]
    id: int
    job_results_scrubbed: int
    notifications: int
    identifications: int
    leads: int
    contacts: int
    reports: int
    cases: int
    faces: int
    images: int
    persons: int
    marks: int = Field(default=0, description="Distinguishing marks of the erased records.")
    mark_photos: int = Field(default=0, description="Photos of those marks (their files count in media_files_removed).")
    effects: int = 0
    primary_references: int = 0
    media_files_removed: int
    forced: bool


class PersonErasure(Erasure):
    external_id: str
    faces_removed: int


# -- jobs ----------------------------------------------------------------------------------------
class JobProgress(BaseModel):
    done: int
    total: int


class JobView(BaseModel):
    """A background job: state, progress and errors; ``result`` once done (a video search's tracks
    and candidates, an import's counts)."""

    id: int
    kind: str
    state: JobState
    progress: JobProgress
    error_count: int
    errors: list[dict[str, Any]]
    result: dict[str, Any]
    message: str | None
    resumable: bool
    attempts: int = Field(
        default=0, description="How many times the job was started (a job whose worker stopped is run again)."
    )
    created_by: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    case_reference: str | None = Field(default=None, description="A video search's case reference.")
    purpose: str | None = Field(default=None, description="A video search's purpose.")


class JobPage(BaseModel):
    items: list[JobView]
    offset: int
    limit: int


# -- workflow: records ---------------------------------------------------------------------------
class ContactView(BaseModel):
    """A family member or representative registered on a report."""

    id: int
    report_id: int
    name: str
    relation: str
    email: str | None
    phone: str | None
    language: str
    created_at: str


class Provenance(BaseModel):
    reported_by: str
    source: str
    legal_basis: str
    consent: bool
    consent_date: str | None


class ReportView(BaseModel):
    """A missing-person report."""

    id: int
    reference: str
    name: str
    date_of_birth: str | None
    description: str
    status: ReportStatus
    person_id: int | None = Field(description="The gallery person holding the report's reference photos.")
    merged_into_id: int | None
    retain_until: str | None
    provenance: Provenance
    descriptors: dict[str, Any] = Field(description="Structured descriptors recorded (unknown ones left out).")
    created_at: str
    updated_at: str


class CaseView(BaseModel):
    """An unidentified person."""

    id: int
    reference: str
    condition: Condition
    kind: str = Field(description="deceased, living, detained or body_part.")
    parent_case_id: int | None = Field(description="A body part's case of the body it belongs to.")
    descriptors: dict[str, Any] = Field(description="Structured descriptors recorded (unknown ones left out).")
    found_at: str | None
    found_place: str
    holding_organisation: str
    description: str
    status: CaseStatus
    retain_until: str | None
    created_at: str
    updated_at: str


class CaseSnapshot(CaseView):
    photo_count: int


class LeadFace(BaseModel):
    face_id: int | None = Field(description="Null once the face was erased.")
    image_id: int | None
    box: Box
    quality: float


class LeadView(BaseModel):
    """A case-report pair whose score passes the review threshold."""

    id: int
    case_id: int
    report_id: int
    status: LeadStatus
    score: float
    fmr: float
    fpir: float = Field(description="FPIR(score, gallery_size) when the lead was raised.")
    threshold: float = Field(description="The review threshold the score passed.")
    review_fpir: float
    gallery_size: int
    model_id: str
    case_face: LeadFace | None = Field(description="Null for a lead raised by marks alone.")
    report_face: LeadFace | None = Field(description="Null for a lead raised by marks alone.")
    flag: str | None
    created_at: str
    updated_at: str
    basis: LeadBasis = Field(description="What raised it: the face, the face with secondary agreement, or marks.")
    adjusted_fpir: float | None = Field(description="The FPIR adjusted by the secondary agreement, or null.")
    secondary: dict[str, Any] | None = Field(description="The agreement beyond the face when it was raised.")
    reopened_at: str | None
    reopen_rationale: str | None


class LeadListItem(LeadView):
    case: str = Field(description="The case reference.")
    report: str = Field(description="The report reference.")
    report_name: str


class ReviewView(BaseModel):
    """One examiner's decision on a lead."""

    id: int
    lead_id: int
    reviewer_id: int
    reviewer: str | None
    decision: Decision
    rationale: str
    created_at: str


class EvidenceView(BaseModel):
    """Corroboration of an identification beyond the face."""

    id: int
    lead_id: int
    kind: EvidenceKind
    description: str
    reference: str | None
    recorded_by_id: int
    recorded_by: str | None
    created_at: str
    identification: RaisedIdentification | None = Field(
        default=None,
        description="The lead's preliminary identification, raised to confirmed by this primary identifier result.",
    )


class IdentificationView(BaseModel):
    """A lead confirmed by two different examiners."""

    id: int
    lead_id: int
    case_id: int
    report_id: int
    status: IdentificationStatus
    first_confirmed_by_id: int
    second_confirmed_by_id: int
    evidence_count: int
    confirmed_at: str
    withdrawn_by_id: int | None
    withdrawn_at: str | None
    withdrawal_reason: str | None
    level: IdentificationLevel = Field(description="preliminary, or confirmed by a primary identifier.")
    level_basis: str | None
    level_confirmed_at: str | None


class IdentificationListItem(IdentificationView):
    case: str
    report: str
    report_name: str


class DuplicateView(BaseModel):
    """A flag that two reports may be the same person."""

    id: int
    report_id: int
    other_report_id: int
    score: float
    fpir: float
    status: DuplicateStatus
    resolved_by_id: int | None
    resolved_at: str | None
    rationale: str | None
    created_at: str


class DuplicateListItem(DuplicateView):
    report: ReportView | None
    other_report: ReportView | None


class StoredPhoto(BaseModel):
    face_id: int
    box: Box
    quality: float
    model_id: str


class PhotoView(BaseModel):
    image_id: int
    sha256: str
    name: str
    width: int
    height: int
    created_at: str
    faces: list[StoredPhoto]


class ReportListItem(ReportView):
    name_match: NameMatchView | None = Field(default=None, description="Only when the list is searched (q).")


class CaseListItem(CaseView):
    name_match: NameMatchView | None = Field(default=None, description="Only when the list is searched (q).")


class SimilarName(BaseModel):
    """Another report whose name is the same or a close spelling, across scripts: maybe a duplicate."""

    id: int
    reference: str
    name: str
    date_of_birth: str | None
    status: ReportStatus
    name_match: NameMatchView


class ReportDetail(ReportView):
    contacts: list[ContactView]
    photos: list[PhotoView]
    leads: list[LeadView]
    duplicates: list[DuplicateView]
    identifications: list[IdentificationView]
    merged_from: list[str] = Field(description="References of the reports merged into this one.")
    similar_names: list[SimilarName] = Field(
        default_factory=list, description="Other reports with the same name or a close spelling (not merged)."
    )


class CaseDetail(CaseView):
    photos: list[PhotoView]
    leads: list[LeadView]
    identifications: list[IdentificationView]


# -- workflow: matching --------------------------------------------------------------------------
class LeadChanges(BaseModel):
    created: list[int]
    updated: list[int] = Field(description="Leads whose score rose.")
    unchanged: list[int]


class CaseMatching(BaseModel):
    """The leads a case search created, raised or left unchanged."""

    review_fpir: float
    gallery_size: int
    threshold: float
    leads: LeadChanges


class CaseMatched(CaseMatching):
    """A case searched on request; ``widened``: past the exclusions its facts give."""

    widened: bool


class ReportMatching(CaseMatching):
    duplicates_flagged: list[int]


class RematchTotals(BaseModel):
    created: list[int]
    updated: list[int]


class RematchResult(BaseModel):
    review_fpir: float
    gallery_size: int
    threshold: float
    cases: int
    reports: int
    leads: RematchTotals
    duplicates_flagged: list[int]


class ReportPhotos(BaseModel):
    enrolled: int
    skipped: int
    errors: list[FileError]


class ReportCreated(BaseModel):
    report: ReportView
    contacts: list[ContactView]
    photos: ReportPhotos
    matching: ReportMatching
    similar_names: list[SimilarName] = Field(
        default_factory=list, description="Reports registered before with the same name or a close spelling."
    )


class ReportPhotosAdded(BaseModel):
    report: ReportView
    photos: ReportPhotos
    matching: ReportMatching


class ReportUpdated(BaseModel):
    report: ReportView
    changed: list[str]
    matching: ReportMatching


class AddedCasePhoto(BaseModel):
    image_id: int
    face_id: int
    name: str
    box: Box
    quality: float
    quality_ok: bool


class CasePhotos(BaseModel):
    added: list[AddedCasePhoto]
    skipped: int = Field(description="Photos already on the case.")


class CasePhotosAdded(BaseModel):
    """A case as created or after photos were added: the photos stored and the search that followed."""

    case: CaseSnapshot
    photos: CasePhotos
    matching: CaseMatching


class CaseUpdated(BaseModel):
    case: CaseSnapshot
    changed: list[str]
    matching: CaseMatching


class MergeResult(BaseModel):
    source: ReportView
    into: ReportView
    matching: ReportMatching


class LeadDetail(LeadView):
    """A lead as the caller may see it: while blind, other examiners' reviews are hidden."""

    case: CaseView | None
    report: ReportView | None
    reviews: list[ReviewView]
    evidence: list[EvidenceView]
    identification: IdentificationView | None
    blind: bool
    hidden_reviews: int


# -- workflow: review and notification -----------------------------------------------------------
class DraftError(BaseModel):
    contact_id: int
    error: str


class DraftedNotifications(BaseModel):
    drafted: list[int]
    contacts_without_email: list[int]
    draft_errors: list[DraftError]
    held: str | None = Field(
        default=None, description="Why nothing was drafted: the identification's level may not notify under the policy."
    )


class RaisedIdentification(IdentificationView):
    """An identification raised to confirmed, with the notifications that this allowed."""

    notifications: DraftedNotifications


EvidenceView.model_rebuild()


class ReviewResult(BaseModel):
    review: ReviewView
    lead: LeadView
    identification: IdentificationView | None
    notifications: DraftedNotifications
    waiting_for: str | None = Field(description="What the identification still needs, or null.")


class NotificationSummary(BaseModel):
    """A message to a report's contact about an identification, without its text."""

    id: int
    identification_id: int
    contact_id: int
    kind: NotificationKind
    corrects_id: int | None
    status: NotificationStatus
    language: str
    recipient: str
    subject: str
    message_id: str
    attachments: list[int] = Field(description="Ids of the case photos attached.")
    drafted_by_id: int
    drafted_at: str
    approved_by_id: int | None
    approved_at: str | None
    attempts: int
    sending_since: str | None
    sent_at: str | None
    outcome: str | None
    last_error: str | None
    flag: str | None
    edited_at: str | None = Field(description="When its drafter edited the text by hand (null: as rendered).")


class NotificationView(NotificationSummary):
    body: str
    body_html: str | None


class DeliveryAttempt(BaseModel):
    number: int
    started_at: str
    finished_at: str | None
    outcome: str | None
    smtp_code: int | None
    detail: dict[str, Any]


class NotificationDetail(NotificationView):
    drafted_by: str | None
    approved_by: str | None
    delivery_attempts: list[DeliveryAttempt]


class IdentificationDetail(IdentificationView):
    first_confirmed_by: str | None
    second_confirmed_by: str | None
    withdrawn_by: str | None
    lead: LeadView
    case: CaseView | None
    report: ReportView | None
    reviews: list[ReviewView]
    evidence: list[EvidenceView]
    notifications: list[NotificationSummary]


class WithdrawnNotifications(BaseModel):
    cancelled: list[int]
    corrections_drafted: list[int]


class WithdrawResult(BaseModel):
    identification: IdentificationView
    notifications: WithdrawnNotifications


class DeliveryResult(BaseModel):
    id: int
    status: NotificationStatus
    outcome: str
    smtp_code: int | None
    detail: str


class OutboxRun(BaseModel):
    results: list[DeliveryResult]
    marked_unknown: list[int] = Field(description="Notifications found sending too long, now of unknown outcome.")
    sent: int
    failed: int
    refused: int
    unknown: int


# -- settings (admins) ---------------------------------------------------------------------------
SettingOrigin = Literal["environment", "saved", "default"]


class SettingItem(BaseModel):
    """One editable setting. ``value`` is null for the SMTP password (never shown; ``is_set`` says
    whether one is); ``read_only`` when the deployment's environment sets it (``env_var``)."""

    key: str
    section: str
    label: str
    value: str | int | float | None
    is_set: bool
    secret: bool
    origin: SettingOrigin
    read_only: bool
    env_var: str


class SettingsSection(BaseModel):
    key: str
    title: str


class SmtpTestRecord(BaseModel):
    """The last test message: when, whether the server accepted it, and its reply."""

    at: str
    ok: bool
    outcome: str
    smtp_code: int | None
    detail: str
    fingerprint: str


class SettingsView(BaseModel):
    items: list[SettingItem]
    sections: list[SettingsSection]
    notifications_ready: bool = Field(description="Whether the organisation and mail settings are set.")
    missing_for_notifications: list[str]
    missing_message: str | None
    smtp_test: SmtpTestRecord | None
    smtp_tested: bool = Field(description="Whether a test message went out with the mail settings in force now.")
    encrypted_at_rest: bool


class SmtpTestResult(BaseModel):
    outcome: Literal["sent"]
    to: str
    smtp_code: int | None
    detail: str


# -- non-JSON bodies -----------------------------------------------------------------------------
def file_response(media_types: list[str], description: str) -> dict[int | str, dict[str, Any]]:
    """Return a ``responses`` entry documenting a 200 body that is a file of one of ``media_types``."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"content": {media_type: binary for media_type in media_types}, "description": description}}
