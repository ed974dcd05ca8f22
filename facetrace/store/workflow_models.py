"""Database models of the identification workflow: reports, cases, leads, reviews, evidence,
identifications and notifications (migration ``0003``).

Design notes:

- A report owns one gallery :class:`~facetrace.store.models.Person` (``report.person_id``): its
  reference photos are ordinary gallery images and faces, so a gallery search returns persons
  that map back to reports.
- A case's photos are ordinary :class:`~facetrace.store.models.Image` / ``Face`` rows with
  ``person_id`` NULL (so the gallery index never holds them), linked to the case by the
  ``case_images`` table. No column of the gallery tables changes.
- The rules that must hold even against a buggy or concurrent caller are also database
  constraints: one lead per (case, report); two *different* users confirm an identification;
  the approver of a notification is not its drafter; at most one confirmed identification per
  case and per report (partial unique indexes); one live notification of a kind per contact and
  identification; one Message-ID per notification.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

import facetrace.store.accounts  # noqa: F401  (the users table must be known for the foreign keys)
from facetrace.store.crypto import EncryptedText
from facetrace.store.models import Base, utcnow
from facetrace.store.names import name_key

REPORT_STATUSES = ("missing", "located_alive", "identified_deceased", "closed", "merged")
CASE_STATUSES = ("open", "under_review", "identified", "closed")
CONDITIONS = ("deceased", "alive")
LEAD_STATUSES = ("open", "under_review", "rejected", "identified", "withdrawn")
# What produced a lead: the face alone; the face with secondary agreement (the face alone below the
# threshold); marks and descriptors without any face (never a face match: flagged as such).
LEAD_BASES = ("face", "face_and_secondary", "marks")
DECISIONS = ("confirm", "reject", "inconclusive")
EVIDENCE_KINDS = ("dna", "fingerprints", "dental", "documents", "personal_effects", "witness", "other")
IDENTIFICATION_STATUSES = ("confirmed", "withdrawn")  # confirmed: standing (whatever its level)
IDENTIFICATION_LEVELS = ("preliminary", "confirmed")
CASE_KINDS = ("deceased", "living", "detained", "body_part")
DUPLICATE_STATUSES = ("open", "merged", "dismissed")
NOTIFICATION_KINDS = ("identification", "correction")
# draft -> approved -> sending -> sent | failed (retried) | refused | unknown (needs an operator);
# draft/approved/failed -> cancelled (withdrawn identification, or by a reviewer).
NOTIFICATION_STATUSES = ("draft", "approved", "sending", "sent", "failed", "refused", "unknown", "cancelled")
DELIVERY_OUTCOMES = ("accepted", "refused", "error", "unknown")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Report(Base):
    """A missing-person report (ante-mortem record): who is sought, provenance, contacts."""

    __tablename__ = "reports"
    __table_args__ = (CheckConstraint(_in("status", REPORT_STATUSES), name="ck_reports_status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="SET NULL"), unique=True, nullable=True
    )
    name: Mapped[str] = mapped_column(String(300))
    # The name's search key (facetrace.store.names), set with the name (migration 0006 filled old rows).
    name_key: Mapped[str] = mapped_column(Text, default="", server_default="", index=True)
    date_of_birth: Mapped[str | None] = mapped_column(String(10), nullable=True)  # YYYY, YYYY-MM or YYYY-MM-DD
    description: Mapped[str] = mapped_column(Text, default="")
    # Structured descriptors (facetrace.workflow.reconcile.facts.Descriptors); {} : all unknown.
    descriptors: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    status: Mapped[str] = mapped_column(String(30), default="missing", index=True)
    # Provenance: who reported, from which source, on which legal basis, with which consent.
    reported_by: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(300))
    legal_basis: Mapped[str] = mapped_column(String(300))
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    # After this moment the report (its person, photos and contacts) must be erased; None: no limit set.
    retain_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    contacts: Mapped[list[Contact]] = relationship(back_populates="report", order_by="Contact.id")

    @validates("name")
    def _set_name_key(self, _attribute: str, value: str) -> str:
        self.name_key = name_key(value or "")
        return value


class Contact(Base):
    """A family member or representative registered on a report: the only possible recipient."""

    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    # Contact details are encrypted when a key is set (TEXT on PostgreSQL since migration 0005).
    name: Mapped[str] = mapped_column(EncryptedText("contacts.name", 300))
    relation: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(EncryptedText("contacts.email", 320), nullable=True)
    phone: Mapped[str | None] = mapped_column(EncryptedText("contacts.phone", 50), nullable=True)
    language: Mapped[str] = mapped_column(String(16), default="en")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    report: Mapped[Report] = relationship(back_populates="contacts")


class Case(Base):
    """An unidentified person (post-mortem, or alive and unable to identify themselves)."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_in("status", CASE_STATUSES), name="ck_cases_status"),
        CheckConstraint(_in("condition", CONDITIONS), name="ck_cases_condition"),
        CheckConstraint(_in("kind", CASE_KINDS), name="ck_cases_kind"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    condition: Mapped[str] = mapped_column(String(20))  # follows the kind (deceased or alive)
    kind: Mapped[str] = mapped_column(String(20), default="deceased", server_default="deceased")
    # A body part re-associated with the case of the body it belongs to (erasing that case clears it).
    parent_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    descriptors: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    found_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    found_place: Mapped[str] = mapped_column(String(500), default="")
    holding_organisation: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), default="open", index=True)
    # After this moment the case record and its photos must be erased; None: no limit set.
    retain_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class CaseImage(Base):
    """Links a stored image (``images.person_id`` NULL) and so its faces to a case."""

    __tablename__ = "case_images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    added_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Lead(Base):
    """A case-report pair whose score passed the review threshold; waits for examiners."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("case_id", "report_id", name="uq_leads_case_report"),
        CheckConstraint(_in("status", LEAD_STATUSES), name="ck_leads_status"),
        CheckConstraint(_in("basis", LEAD_BASES), name="ck_leads_basis"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    score: Mapped[float] = mapped_column(Float)
    fmr: Mapped[float] = mapped_column(Float)
    fpir: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    review_fpir: Mapped[float] = mapped_column(Float)
    gallery_size: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(100))
    # The best pair of faces behind the score, with their boxes (crops) and quality.
    case_face_id: Mapped[int | None] = mapped_column(ForeignKey("faces.id", ondelete="SET NULL"), nullable=True)
    report_face_id: Mapped[int | None] = mapped_column(ForeignKey("faces.id", ondelete="SET NULL"), nullable=True)
    case_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), nullable=True)
    report_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), nullable=True)
    case_box: Mapped[list[int]] = mapped_column(JSON)
    report_box: Mapped[list[int]] = mapped_column(JSON)
    case_quality: Mapped[float] = mapped_column(Float)
    report_quality: Mapped[float] = mapped_column(Float)
    flag: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Beyond the face (migration 0008). A "marks" lead has no face pair: its face columns hold
    # score 0, FMR 1, empty boxes and quality 0, and every view shows its face as absent.
    basis: Mapped[str] = mapped_column(String(20), default="face", server_default="face")
    secondary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # Agreement.to_dict()
    adjusted_fpir: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Reopened after a rejection: reviews up to this one no longer stand.
    reopened_after_review_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reopened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reopen_rationale: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Review(Base):
    """One examiner's decision on a lead. Append-only: a user's latest review is their position."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="ck_reviews_decision"),
        CheckConstraint("length(rationale) > 0", name="ck_reviews_rationale"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    decision: Mapped[str] = mapped_column(String(20))
    rationale: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Evidence(Base):
    """Corroboration of a lead beyond the face, with who recorded it."""

    __tablename__ = "evidence"
    __table_args__ = (CheckConstraint(_in("kind", EVIDENCE_KINDS), name="ck_evidence_kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(300), nullable=True)  # e.g. a lab report number
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Identification(Base):
    """A lead confirmed by two different users with the evidence policy met. Can be withdrawn."""

    __tablename__ = "identifications"
    __table_args__ = (
        CheckConstraint(_in("status", IDENTIFICATION_STATUSES), name="ck_identifications_status"),
        CheckConstraint(_in("level", IDENTIFICATION_LEVELS), name="ck_identifications_level"),
        # The two-person rule, in the database too.
        CheckConstraint("first_confirmed_by_id <> second_confirmed_by_id", name="ck_identifications_two_persons"),
        # One confirmed identification per case and per report; withdrawn ones do not count.
        Index(
            "uq_identifications_case_confirmed",
            "case_id",
            unique=True,
            sqlite_where=text("status = 'confirmed'"),
            postgresql_where=text("status = 'confirmed'"),
        ),
        Index(
            "uq_identifications_report_confirmed",
            "report_id",
            unique=True,
            sqlite_where=text("status = 'confirmed'"),
            postgresql_where=text("status = 'confirmed'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="confirmed")
    first_confirmed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    second_confirmed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    first_review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"))
    second_review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"))
    evidence_count: Mapped[int] = mapped_column(Integer)
    confirmed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    withdrawn_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    withdrawal_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Preliminary (two examiners and secondary evidence) or confirmed (a primary identifier result, or
    # an admin's recorded exception). Identifications from before migration 0008 stay confirmed.
    level: Mapped[str] = mapped_column(String(20), default="preliminary", server_default="confirmed")
    level_basis: Mapped[str | None] = mapped_column(Text, nullable=True)  # what made it confirmed
    level_confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    level_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DuplicateFlag(Base):
    """Two reports whose photos score above the review threshold: possibly one person twice."""

    __tablename__ = "duplicate_flags"
    __table_args__ = (
        UniqueConstraint("report_id", "other_report_id", name="uq_duplicate_flags_pair"),
        CheckConstraint("report_id < other_report_id", name="ck_duplicate_flags_order"),
        CheckConstraint(_in("status", DUPLICATE_STATUSES), name="ck_duplicate_flags_status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    other_report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    fpir: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="open")
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rationale: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Notification(Base):
    """One message to one contact about an identification (or its correction): an outbox row."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(_in("status", NOTIFICATION_STATUSES), name="ck_notifications_status"),
        CheckConstraint(_in("kind", NOTIFICATION_KINDS), name="ck_notifications_kind"),
        CheckConstraint(
            "approved_by_id IS NULL OR approved_by_id <> drafted_by_id", name="ck_notifications_two_persons"
        ),
        Index(
            "uq_notifications_live",
            "identification_id",
            "contact_id",
            "kind",
            unique=True,
            sqlite_where=text("status <> 'cancelled'"),
            postgresql_where=text("status <> 'cancelled'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identification_id: Mapped[int] = mapped_column(ForeignKey("identifications.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    language: Mapped[str] = mapped_column(String(16))
    # What is said to whom is encrypted when a key is set (TEXT on PostgreSQL since migration 0005).
    recipient: Mapped[str] = mapped_column(EncryptedText("notifications.recipient", 320))
    subject: Mapped[str] = mapped_column(EncryptedText("notifications.subject", 500))
    body: Mapped[str] = mapped_column(EncryptedText("notifications.body"))
    body_html: Mapped[str | None] = mapped_column(EncryptedText("notifications.body_html"), nullable=True)
    message_id: Mapped[str] = mapped_column(String(300), unique=True)
    attachments: Mapped[list[int]] = mapped_column(JSON, default=list)  # image ids an approver included
    drafted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    drafted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    flag: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When its drafter (the only one who may) edited the text by hand before approval; None: as rendered.
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class NotificationAttempt(Base):
    """One delivery attempt: started before the SMTP dialogue, finished after it (or never)."""

    __tablename__ = "notification_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    smtp_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
