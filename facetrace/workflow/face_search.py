"""Searching stored faces (of a case, or of a report's gallery person) in the gallery.

Every score of continuous matching comes from the gallery's own search of templates
(:meth:`Gallery.search_templates`, with its fusion and score normalisation); :func:`search_stored_faces`
is the one place that calls it and reads its typed answer into :class:`FaceHit` values.
"""

from __future__ import annotations

from dataclasses import dataclass

from facetrace.gallery import Gallery, Probe
from facetrace.store.models import Face


@dataclass(frozen=True)
class FaceHit:
    """One candidate of one searched face: the gallery person, its best face and the score."""

    person_id: int
    face_id: int
    score: float


@dataclass(frozen=True)
class StoredFacesSearch:
    """The candidates of each searched face (in the order given) and the gallery's size then."""

    gallery_size: int
    candidates: list[list[FaceHit]]


def search_stored_faces(gallery: Gallery, rows: list[Face], top_k: int) -> StoredFacesSearch:
    """Search the gallery for each stored face row; return up to ``top_k`` candidates per face.

    Raises:
        ConfigError: the configured vector database cannot be opened.
    """
    found = gallery.search_templates([Probe(row.vector(), float(row.quality)) for row in rows], top_k=top_k)
    candidates = [
        [FaceHit(c.person.id, c.face_id, c.score) for c in decision.candidates] for decision in found.decisions
    ]
    return StoredFacesSearch(max(1, found.policy.persons), candidates)
