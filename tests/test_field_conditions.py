"""Calibration under degradation, the short version of bench/degraded.py on the committed faces.

References stay clean (the first image of each of the 40 identities); probes are the second image of
each identity (mated) and the 40 distractors (non-mated), each degraded in turn by five field
conditions. The product's shipped calibration and cohort must stay honest on them: the per-comparison
false-match rate at the calibration's 1-in-1000 score within a factor of three of 0.001, and the
non-mated searches matched at the policy threshold (FPIR 0.01 for this gallery) within twice the target.
The degradations are seeded, so the check is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facetrace.evaluation import degrade
from facetrace.evaluation.protocol import wilson_interval
from facetrace.gallery.calibration import Calibration
from facetrace.gallery.scoring import CohortScorer
from facetrace.vision.decode import ImageInput, load_image
from facetrace.vision.parallel import analyze_images
from facetrace.vision.pipeline import Face, get_analyzer

CONDITIONS = ("small", "blurred", "dark", "noisy", "lower_face_covered")
POLICY_FPIR = 0.01


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _largest(results: list[Face] | Exception) -> Face | None:
    return results[0] if isinstance(results, list) and results else None


@pytest.fixture(scope="module")
def field(faces_dir: Path) -> dict[str, object]:
    identities = sorted(p for p in faces_dir.iterdir() if p.is_dir() and p.name != "distractors")
    references = [sorted(p.glob("*.jpg"))[0] for p in identities]
    mated = [sorted(p.glob("*.jpg"))[1] for p in identities]
    nonmated = sorted((faces_dir / "distractors").glob("*/*.jpg"))
    analyzer = get_analyzer()
    clean = {p: _largest(analyzer.analyze(load_image(p), largest_only=True)) for p in references + mated + nonmated}
    assert all(clean[p] is not None for p in references)

    def jobs():  # type: ignore[no-untyped-def]
        for condition in CONDITIONS:
            for path in mated + nonmated:
                image = load_image(path)
                face = clean[path]
                geometry = (
                    degrade.FaceGeometry.from_landmarks(face.box, np.array(face.landmarks))  # type: ignore[arg-type]
                    if face is not None
                    else degrade.FaceGeometry.guess(image)
                )
                degraded = degrade.degrade(image, condition, geometry, path.name)
                yield (condition, path), ImageInput(path.name, _png(degraded))

    degraded = {key: _largest(faces) for key, _, faces in analyze_images(jobs(), largest_only=True)}
    return {
        "gallery": np.vstack([clean[p].embedding for p in references]),  # type: ignore[union-attr]
        "identities": [p.parent.name for p in references],
        "mated": mated,
        "nonmated": nonmated,
        "degraded": degraded,
        "model_id": analyzer.model_id,
    }


def test_degradations_are_seeded_and_change_the_photo(faces_dir: Path) -> None:
    path = sorted((faces_dir / "distractors").glob("*/*.jpg"))[0]
    image = load_image(path)
    geometry = degrade.FaceGeometry.guess(image)
    for condition in degrade.CONDITIONS:
        once = degrade.degrade(image, condition, geometry, path.name)
        assert np.array_equal(once, degrade.degrade(image, condition, geometry, path.name)), condition
        assert once.dtype == np.uint8 and once.ndim == 3
        assert once.shape != image.shape or not np.array_equal(once, image), condition
    with pytest.raises(KeyError):
        degrade.degrade(image, "underwater", geometry, path.name)


def test_small_faces_are_found(field: dict[str, object]) -> None:
    """A face 20-40 px wide is found and embedded (before the small-face path, a third were lost)."""
    degraded = field["degraded"]
    probes = field["mated"] + field["nonmated"]  # type: ignore[operator]
    missed = [p for p in probes if degraded[("small", p)] is None]  # type: ignore[index]
    assert len(missed) <= 0.05 * len(probes), missed


def test_calibration_holds_under_degradation(field: dict[str, object]) -> None:
    calibration = Calibration.load()
    gallery, identities = field["gallery"], np.array(field["identities"])
    assert calibration.model_id == field["model_id"]
    scorer = CohortScorer.for_model(calibration.model_id)
    threshold = calibration.threshold(POLICY_FPIR, len(identities))
    bar = calibration.threshold(0.001, 1)
    impostor: list[np.ndarray] = []
    false_matches = searches = 0
    for (_condition, path), face in field["degraded"].items():  # type: ignore[attr-defined]
        is_mated = path in field["mated"]  # type: ignore[operator]
        searches += not is_mated
        if face is None:
            continue
        scores = scorer.scores(face.embedding[None], gallery)[0]  # type: ignore[arg-type]
        other = identities != path.parent.name if is_mated else np.ones(len(identities), bool)
        impostor.append(scores[other])
        false_matches += (not is_mated) and bool(scores.max() >= threshold)
    comparisons = np.concatenate(impostor)
    fmr = float(np.mean(comparisons >= bar))
    assert len(comparisons) > 10_000
    assert 0.001 / 3 <= fmr <= 0.001 * 3, f"FMR at the 1e-3 score: {fmr:.5f} over {len(comparisons)} comparisons"
    low, _high = wilson_interval(false_matches, searches)
    assert false_matches / searches <= 2 * POLICY_FPIR, f"{false_matches} false matches in {searches} searches"
    assert low <= POLICY_FPIR
