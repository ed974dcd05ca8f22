"""Face quality: inter-eye distance, sharpness, detector confidence and a yaw estimate,
combined into one 0-100 score that predicts how likely a search with the face is to find the person.

The combination is a weighted geometric mean of four factors in [0, 1], so that one bad
factor (an unusable detection, a profile view) pulls the whole score down. The weights were
set on degraded probes (bench/degraded.py, docs/accuracy.md "Field conditions"): the detector's
confidence predicts a true match best (it falls for blurred, noisy, dark and covered faces alike),
the pose next; the inter-eye distance matters less once small faces are upscaled before alignment,
and the Laplacian sharpness least (sensor noise and JPEG blocks raise it). On those probes the
share of mated searches matched at the policy rises from about 2 in 10 below 40 to 4-5 in 10 at 70
and above, where the earlier weights (0.30 / 0.25 / 0.20 / 0.25) did not order them at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WEIGHTS = {"eye_distance": 0.15, "sharpness": 0.05, "detector": 0.55, "pose": 0.25}
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
    # HOG scores run from about -0.5 (marginal) to 3 (a clean frontal face: 1-2.4 on faces-dev); MMOD
    # confidences from 0 to about 1.5.
    det_factor = _ramp(detector_score, 0.0, 1.5) if detector == "hog" else _ramp(detector_score, 0.0, 1.0)
    factors = {
        "eye_distance": _ramp(ied, 10.0, 40.0),
        "sharpness": _ramp(math.log10(max(sharp, 1e-3)), 1.0, 2.3),
        "detector": det_factor,
        "pose": _ramp(60.0 - abs(yaw), 0.0, 45.0),
    }
    log_score = sum(WEIGHTS[k] * math.log(max(FLOOR, v)) for k, v in factors.items())
    return Quality(100.0 * math.exp(log_score), ied, sharp, detector_score, yaw)


#: A chip whose face (its central half) is flatter than FLAT_STD (standard deviation of OpenCV's 8-bit
#: L of Lab) without being dark is restored before embedding: a faded print, fog, a grey low-contrast
#: copy. Clean photos measure 30-50 on faces-dev and are left exactly as they are. Dark chips (mean under
#: DARK_MEAN) are left alone too: stretching them multiplies their sensor noise, and on faces-dev that
#: cost a third of their rank-1 (bench/degraded.py, docs/accuracy.md "Field conditions").
DARK_MEAN = 70.0
FLAT_STD = 20.0
RESTORED_STD = 40.0


def restore_chip(chip: np.ndarray) -> np.ndarray:
    """Return the RGB ``chip`` with its luminance contrast stretched around its mean when its face is
    flat but not dark (see :data:`FLAT_STD`), else ``chip`` itself. Colour is kept."""
    lab = cv2.cvtColor(chip, cv2.COLOR_RGB2LAB)
    luminance = lab[:, :, 0].astype(np.float32)
    height, width = luminance.shape
    face = luminance[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
    mean, std = float(face.mean()), float(face.std())
    if std >= FLAT_STD or mean < DARK_MEAN:
        return chip
    stretched = (luminance - mean) * (RESTORED_STD / max(std, 1.0)) + mean
    lab[:, :, 0] = np.clip(stretched, 0, 255).astype(np.uint8)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
