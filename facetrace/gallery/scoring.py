"""From face hits to ranked persons, and the score that decisions are made on.

Fusion rule: a person's score is the best score of any of their reference faces ("best face").

Score: cosine similarity, then **symmetric cohort normalisation**. Some faces resemble many
people (a blurry probe, a common appearance); their raw similarity to everyone is high, and a
fixed threshold on it produces false matches. So each comparison is taken relative to how
similar each side is to a fixed *cohort* of other people's faces:

    score = cos(p, g) - 1/2 * mean_top10 cos(p, cohort) - 1/2 * mean_top10 cos(g, cohort)

A cohort face (near-)identical to p or g (cosine >= 0.995: the same photo) is left out.

The cohort is fixed and ships with the model (2,000 faces of single-image LFW identities, not
those of the committed test set), never drawn from the operator's gallery: so a score depends only
on the two faces compared, not on the gallery's size or content, and one calibration FMR(s) holds
for every gallery. On faces-dev this cut FNIR at FPIR 0.01 from 0.49 (cosine) to about 0.33 at
equal rank-1; docs/accuracy.md also gives the figure measured with no overlap between cohort and
evaluation identities.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

TOP_K = 10
SAME_IMAGE = 0.995
COHORT_FILE = "cohort_background.npy"
COHORT_MODEL = "dlib-resnet-v1+flip+68"


@dataclass(frozen=True)
class PersonHit:
    person_id: int
    score: float  # normalised score (what decisions use)
    raw: float  # cosine similarity
    face_id: int


@cache
def default_cohort(model_id: str) -> np.ndarray:
    """Return the cohort shipped for ``model_id`` (an empty array when none ships)."""
    if model_id != COHORT_MODEL:
        return np.zeros((0, 128), np.float32)
    with resources.files("facetrace.gallery").joinpath(COHORT_FILE).open("rb") as handle:
        return np.load(handle).astype(np.float32)


class CohortScorer:
    """Normalises raw cosine scores against a cohort (see the module docstring)."""

    def __init__(self, vectors: np.ndarray, *, k: int = TOP_K) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, np.shape(vectors)[-1])
        self.k = min(k, len(self.vectors) - 1) if len(self.vectors) > 1 else 0

    @classmethod
    def for_model(cls, model_id: str) -> CohortScorer:
        return cls(default_cohort(model_id))

    @property
    def active(self) -> bool:
        return self.k > 0

    def mu(self, faces: np.ndarray) -> np.ndarray:
        """Return, per face (rows), the mean of its top-k cosine scores with the cohort."""
        sims = np.asarray(faces, dtype=np.float32).reshape(-1, self.vectors.shape[1]) @ self.vectors.T
        sims[sims >= SAME_IMAGE] = -np.inf
        return -np.partition(-sims, self.k - 1, axis=1)[:, : self.k].mean(axis=1)

    def scores(self, probes: np.ndarray, gallery: np.ndarray, mu_gallery: np.ndarray | None = None) -> np.ndarray:
        """Return the (probes x gallery) matrix of normalised scores (raw cosine when inactive)."""
        raw = np.asarray(probes, dtype=np.float32) @ np.asarray(gallery, dtype=np.float32).T
        if not self.active:
            return raw.astype(np.float64)
        mu_gallery = self.mu(gallery) if mu_gallery is None else mu_gallery
        return raw - 0.5 * self.mu(probes)[:, None] - 0.5 * mu_gallery[None, :]


def rank_persons(
    probe: np.ndarray,
    scores: np.ndarray,
    face_ids: np.ndarray,
    person_of: dict[int, int],
    vectors_of: dict[int, np.ndarray] | None,
    scorer: CohortScorer | None,
    top_k: int,
) -> list[PersonHit]:
    """Return up to ``top_k`` persons, best first, from one probe's face hits.

    ``scores``/``face_ids`` are one row of an index search (id -1 = empty slot); ``person_of`` maps
    face id to person id; with an active ``scorer`` (and the candidate vectors), scores are normalised.
    """
    pairs = zip(scores.tolist(), face_ids.tolist(), strict=True)
    keep = [(float(s), int(f)) for s, f in pairs if f >= 0 and int(f) in person_of]
    if not keep:
        return []
    raw = np.array([s for s, _ in keep])
    ids = np.array([f for _, f in keep], dtype=np.int64)
    normalised = raw
    if scorer is not None and scorer.active and vectors_of is not None:
        candidates = np.vstack([vectors_of[int(i)] for i in ids])
        normalised = raw - 0.5 * scorer.mu(probe)[0] - 0.5 * scorer.mu(candidates)
    best: dict[int, PersonHit] = {}
    for order in np.argsort(-normalised, kind="stable"):
        face_id = int(ids[order])
        person = person_of[face_id]
        if person not in best:
            best[person] = PersonHit(person, float(normalised[order]), float(raw[order]), face_id)
            if len(best) >= top_k:
                break
    return list(best.values())
