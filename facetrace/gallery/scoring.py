"""From face hits to ranked persons.

Fusion rule: a person's score is the best score of any of their reference faces
("best face"). Measured against the mean template in docs/accuracy.md: with several
reference photos per person of mixed age, pose and quality, the best single face matches a
new photo better than an average that blurs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PersonHit:
    person_id: int
    score: float
    face_id: int


def rank_persons(scores: np.ndarray, face_ids: np.ndarray, person_of: dict[int, int], top_k: int) -> list[PersonHit]:
    """Return up to ``top_k`` persons, best first, from one probe's face hits.

    ``scores``/``face_ids`` are one row of an index search (best first, id -1 = empty slot);
    ``person_of`` maps face id to person id.
    """
    best: dict[int, PersonHit] = {}
    for score, face_id in zip(scores.tolist(), face_ids.tolist(), strict=True):
        if face_id < 0:
            continue
        person = person_of.get(int(face_id))
        if person is None or person in best:
            continue  # rows are sorted: the first hit of a person is its best face
        best[person] = PersonHit(person, float(score), int(face_id))
        if len(best) >= top_k:
            break
    return list(best.values())
