"""From face hits to ranked persons, and the score that decisions are made on.

Fusion rule: a person's score is the best score of any of their reference faces ("best face").

Score: cosine similarity, then **symmetric cohort normalisation**. Some faces resemble many
people (a blurry probe, a common appearance); their raw similarity to everyone is high, and a
fixed threshold on it produces false matches. So each comparison is taken relative to how
similar each side is to a *cohort* of other faces:

    score = cos(p, g) - w * mean_topk cos(p, cohort) - (1 - w) * mean_topk cos(g, cohort)

with k = 10, w = 0.5, and the face itself left out of its own cohort. The cohort is a label-free
sample of the gallery: all of it up to 10,000 faces, beyond that the 10,000 faces with the smallest
hashed ids (stable as the gallery grows, so the score's distribution stops drifting with gallery size
once the gallery is larger than the cohort). Galleries smaller than 200 faces are padded with a
background cohort of 200 LFW distractor faces shipped for the default model. On faces-dev this cut
FNIR at FPIR 0.01 from 0.51 (cosine) to 0.41 at equal rank-1 (docs/accuracy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

COHORT_SIZE = 10000
COHORT_MIN = 200
TOP_K = 10
PROBE_WEIGHT = 0.5
BACKGROUND_COHORT = "cohort_background.npy"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class PersonHit:
    person_id: int
    score: float  # normalised score (what decisions use)
    raw: float  # cosine similarity
    face_id: int


def cohort_ids(face_ids: np.ndarray, size: int = COHORT_SIZE) -> np.ndarray:
    """Return the ids of the cohort: the ``size`` faces whose hashed ids are smallest."""
    face_ids = np.asarray(face_ids, dtype=np.int64)
    if len(face_ids) <= size:
        return np.sort(face_ids)
    with np.errstate(over="ignore"):
        keys = face_ids.astype(np.uint64) * _GOLDEN
    return np.sort(face_ids[np.argpartition(keys, size)[:size]])


def background_cohort(model_id: str) -> np.ndarray:
    """Return the shipped background cohort for ``model_id`` (empty when there is none)."""
    if not model_id.startswith("dlib-resnet-v1+flip"):
        return np.zeros((0, 128), np.float32)
    with resources.files("facetrace.gallery").joinpath(BACKGROUND_COHORT).open("rb") as handle:
        return np.load(handle).astype(np.float32)


class CohortScorer:
    """Normalises raw cosine scores against a cohort (see the module docstring)."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray | None = None, *, k: int = TOP_K) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, vectors.shape[-1])
        self.ids = np.asarray(ids if ids is not None else np.full(len(self.vectors), -1), dtype=np.int64)
        self.k = max(1, min(k, len(self.vectors) - 1)) if len(self.vectors) > 1 else 0

    @classmethod
    def for_gallery(cls, ids: np.ndarray, vectors: np.ndarray, model_id: str) -> CohortScorer:
        """Build the scorer of a gallery from its cohort faces, padded with the background cohort
        when the gallery is small."""
        if len(ids) < COHORT_MIN:
            background = background_cohort(model_id)[: COHORT_MIN - len(ids)]
            if len(background):
                vectors = np.vstack([vectors.reshape(-1, background.shape[1]), background])
                ids = np.concatenate([ids, np.full(len(background), -1, dtype=np.int64)])
        return cls(vectors, ids)

    def _topk_mean(self, sims: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        sims = np.where(exclude, -np.inf, sims)
        k = self.k
        return -np.partition(-sims, k - 1, axis=1)[:, :k].mean(axis=1)

    def normalise(
        self, probe: np.ndarray, raw: np.ndarray, cand_vectors: np.ndarray, cand_ids: np.ndarray
    ) -> np.ndarray:
        """Return the normalised scores of one probe against its candidate faces.

        ``raw`` are the cosine scores, ``cand_vectors`` (m, d) and ``cand_ids`` (m,) the candidate faces.
        """
        raw = np.asarray(raw, dtype=np.float64)
        if self.k == 0 or len(raw) == 0:
            return raw
        exclude = self.ids[None, :] == np.asarray(cand_ids, dtype=np.int64)[:, None]
        probe_sims = np.broadcast_to(self.vectors @ probe, exclude.shape)
        cand_sims = np.asarray(cand_vectors, dtype=np.float32) @ self.vectors.T
        mu_probe = self._topk_mean(probe_sims, exclude)
        mu_cand = self._topk_mean(cand_sims, exclude)
        return raw - PROBE_WEIGHT * mu_probe - (1.0 - PROBE_WEIGHT) * mu_cand


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
    face id to person id; with a ``scorer`` (and the candidate vectors), scores are normalised.
    """
    keep = [
        (float(s), int(f))
        for s, f in zip(scores.tolist(), face_ids.tolist(), strict=True)
        if f >= 0 and int(f) in person_of
    ]
    if not keep:
        return []
    raw = np.array([s for s, _ in keep])
    ids = np.array([f for _, f in keep], dtype=np.int64)
    if scorer is not None and vectors_of is not None:
        normalised = scorer.normalise(probe, raw, np.vstack([vectors_of[int(i)] for i in ids]), ids)
    else:
        normalised = raw
    best: dict[int, PersonHit] = {}
    for order in np.argsort(-normalised, kind="stable"):
        face_id = int(ids[order])
        person = person_of[face_id]
        if person not in best:
            best[person] = PersonHit(person, float(normalised[order]), float(raw[order]), face_id)
            if len(best) >= top_k:
                break
    return list(best.values())
