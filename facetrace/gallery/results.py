"""What the gallery answers: typed, immutable results of searches, decisions and comparisons.

The gallery and its callers pass these objects; JSON exists only at the edges (API, command line,
stored search results), through each object's ``to_dict()``, which writes exactly the keys, order
and rounding that the API has always returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facetrace.vision.pipeline import Face as DetectedFace


@dataclass(frozen=True, eq=False)
class Probe:
    """A template to search for and the quality of the face (or best face of a video track) it came from."""

    embedding: np.ndarray
    quality: float


@dataclass(frozen=True)
class PersonRef:
    """The enrolled person a candidate points to."""

    id: int
    external_id: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"id", "external_id", "name"}``."""
        return {"id": self.id, "external_id": self.external_id, "name": self.name}


@dataclass(frozen=True)
class Candidate:
    """One ranked person found for a probe, with its calibrated error rates and the decision's reason.

    ``score`` is the normalised score that decisions use, ``similarity`` the raw cosine.
    """

    rank: int
    person: PersonRef
    face_id: int
    score: float
    similarity: float
    fmr: float
    fpir: float
    fpir_extrapolated: bool
    match: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the candidate as the API writes it (scores rounded to 4 decimals)."""
        return {
            "rank": self.rank,
            "person": self.person.to_dict(),
            "face_id": self.face_id,
            "score": round(self.score, 4),
            "similarity": round(self.similarity, 4),
            "fmr": self.fmr,
            "fpir": self.fpir,
            "fpir_extrapolated": self.fpir_extrapolated,
            "match": self.match,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Decision:
    """The decision for one probe: whether its quality allows a match, its candidates, and the
    matched person's external id (None: no match)."""

    quality_ok: bool
    candidates: tuple[Candidate, ...]
    match: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"quality_ok", "candidates", "match"}``."""
        return {
            "quality_ok": self.quality_ok,
            "candidates": [c.to_dict() for c in self.candidates],
            "match": self.match,
        }


@dataclass(frozen=True)
class SearchPolicy:
    """What every probe of one search is decided against: the gallery's size and model, the target
    FPIR and the score threshold it gives for that size."""

    persons: int
    model_id: str
    target_fpir: float
    threshold: float
    calibrated: bool
    min_quality: float

    def to_dict(self) -> dict[str, Any]:
        """Return the ``gallery`` and ``policy`` parts of a search result (with the threshold explained)."""
        return {
            "gallery": {"persons": self.persons, "model_id": self.model_id},
            "policy": {
                "target_fpir": self.target_fpir,
                "threshold": round(self.threshold, 4),
                "calibrated": self.calibrated,
                "min_quality": self.min_quality,
                "explanation": (
                    f"a candidate is a match when its score is at least {self.threshold:.4f}: at that score, "
                    f"a search of this gallery of {self.persons} persons for someone not in it returns a "
                    f"candidate this strong {self.target_fpir:.2%} of the time"
                ),
            },
        }


@dataclass(frozen=True)
class TemplateSearch:
    """The answer of a search by templates: the policy and one decision per probe, in probe order."""

    policy: SearchPolicy
    decisions: tuple[Decision, ...]


@dataclass(frozen=True)
class FaceResult:
    """One detected face of a searched image and its decision."""

    face: DetectedFace
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        """Return the face's description followed by ``quality_ok``, ``candidates`` and ``match``."""
        return {**self.face.as_dict(), **self.decision.to_dict()}


@dataclass(frozen=True)
class SearchResult:
    """The search of an image's faces (``image``: the image's name; None for faces searched directly)."""

    policy: SearchPolicy
    faces: tuple[FaceResult, ...]
    image: str | None = None

    @property
    def matches(self) -> list[str]:
        """Return the external ids of the persons matched, one per matched face."""
        return [f.decision.match for f in self.faces if f.decision.match]

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"image"?, "gallery", "policy", "faces"}`` as the API writes it."""
        head: dict[str, Any] = {} if self.image is None else {"image": self.image}
        return {**head, **self.policy.to_dict(), "faces": [f.to_dict() for f in self.faces]}


@dataclass(frozen=True)
class Comparison:
    """A 1:1 verification of the largest face of two images."""

    score: float
    similarity: float
    fmr: float
    threshold: float
    target_fmr: float
    match: bool
    calibrated: bool
    faces: tuple[DetectedFace, DetectedFace]

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as the API writes it (scores rounded to 4 decimals)."""
        return {
            "score": round(self.score, 4),
            "similarity": round(self.similarity, 4),
            "fmr": self.fmr,
            "threshold": round(self.threshold, 4),
            "target_fmr": self.target_fmr,
            "match": self.match,
            "calibrated": self.calibrated,
            "faces": [f.as_dict() for f in self.faces],
        }
