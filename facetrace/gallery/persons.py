"""Reading the enrolled persons: listings, one person's images and faces, and the persons of candidates."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import func, select

from facetrace.errors import NotFoundError
from facetrace.gallery.results import PersonRef
from facetrace.store.db import Database
from facetrace.store.models import Face, Person


def list_persons(
    db: Database,
    *,
    offset: int = 0,
    limit: int = 100,
    query: str | None = None,
    source: str | None = None,
    legal_basis: str | None = None,
) -> list[dict[str, Any]]:
    """Return persons ordered by external id, with their face counts; ``query`` matches a part of
    the name or external id, ``source`` and ``legal_basis`` match exactly."""
    with db.sessions() as session:
        stmt = (
            select(Person, func.count(Face.id))
            .outerjoin(Face, Face.person_id == Person.id)
            .group_by(Person.id)
            .order_by(Person.external_id)
        )
        if query:
            like = f"%{query}%"
            stmt = stmt.where(Person.name.ilike(like) | Person.external_id.ilike(like))
        if source is not None:
            stmt = stmt.where(Person.source == source)
        if legal_basis is not None:
            stmt = stmt.where(Person.legal_basis == legal_basis)
        rows = session.execute(stmt.offset(offset).limit(limit)).all()
        return [{**person_dict(p), "faces": int(n)} for p, n in rows]


def get_person(db: Database, external_id: str) -> dict[str, Any]:
    """Return one person with their images and faces.

    Raises:
        NotFoundError: no person with that external id.
    """
    with db.sessions() as session:
        person = session.execute(select(Person).where(Person.external_id == external_id)).scalar()
        if person is None:
            raise NotFoundError(f"no person with id {external_id!r}")
        images = []
        for image in person.images:
            images.append(
                {
                    "id": image.id,
                    "sha256": image.sha256,
                    "original_name": image.original_name,
                    "width": image.width,
                    "height": image.height,
                    "faces": [
                        {"id": f.id, "box": f.box, "quality": round(f.quality, 1), "model_id": f.model_id}
                        for f in image.faces
                    ],
                }
            )
        return {**person_dict(person), "images": images}


def person_refs(db: Database, ids: set[int]) -> dict[int, PersonRef]:
    """Return the persons with these database ids (ids not found are left out)."""
    if not ids:
        return {}
    with db.sessions() as session:
        rows = session.execute(select(Person).where(Person.id.in_(ids))).scalars()
        return {p.id: PersonRef(p.id, p.external_id, p.name) for p in rows}


def person_dict(person: Person) -> dict[str, Any]:
    """Return a person's fields and provenance, JSON-ready."""
    return {
        "id": person.id,
        "external_id": person.external_id,
        "name": person.name,
        "metadata": person.attributes,
        "source": person.source,
        "legal_basis": person.legal_basis,
        "collected_at": person.collected_at.isoformat() if person.collected_at else None,
        "retain_until": _iso_utc(person.retain_until),
    }


def _iso_utc(value: Any) -> str | None:
    """Return ISO text in UTC for an aware or (SQLite: naive, stored as UTC) datetime, or None."""
    if value is None:
        return None
    return str((value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat())
