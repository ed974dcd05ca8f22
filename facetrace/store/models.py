"""Database models. The database is the source of truth; vector indexes are rebuilt from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from facetrace.store.crypto import EncryptedBytes, EncryptedJSON, EncryptedText
from facetrace.store.names import name_key
from facetrace.vision.pipeline import Face as DetectedFace


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Meta(Base):
    """Key/value facts about the store, e.g. ``gallery_version`` (bumped on every face change)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Person(Base):
    """A gallery identity with its provenance. Workflow reports point to one person."""

    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(300))
    # The name's search key (facetrace.store.names), set with the name (migration 0006 filled old rows).
    name_key: Mapped[str] = mapped_column(Text, default="", server_default="", index=True)
    # Free metadata, including contact details from import manifests: encrypted when a key is set.
    attributes: Mapped[dict[str, Any]] = mapped_column("metadata", EncryptedJSON("persons.metadata"), default=dict)
    source: Mapped[str] = mapped_column(String(300))
    legal_basis: Mapped[str] = mapped_column(String(300))
    collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # After this moment the record must be erased (`facetrace retention apply`); None: no limit set.
    retain_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    images: Mapped[list[Image]] = relationship(
        back_populates="person", cascade="all, delete-orphan", order_by="Image.id"
    )

    @validates("name")
    def _set_name_key(self, _attribute: str, value: str) -> str:
        self.name_key = name_key(value or "")
        return value


class Image(Base):
    """One stored image file (content-addressed in the media folder) of a person or a case."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("person_id", "sha256", name="uq_image_person_sha"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), index=True, nullable=True
    )
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    media_path: Mapped[str] = mapped_column(String(300))
    # The uploaded file's name often names the person: encrypted when a key is set (TEXT on PostgreSQL, 0005).
    original_name: Mapped[str] = mapped_column(EncryptedText("images.original_name", 500))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    person: Mapped[Person | None] = relationship(back_populates="images")
    faces: Mapped[list[Face]] = relationship(back_populates="image", cascade="all, delete-orphan")


class Face(Base):
    """One face in one image: box, landmarks, quality, and its template from one model."""

    __tablename__ = "faces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), index=True, nullable=True
    )
    box: Mapped[list[int]] = mapped_column(JSON)
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    detector: Mapped[str] = mapped_column(String(20))
    quality: Mapped[float] = mapped_column(Float)
    quality_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    embedding: Mapped[bytes] = mapped_column(EncryptedBytes("faces.embedding"))  # float32 template
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    image: Mapped[Image] = relationship(back_populates="faces")

    def vector(self) -> np.ndarray:
        """Return the embedding as a float32 vector."""
        return np.frombuffer(self.embedding, dtype=np.float32)

    @classmethod
    def from_detection(cls, face: DetectedFace, *, image_id: int, person_id: int | None) -> Face:
        """Return the row that stores one analysed face (``person_id`` None for a case's face)."""
        return cls(
            image_id=image_id,
            person_id=person_id,
            box=list(face.box),
            landmarks=[list(p) for p in face.landmarks],
            detector=face.detector,
            quality=face.quality.score,
            quality_detail=face.quality.as_dict(),
            model_id=face.model_id,
            embedding=np.asarray(face.embedding, dtype=np.float32).tobytes(),
        )
