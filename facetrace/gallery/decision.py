"""Turning scores into decisions: score -> FMR -> FPIR for the gallery's size -> match or no match.

Pure functions: no database, no index, no state. A probe's best candidate is a match only when
the calibration was built for the gallery's model, its score reaches the policy threshold (the
score at which a search of a gallery of this size for someone not in it returns a candidate this
strong at the target FPIR), and the probe's quality reaches the minimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from facetrace.gallery.calibration import Calibration
from facetrace.gallery.results import Candidate, Decision, PersonRef, SearchPolicy
from facetrace.gallery.scoring import PersonHit


def search_policy(
    calibration: Calibration, *, persons: int, model_id: str, target_fpir: float, calibrated: bool, min_quality: float
) -> SearchPolicy:
    """Return the policy of a search of a gallery of ``persons`` persons: the score threshold that
    gives ``target_fpir`` for that size (a gallery of 0 persons is decided as one of 1)."""
    threshold = calibration.threshold(target_fpir, max(1, persons))
    return SearchPolicy(
        persons=persons,
        model_id=model_id,
        target_fpir=target_fpir,
        threshold=threshold,
        calibrated=calibrated,
        min_quality=min_quality,
    )


def decide(
    hits: Sequence[PersonHit],
    persons: Mapping[int, PersonRef],
    *,
    quality: float,
    policy: SearchPolicy,
    calibration: Calibration,
) -> Decision:
    """Return the decision for one probe of quality ``quality`` and its ranked ``hits`` (best first).

    ``persons`` maps every hit's person id to the person. Each candidate carries its FMR, its FPIR
    for the gallery's size and the reason for its decision.

    Raises:
        KeyError: a hit's person is not in ``persons``.
    """
    quality_ok = quality >= policy.min_quality
    n_persons = max(1, policy.persons)
    candidates = []
    for rank, hit in enumerate(hits, start=1):
        above = hit.score >= policy.threshold
        candidates.append(
            Candidate(
                rank=rank,
                person=persons[hit.person_id],
                face_id=hit.face_id,
                score=hit.score,
                similarity=hit.raw,
                fmr=calibration.fmr(hit.score),
                fpir=calibration.fpir(hit.score, n_persons),
                fpir_extrapolated=calibration.extrapolated(hit.score),
                match=above and quality_ok and rank == 1 and policy.calibrated,
                reason=_reason(hit.score, rank, above, quality, quality_ok, policy),
            )
        )
    match = candidates[0].person.external_id if candidates and candidates[0].match else None
    return Decision(quality_ok=quality_ok, candidates=tuple(candidates), match=match)


def _reason(score: float, rank: int, above: bool, quality: float, quality_ok: bool, policy: SearchPolicy) -> str:
    if not policy.calibrated:
        return f"no calibration for model {policy.model_id}: scores cannot be turned into match decisions"
    if not above:
        return f"score {score:.4f} below the threshold {policy.threshold:.4f}"
    if not quality_ok:
        return f"probe quality {quality:.0f} below the minimum {policy.min_quality:.0f}"
    if rank > 1:
        return "above the threshold but not the best candidate"
    return f"score {score:.4f} at or above the threshold {policy.threshold:.4f}"
