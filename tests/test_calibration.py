"""Calibration: FMR(s) from impostor comparisons, FPIR(s, N), thresholds, and a check on real faces
that the observed false-positive identification rate on unseen identities matches the policy target."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facetrace.errors import ConfigError
from facetrace.evaluation.protocol import Sample, Split, observed_fpir
from facetrace.evaluation.run import (
    calibrate_embedded,
    embed_samples,
    identity_half,
    leave_identity_out_scores,
)
from facetrace.gallery.calibration import Calibration, build_calibration, fpir_from_fmr
from facetrace.gallery.service import Gallery


@pytest.fixture(scope="module")
def synthetic() -> Calibration:
    rng = np.random.default_rng(0)
    return build_calibration(rng.normal(0.0, 0.1, 200_000), model_id="m", score_name="s")


def test_fmr_falls_with_score_and_matches_the_impostor_share(synthetic: Calibration) -> None:
    scores = np.linspace(-0.3, 0.6, 50)
    fmrs = [synthetic.fmr(s) for s in scores]
    assert all(a >= b for a, b in zip(fmrs, fmrs[1:], strict=False))
    # For N(0, 0.1), P(X >= 0.2) = 0.02275
    assert synthetic.fmr(0.2) == pytest.approx(0.02275, rel=0.1)
    assert synthetic.fmr(-1.0) == pytest.approx(1.0)


def test_threshold_inverts_fpir_and_rises_with_gallery_size(synthetic: Calibration) -> None:
    small = synthetic.threshold(0.01, 10)
    large = synthetic.threshold(0.01, 100_000)
    assert large > small
    assert synthetic.fpir(small, 10) == pytest.approx(0.01, rel=0.05)
    assert synthetic.fpir(large, 100_000) == pytest.approx(0.01, rel=0.1)


def test_fpir_formula_and_extrapolated_tail(synthetic: Calibration) -> None:
    assert fpir_from_fmr(1e-6, 1000) == pytest.approx(1 - (1 - 1e-6) ** 1000)
    assert fpir_from_fmr(0.0, 10) == 0.0
    beyond = synthetic.tail_start + 0.1
    assert synthetic.extrapolated(beyond)
    assert 0.0 < synthetic.fmr(beyond) < synthetic.min_measured_fmr


def test_too_few_impostors_and_malformed_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_calibration(np.zeros(10), model_id="m", score_name="s")
    bad = tmp_path / "cal.json"
    bad.write_text('{"model_id": "m"}')
    with pytest.raises(ConfigError):
        Calibration.load(bad)
    with pytest.raises(ConfigError):
        Calibration.load(tmp_path / "missing.json")


def test_shipped_calibration_is_for_the_default_model() -> None:
    calibration = Calibration.load()
    assert calibration.model_id == "dlib-resnet-v1+flip+68"
    assert calibration.info["impostor_comparisons"] > 1_000_000
    assert calibration.threshold(0.01, 1000) > calibration.threshold(0.01, 10)


def _split_of(root: Path, which: int) -> Split:
    """Return the half ``which`` of the committed faces as a Split (first image enrolled, the rest probes)."""
    gallery, probes = [], []
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name != "distractors"]
    folders += sorted(p for p in (root / "distractors").iterdir() if p.is_dir())
    for folder in folders:
        if identity_half(folder.name) != which:
            continue
        images = sorted(folder.glob("*.jpg"))
        gallery.append(Sample(folder.name, images[0]))
        probes += [Sample(folder.name, p) for p in images[1:]]
    return Split(gallery, probes, [])


@pytest.mark.slow
def test_observed_fpir_on_unseen_identities_is_within_a_factor_of_two(faces_dir: Path, gallery: Gallery) -> None:
    """Calibrate on one half of the committed identities; on the other half, every probe searched against
    a gallery without its own identity is a non-mated search. At the policy threshold, the share of those
    searches returning a candidate must be consistent with a factor of 2 of the target (its 95% interval
    reaches that band) where the set is large enough to measure it (expected count >= 5); elsewhere the
    interval must not lie above twice the target."""
    half_a = _split_of(faces_dir, 0)
    half_b = _split_of(faces_dir, 1)
    samples = half_a.all_samples() + half_b.all_samples()
    embedded = embed_samples(samples, workers=1, options=gallery.analyzer_options)
    vectors = dict(zip((s.path for s in samples), embedded.vectors, strict=True))
    calibration = calibrate_embedded(half_a, vectors, gallery.model_id, source="tests half A")

    enrolled = [(s.identity, vectors[s.path]) for s in half_b.gallery if vectors[s.path] is not None]
    probes = [(s.identity, vectors[s.path]) for s in half_b.mated if vectors[s.path] is not None]
    best = leave_identity_out_scores(enrolled, probes, gallery.model_id)  # type: ignore[arg-type]
    assert len(best) >= 40
    checked = 0
    for target in (0.1, 0.01, 0.001):
        # Each search's gallery lacks one identity: N is the gallery size minus that identity's entry.
        threshold = calibration.threshold(target, len(enrolled) - 1)
        rate, low, high = observed_fpir(best.tolist(), threshold)
        if len(best) * target >= 5:
            # A few dozen searches measure FPIR only roughly: the 95% interval must reach the band
            # [target / 2, 2 * target] (bench/accuracy.py checks the point estimate on all of faces-dev).
            assert low <= target * 2 and high >= target / 2, (target, rate, (low, high))
            checked += 1
        else:
            assert low <= target * 2, (target, rate, (low, high))
    assert checked >= 1
    assert not math.isnan(calibration.threshold(0.01, 100))
