"""Shared pieces of the workflow layer: roles, input checks, errors and JSON views of records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from facetrace.errors import FacetraceError
from facetrace.store.workflow_models import (
    Case,
    Contact,
    DuplicateFlag,
    Evidence,
    Identification,
    Lead,
    Notification,
    NotificationAttempt,
    Report,
    Review,
)
from facetrace.vision.pipeline import Face as DetectedFace

# Who may do what. Roles come from facetrace.store.accounts.ROLES.
READ_ROLES = ("intake", "examiner", "reviewer")  # the case files; admins and auditors do not read them
RECORD_ROLES = ("intake", "examiner")  # create and edit reports, cases, contacts, photos
MATCH_ROLES = ("intake", "examiner", "reviewer")  # re-run continuous matching
REVIEW_ROLES = ("examiner", "reviewer")  # review leads, record evidence, draft notifications
SECOND_CONFIRM_ROLE = "reviewer"  # the confirmation that establishes an identification
MERGE_ROLES = ("examiner", "reviewer")
WITHDRAW_ROLES = ("reviewer",)
REOPEN_ROLES = ("reviewer",)  # overturn a rejection: reopen a rejected lead
APPROVE_ROLES = ("reviewer",)
# Who may approve a notification, by the review policy setting ``notification_approvers`` (never its drafter).
APPROVER_ROLES = {"reviewer": APPROVE_ROLES, "examiner_or_reviewer": ("examiner", "reviewer")}
SEND_ROLES = ("reviewer", "admin")  # the outbox run and resolving deliveries of unknown outcome
ERASE_ROLES = ("intake", "examiner", "admin")  # erase a report or a case (irreversible; audited)

OPEN_CASE_STATUSES = ("open", "under_review")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
DOB_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
AUTO_REFERENCE_RE = re.compile(r"^[RC]-\d+$")
REFERENCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")


class InvalidInput(FacetraceError):
    """A request with a missing, malformed or out-of-range field."""

    code = "invalid"
    status = 422


@dataclass(frozen=True)
class PhotoInput:
    """One uploaded or local photo: its file name (kept as provenance) and its bytes; ``faces``: its
    faces, largest first, when the caller already analysed it with the gallery (None: not yet)."""

    name: str
    data: bytes
    faces: tuple[DetectedFace, ...] | None = None


def required_text(value: str | None, field: str, *, max_len: int = 10_000) -> str:
    """Return ``value`` stripped. Raises InvalidInput when it is empty or too long."""
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{field} is required")
    if len(text) > max_len:
        raise InvalidInput(f"{field} is longer than {max_len} characters")
    return text


def optional_text(value: str | None, field: str, *, max_len: int = 10_000) -> str | None:
    """Return ``value`` stripped, or None when empty. Raises InvalidInput when too long."""
    text = (value or "").strip()
    if len(text) > max_len:
        raise InvalidInput(f"{field} is longer than {max_len} characters")
    return text or None


def check_choice(value: str, choices: tuple[str, ...], field: str) -> str:
    """Return ``value`` when it is one of ``choices``. Raises InvalidInput otherwise."""
    if value not in choices:
        raise InvalidInput(f"{field} must be one of {', '.join(choices)} (got {value!r})")
    return value


def check_email(value: str | None) -> str | None:
    """Return a normalised e-mail address or None. Raises InvalidInput when malformed."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > 320 or not EMAIL_RE.match(text):
        raise InvalidInput(f"{text!r} is not an e-mail address")
    return text


def check_language(value: str | None) -> str:
    """Return a language tag such as ``en``, ``uk`` or ``pt-BR``. Raises InvalidInput."""
    text = (value or "en").strip()
    if not LANGUAGE_RE.match(text):
        raise InvalidInput(f"language {text!r} is not a language code such as en, uk or ru")
    return text.lower() if "-" not in text else text.split("-")[0].lower() + "-" + text.split("-")[1]


def check_date_of_birth(value: str | None) -> str | None:
    """Return a (possibly partial) date YYYY, YYYY-MM or YYYY-MM-DD, or None. Raises InvalidInput."""
    text = (value or "").strip()
    if not text:
        return None
    if not DOB_RE.match(text):
        raise InvalidInput(f"date of birth {text!r} must be YYYY, YYYY-MM or YYYY-MM-DD")
    parts = [int(p) for p in text.split("-")]
    try:
        date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        raise InvalidInput(f"date of birth {text!r} is not a real date") from None
    if parts[0] > date.today().year or text > date.today().isoformat()[: len(text)]:
        raise InvalidInput(f"date of birth {text!r} is in the future")
    return text


def parse_date(value: str | date | None, field: str) -> date | None:
    """Return a date from ISO ``YYYY-MM-DD`` text (or a date). Raises InvalidInput."""
    if value is None or isinstance(value, date):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{field} {text!r} is not a date (YYYY-MM-DD)") from None


def parse_datetime(value: str | datetime | None, field: str) -> datetime | None:
    """Return an aware datetime from ISO text (a bare date or naive time is taken as UTC). Raises InvalidInput."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{field} {text!r} is not a date or date-time (ISO 8601)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check_reference(value: str | None, kind: str) -> str | None:
    """Return an operator-chosen reference, or None to have one assigned. Raises InvalidInput."""
    text = (value or "").strip()
    if not text:
        return None
    if not REFERENCE_RE.match(text):
        raise InvalidInput(f"{kind} reference {text!r}: use letters, digits and . _ / - (at most 64)")
    if AUTO_REFERENCE_RE.match(text):
        raise InvalidInput(f"{kind} reference {text!r}: R-NNN and C-NNN are assigned automatically")
    return text


def iso(value: datetime | date | None) -> str | None:
    """Return ISO text for a date or datetime (UTC for aware datetimes), or None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite returns naive datetimes; they were stored as UTC
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def as_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as an aware UTC datetime (SQLite hands back naive ones)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- JSON views ---------------------------------------------------------------------------------
def contact_view(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "report_id": contact.report_id,
        "name": contact.name,
        "relation": contact.relation,
        "email": contact.email,
        "phone": contact.phone,
        "language": contact.language,
        "created_at": iso(contact.created_at),
    }


def report_view(report: Report) -> dict[str, Any]:
    return {
        "id": report.id,
        "reference": report.reference,
        "name": report.name,
        "date_of_birth": report.date_of_birth,
        "description": report.description,
        "descriptors": dict(report.descriptors or {}),
        "status": report.status,
        "person_id": report.person_id,
        "merged_into_id": report.merged_into_id,
        "retain_until": iso(report.retain_until),
        "provenance": {
            "reported_by": report.reported_by,
            "source": report.source,
            "legal_basis": report.legal_basis,
            "consent": report.consent,
            "consent_date": iso(report.consent_date),
        },
        "created_at": iso(report.created_at),
        "updated_at": iso(report.updated_at),
    }


def case_view(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "reference": case.reference,
        "condition": case.condition,
        "kind": case.kind,
        "parent_case_id": case.parent_case_id,
        "descriptors": dict(case.descriptors or {}),
        "found_at": iso(case.found_at),
        "found_place": case.found_place,
        "holding_organisation": case.holding_organisation,
        "description": case.description,
        "status": case.status,
        "retain_until": iso(case.retain_until),
        "created_at": iso(case.created_at),
        "updated_at": iso(case.updated_at),
    }


def lead_view(lead: Lead) -> dict[str, Any]:
    faceless = lead.basis == "marks"
    return {
        "basis": lead.basis,
        "adjusted_fpir": lead.adjusted_fpir,
        "secondary": lead.secondary,
        "reopened_at": iso(lead.reopened_at),
        "reopen_rationale": lead.reopen_rationale,
        "id": lead.id,
        "case_id": lead.case_id,
        "report_id": lead.report_id,
        "status": lead.status,
        "score": round(lead.score, 4),
        "fmr": lead.fmr,
        "fpir": lead.fpir,
        "threshold": round(lead.threshold, 4),
        "review_fpir": lead.review_fpir,
        "gallery_size": lead.gallery_size,
        "model_id": lead.model_id,
        "case_face": None
        if faceless
        else {
            "face_id": lead.case_face_id,
            "image_id": lead.case_image_id,
            "box": lead.case_box,
            "quality": round(lead.case_quality, 1),
        },
        "report_face": None
        if faceless
        else {
            "face_id": lead.report_face_id,
            "image_id": lead.report_image_id,
            "box": lead.report_box,
            "quality": round(lead.report_quality, 1),
        },
        "flag": lead.flag,
        "created_at": iso(lead.created_at),
        "updated_at": iso(lead.updated_at),
    }


def review_view(review: Review, username: str | None = None) -> dict[str, Any]:
    return {
        "id": review.id,
        "lead_id": review.lead_id,
        "reviewer_id": review.reviewer_id,
        "reviewer": username,
        "decision": review.decision,
        "rationale": review.rationale,
        "created_at": iso(review.created_at),
    }


def evidence_view(item: Evidence, username: str | None = None) -> dict[str, Any]:
    return {
        "id": item.id,
        "lead_id": item.lead_id,
        "kind": item.kind,
        "description": item.description,
        "reference": item.reference,
        "recorded_by_id": item.recorded_by_id,
        "recorded_by": username,
        "created_at": iso(item.created_at),
    }


def identification_view(ident: Identification) -> dict[str, Any]:
    return {
        "id": ident.id,
        "lead_id": ident.lead_id,
        "case_id": ident.case_id,
        "report_id": ident.report_id,
        "status": ident.status,
        "first_confirmed_by_id": ident.first_confirmed_by_id,
        "second_confirmed_by_id": ident.second_confirmed_by_id,
        "evidence_count": ident.evidence_count,
        "confirmed_at": iso(ident.confirmed_at),
        "withdrawn_by_id": ident.withdrawn_by_id,
        "withdrawn_at": iso(ident.withdrawn_at),
        "withdrawal_reason": ident.withdrawal_reason,
        "level": ident.level,
        "level_basis": ident.level_basis,
        "level_confirmed_at": iso(ident.level_confirmed_at),
    }


# Evidence kinds that are primary identifiers (INTERPOL DVI): a result of one makes an
# identification confirmed rather than preliminary.
PRIMARY_EVIDENCE = ("dna", "dental", "fingerprints")


def may_notify(level: str, notify_level: str) -> bool:
    """Whether an identification of ``level`` may notify a family under the policy ``notify_level``."""
    return level == "confirmed" or notify_level == "preliminary"


def duplicate_view(flag: DuplicateFlag) -> dict[str, Any]:
    return {
        "id": flag.id,
        "report_id": flag.report_id,
        "other_report_id": flag.other_report_id,
        "score": round(flag.score, 4),
        "fpir": flag.fpir,
        "status": flag.status,
        "resolved_by_id": flag.resolved_by_id,
        "resolved_at": iso(flag.resolved_at),
        "rationale": flag.rationale,
        "created_at": iso(flag.created_at),
    }


def notification_view(n: Notification, *, with_body: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": n.id,
        "identification_id": n.identification_id,
        "contact_id": n.contact_id,
        "kind": n.kind,
        "corrects_id": n.corrects_id,
        "status": n.status,
        "language": n.language,
        "recipient": n.recipient,
        "subject": n.subject,
        "message_id": n.message_id,
        "attachments": list(n.attachments or []),
        "drafted_by_id": n.drafted_by_id,
        "drafted_at": iso(n.drafted_at),
        "approved_by_id": n.approved_by_id,
        "approved_at": iso(n.approved_at),
        "attempts": n.attempts,
        "sending_since": iso(n.sending_since),
        "sent_at": iso(n.sent_at),
        "outcome": n.outcome,
        "last_error": n.last_error,
        "flag": n.flag,
        "edited_at": iso(n.edited_at),
    }
    if with_body:
        out["body"] = n.body
        out["body_html"] = n.body_html
    return out


def attempt_view(a: NotificationAttempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at),
        "outcome": a.outcome,
        "smtp_code": a.smtp_code,
        "detail": a.detail,
    }
