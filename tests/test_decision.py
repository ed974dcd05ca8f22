"""The pure decision module: score -> FMR -> FPIR(N) -> match or no match, with the probe-quality gate.

No database, index or model: a small hand-made calibration, hits and persons.
"""

from __future__ import annotations

import pytest

from facetrace.gallery.calibration import Calibration
from facetrace.gallery.decision import decide, search_policy
from facetrace.gallery.results import PersonRef, SearchPolicy
from facetrace.gallery.scoring import PersonHit

# log10 FMR falls linearly from 0 (score 0.0) to -4 (score 0.8); a steeper tail beyond.
CALIBRATION = Calibration.from_dict(
    {
        "model_id": "model-a",
        "score": "cosine",
        "points": [[0.0, 0.0], [0.4, -2.0], [0.8, -4.0]],
        "tail": {"start": 0.8, "log10_fmr": -4.0, "slope": -10.0},
    }
)
PERSONS = {1: PersonRef(1, "P-1", "One"), 2: PersonRef(2, "P-2", "Two")}


def _policy(persons: int = 1, *, min_quality: float = 50.0, calibrated: bool = True) -> SearchPolicy:
    return search_policy(
        CALIBRATION,
        persons=persons,
        model_id="model-a",
        target_fpir=0.01,
        calibrated=calibrated,
        min_quality=min_quality,
    )


def _hits(*scores: float) -> list[PersonHit]:
    return [PersonHit(n, score, score, 100 + n) for n, score in enumerate(scores, start=1)]


def test_threshold_grows_with_the_gallery_size() -> None:
    one, thousand = _policy(1), _policy(1000)
    assert one.threshold == pytest.approx(0.4, abs=1e-6)  # FPIR 0.01 over 1 person = FMR 0.01
    assert thousand.threshold > one.threshold
    assert CALIBRATION.fpir(thousand.threshold, 1000) == pytest.approx(0.01, rel=1e-3)
    assert _policy(0).threshold == one.threshold  # an empty gallery is decided as one of 1


def test_match_at_the_threshold_and_not_just_below() -> None:
    policy = _policy(1)
    at = decide(_hits(policy.threshold), PERSONS, quality=90.0, policy=policy, calibration=CALIBRATION)
    assert at.match == "P-1" and at.candidates[0].match
    assert at.candidates[0].reason.startswith("score 0.4000 at or above the threshold")
    below = decide(_hits(policy.threshold - 1e-6), PERSONS, quality=90.0, policy=policy, calibration=CALIBRATION)
    assert below.match is None and not below.candidates[0].match
    assert "below the threshold" in below.candidates[0].reason


def test_the_same_score_is_no_match_in_a_larger_gallery() -> None:
    score = _policy(1).threshold + 0.01
    small = decide(_hits(score), PERSONS, quality=90.0, policy=_policy(1), calibration=CALIBRATION)
    large = decide(_hits(score), PERSONS, quality=90.0, policy=_policy(1000), calibration=CALIBRATION)
    assert small.match == "P-1" and large.match is None
    assert large.candidates[0].fpir > small.candidates[0].fpir
    assert small.candidates[0].fmr == large.candidates[0].fmr == pytest.approx(CALIBRATION.fmr(score))


def test_a_poor_probe_is_never_a_match() -> None:
    policy = _policy(1, min_quality=50.0)
    poor = decide(_hits(0.9), PERSONS, quality=49.9, policy=policy, calibration=CALIBRATION)
    assert poor.quality_ok is False and poor.match is None
    assert poor.candidates[0].reason == "probe quality 50 below the minimum 50"
    good = decide(_hits(0.9), PERSONS, quality=50.0, policy=policy, calibration=CALIBRATION)
    assert good.quality_ok is True and good.match == "P-1"


def test_only_the_best_candidate_matches() -> None:
    policy = _policy(1)
    decision = decide(_hits(0.9, 0.85), PERSONS, quality=90.0, policy=policy, calibration=CALIBRATION)
    assert [c.rank for c in decision.candidates] == [1, 2]
    assert [c.match for c in decision.candidates] == [True, False]
    assert decision.candidates[1].reason == "above the threshold but not the best candidate"
    assert decision.candidates[0].fpir_extrapolated  # beyond the tail's start


def test_without_a_calibration_for_the_model_nothing_matches() -> None:
    policy = _policy(1, calibrated=False)
    decision = decide(_hits(0.99), PERSONS, quality=90.0, policy=policy, calibration=CALIBRATION)
    assert decision.match is None and not decision.candidates[0].match
    assert "no calibration for model model-a" in decision.candidates[0].reason


def test_no_hits_no_match_and_the_json_shape() -> None:
    policy = _policy(3)
    empty = decide([], PERSONS, quality=90.0, policy=policy, calibration=CALIBRATION)
    assert empty.to_dict() == {"quality_ok": True, "candidates": [], "match": None}
    one = decide(_hits(0.123456), PERSONS, quality=90.0, policy=policy, calibration=CALIBRATION)
    assert list(one.candidates[0].to_dict()) == [
        "rank", "person", "face_id", "score", "similarity", "fmr", "fpir", "fpir_extrapolated", "match", "reason",
    ]  # fmt: skip
    assert one.candidates[0].to_dict()["score"] == 0.1235
    header = policy.to_dict()
    assert header["gallery"] == {"persons": 3, "model_id": "model-a"}
    assert "this gallery of 3 persons" in header["policy"]["explanation"]
