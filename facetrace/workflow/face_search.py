"""Searching stored faces (of a case, or of a report's gallery person) in the gallery.

Every score of continuous matching comes from the gallery's own search (:meth:`Gallery.search_faces`,
with its fusion and score normalisation); :func:`search_stored_faces` is the one place that calls it
and reads its result into :class:`FaceHit` values.
"""

from __future__ import annotations

from dataclasses import dataclass

from facetrace.gallery import Gallery
from facetrace.store.models import Face
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.vision.quality import Quality


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
    """Search the gallery for each stored face row; return up to ``top_k`` candidates per face."""
    result = gallery.search_faces([_detected_face(r) for r in rows], top_k=top_k)
    candidates = [
        [FaceHit(int(c["person"]["id"]), int(c["face_id"]), float(c["score"])) for c in face["candidates"]]
        for face in result["faces"]
    ]
    return StoredFacesSearch(max(1, int(result["gallery"]["persons"])), candidates)


def _detected_face(row: Face) -> DetectedFace:
    """Rebuild a pipeline face (what :meth:`Gallery.search_faces` takes) from a stored face row."""
    q = row.quality_detail or {}
    return DetectedFace(
        box=tuple(row.box),  # type: ignore[arg-type]
        landmarks=[(float(x), float(y)) for x, y in row.landmarks],
        detector=row.detector,
        detection_score=float(q.get("detector_score", 0.0)),
        quality=Quality(
            score=float(row.quality),
            eye_distance_px=float(q.get("eye_distance_px", 0.0)),
            sharpness=float(q.get("sharpness", 0.0)),
            detector_score=float(q.get("detector_score", 0.0)),
            yaw_deg=float(q.get("yaw_deg", 0.0)),
        ),
        embedding=row.vector(),
        model_id=row.model_id,
    )
