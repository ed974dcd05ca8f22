"""Reading the enrolled persons: listings, one person's images and faces, and the persons of candidates."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import func, select

from facetrace.errors import NotFoundError
from facetrace.gallery.results import PersonRef
from facetrace.store.db import Database
from facetrace.store.models import Face, Person
from facetrace.store.name_search import match_view, ranked_matches, rows_in_order


def list_persons(
    db: Database,
    *,
    offset: int = 0,
    limit: int = 100,
    query: str | None = None,
    source: str | None = None,
    legal_basis: str | None = None,
) -> list[dict[str, Any]]:
    """Return persons ordered by external id, with their face counts; ``source`` and ``legal_basis``
    match exactly. ``query`` is a name in any script or spelling, or a part of the name or external
    id: persons are then ranked as :func:`facetrace.store.names.rank_keys` says (exact names, then
    containing, then close spellings; by external id within each), each with ``name_match``."""
    filters = []
    if source is not None:
        filters.append(Person.source == source)
    if legal_basis is not None:
        filters.append(Person.legal_basis == legal_basis)
    with db.sessions() as session:
        text = (query or "").strip()
        if not text:
            stmt = (
                select(Person, func.count(Face.id))
                .outerjoin(Face, Face.person_id == Person.id)
                .where(*filters)
                .group_by(Person.id)
                .order_by(Person.external_id)
            )
            rows = session.execute(stmt.offset(offset).limit(limit)).all()
            return [{**person_dict(p), "faces": int(n)} for p, n in rows]
        like = f"%{text}%"
        candidates = (
            select(Person.id, Person.name_key, Person.name.ilike(like) | Person.external_id.ilike(like))
            .where(*filters)
            .order_by(Person.external_id)
        )
        matches = ranked_matches(session, candidates, text)[max(0, offset) : max(0, offset) + limit]
        counts = dict(
            session.execute(
                select(Face.person_id, func.count(Face.id))
                .where(Face.person_id.in_([m.row_id for m in matches]))
                .group_by(Face.person_id)
            ).all()
        )
        persons = rows_in_order(session, Person, [m.row_id for m in matches])
        return [
            {**person_dict(p), "faces": int(counts.get(p.id, 0)), "name_match": match_view(m)}
            for p, m in zip(persons, matches, strict=True)
        ]


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
