"""Database models of reconciliation beyond the face (migration ``0008``): the distinguishing marks,
personal effects and primary identifier references of reports (ante-mortem) and cases (post-mortem).

Each row belongs to exactly one report or one case (a CHECK says so). Codes come from the closed
vocabularies of :mod:`facetrace.workflow.reconcile.vocabulary`; the workflow checks them. A mark's
photos are ordinary image rows (no person, no face: never in the gallery index), linked here, so
erasure and backup treat them like case photos. Primary identifiers are *references* (which lab,
which sample, which status), never genetic, dental or fingerprint data itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

import facetrace.store.accounts  # noqa: F401  (the users table must be known for the foreign keys)
from facetrace.store.models import Base, utcnow

ONE_RECORD = "(report_id IS NULL) <> (case_id IS NULL)"


class _OnRecord:
    """The columns every reconciliation row has: its record, who recorded it and when."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("reports.id", ondelete="CASCADE"), nullable=True, index=True
    )
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), nullable=True, index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Mark(_OnRecord, Base):
    """A distinguishing mark (tattoo, scar, birthmark...) with its coded body location."""

    __tablename__ = "marks"
    __table_args__ = (CheckConstraint(ONE_RECORD, name="ck_marks_one_record"),)
    type: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(30))
    side: Mapped[str | None] = mapped_column(String(10), nullable=True)
    aspect: Mapped[str | None] = mapped_column(String(10), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)


class MarkPhoto(Base):
    """Links a stored image (no person, no face) to the mark it shows."""

    __tablename__ = "mark_photos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mark_id: Mapped[int] = mapped_column(ForeignKey("marks.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), unique=True)
    added_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Effect(_OnRecord, Base):
    """A piece of clothing or a personal effect: kind, colour, inscription and description."""

    __tablename__ = "effects"
    __table_args__ = (CheckConstraint(ONE_RECORD, name="ck_effects_one_record"),)
    kind: Mapped[str] = mapped_column(String(20))
    colour: Mapped[str] = mapped_column(String(100), default="")
    inscription: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")


class PrimaryReference(_OnRecord, Base):
    """Where a primary identifier is held: a DNA reference sample, dental records, fingerprints."""

    __tablename__ = "primary_references"
    __table_args__ = (CheckConstraint(ONE_RECORD, name="ck_primary_references_one_record"),)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    holder: Mapped[str] = mapped_column(String(300), default="")  # the lab, dentist, police service...
    sample_reference: Mapped[str] = mapped_column(String(300), default="")  # their sample or file id
    note: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
