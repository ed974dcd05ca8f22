"""Face quality: inter-eye distance, sharpness, detector confidence and a yaw estimate,
combined into one 0-100 score.

The combination is a weighted geometric mean of four factors in [0, 1], so that one bad
factor (a 12-pixel face, a motion-blurred chip, a profile view) pulls the whole score down.
The factor ramps are set so that a typical frontal passport-like photo scores above 80 and an
unusable face below 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WEIGHTS = {"eye_distance": 0.30, "sharpness": 0.25, "detector": 0.20, "pose": 0.25}
FLOOR = 0.02  # keeps scores ordered when one factor is at its worst


@dataclass(frozen=True)
class Quality:
    """Quality of one face: the 0-100 score and the measurements behind it."""

    score: float
    eye_distance_px: float
    sharpness: float
    detector_score: float
    yaw_deg: float

    def as_dict(self) -> dict[str, float]:
        return {
            "score": round(self.score, 1),
            "eye_distance_px": round(self.eye_distance_px, 1),
            "sharpness": round(self.sharpness, 1),
            "detector_score": round(self.detector_score, 3),
            "yaw_deg": round(self.yaw_deg, 1),
        }


def _ramp(value: float, low: float, high: float) -> float:
    return min(1.0, max(0.0, (value - low) / (high - low)))


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the two eye centres of dlib's 5-point landmarks (points 0-1 and 2-3)."""
    return points[0:2].mean(axis=0), points[2:4].mean(axis=0)


def estimate_yaw(points: np.ndarray) -> float:
    """Estimate head yaw in degrees from 5-point landmarks (0 = frontal).

    The nose tip moves sideways from the eyes' midline as the head turns; its offset, in a
    frame where the eyes are level, divided by the inter-eye distance, is about
    0.55 * sin(yaw) for an average adult head. A rough estimate, good to ~10 degrees.
    """
    eye_a, eye_b = eye_centres(points)
    axis = eye_b - eye_a
    distance = float(np.linalg.norm(axis))
    if distance < 1e-6:
        return 90.0
    unit = axis / distance
    offset = float(np.dot(points[4] - (eye_a + eye_b) / 2.0, unit))
    return math.degrees(math.asin(max(-1.0, min(1.0, offset / (0.55 * distance)))))


def sharpness(chip: np.ndarray) -> float:
    """Return the variance of the Laplacian of the grey face chip (higher = sharper)."""
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess(points: np.ndarray, chip: np.ndarray, detector_score: float, detector: str) -> Quality:
    """Return the :class:`Quality` of one face from its landmarks, chip and detection."""
    eye_a, eye_b = eye_centres(points)
    ied = float(np.linalg.norm(eye_b - eye_a))
    sharp = sharpness(chip)
    yaw = estimate_yaw(points)
    # HOG scores run from about -0.5 (marginal) to 3; MMOD confidences from 0 to about 1.5.
    det_factor = _ramp(detector_score, -0.3, 1.0) if detector == "hog" else _ramp(detector_score, 0.0, 1.0)
    factors = {
        "eye_distance": _ramp(ied, 10.0, 40.0),
        "sharpness": _ramp(math.log10(max(sharp, 1e-3)), 1.0, 2.3),
        "detector": det_factor,
        "pose": _ramp(60.0 - abs(yaw), 0.0, 45.0),
    }
    log_score = sum(WEIGHTS[k] * math.log(max(FLOOR, v)) for k, v in factors.items())
    return Quality(100.0 * math.exp(log_score), ied, sharp, detector_score, yaw)
