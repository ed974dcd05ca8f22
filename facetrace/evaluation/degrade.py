"""Field conditions, simulated: degrade a clean probe photo the way photos of the dead, the injured and
the captured are degraded (small, blurred, compressed, dark, noisy, partly covered, grey and flat).

Each condition is a pure function of the RGB image, the face's geometry in it (from the clean photo's
analysis) and a seeded random generator, so that a benchmark or a test degrades the same probe the same
way every time. References stay clean: only probes are degraded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceGeometry:
    """Where the face is in the clean photo: its box (left, top, right, bottom) and its two eye
    centres and nose tip (pixels)."""

    box: tuple[float, float, float, float]
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose: tuple[float, float]

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(self.right_eye[0] - self.left_eye[0], self.right_eye[1] - self.left_eye[1]))

    @classmethod
    def from_landmarks(cls, box: tuple[float, float, float, float], points: np.ndarray) -> FaceGeometry:
        """Return the geometry from a box and dlib's 5-point landmarks (eye corners 0-1 and 2-3, nose 4)."""
        points = np.asarray(points, dtype=np.float64)
        eye_a, eye_b = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
        left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
        return cls(tuple(float(v) for v in box), tuple(left), tuple(right), tuple(points[4]))  # type: ignore[arg-type]

    @classmethod
    def guess(cls, image: np.ndarray) -> FaceGeometry:
        """Return a centred face's geometry, for a photo whose clean analysis found no face (a
        cropped portrait: the face fills the middle 40% of the frame)."""
        height, width = image.shape[:2]
        face = 0.4 * min(height, width)
        cx, cy = width / 2.0, height / 2.0
        ied = 0.42 * face
        return cls(
            (cx - face / 2, cy - face / 2, cx + face / 2, cy + face / 2),
            (cx - ied / 2, cy - 0.12 * face),
            (cx + ied / 2, cy - 0.12 * face),
            (cx, cy + 0.08 * face),
        )


Degradation = Callable[[np.ndarray, FaceGeometry, np.random.Generator], np.ndarray]


def small(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """The whole photo downscaled so that the face is 20-40 pixels wide (a face far from the camera)."""
    target = rng.uniform(20.0, 40.0)
    scale = min(1.0, target / max(face.width, 1.0))
    height, width = image.shape[:2]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def blurred(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with a sigma of 1.5-3% of the face's width (out of focus)."""
    sigma = rng.uniform(0.015, 0.03) * max(face.width, 40.0)
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def compressed(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """Heavy JPEG compression, quality 5-12 (a photo forwarded through messengers)."""
    quality = int(rng.integers(5, 13))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # pragma: no cover - OpenCV always encodes and decodes a valid RGB array
        return image
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def dark(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """Low light: brightness cut to 12-25% and a gamma above one, then sensor noise (sigma 3-6 levels)."""
    scaled = image.astype(np.float32) / 255.0
    scaled = np.power(scaled, rng.uniform(1.1, 1.5)) * rng.uniform(0.12, 0.25) * 255.0
    noisy = scaled + rng.normal(0.0, rng.uniform(3.0, 6.0), size=image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: Gaussian, sigma 18-30 levels per channel."""
    noise = rng.normal(0.0, rng.uniform(18.0, 30.0), size=image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _fill(image: np.ndarray, polygon: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    cv2.fillPoly(out, [np.round(polygon).astype(np.int32)], colour, lineType=cv2.LINE_AA)
    return out


def _face_frame(face: FaceGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Return the eyes' midpoint, the unit vector along the eyes, the unit vector down the face and the IED."""
    left, right = np.array(face.left_eye), np.array(face.right_eye)
    ied = max(float(np.linalg.norm(right - left)), 4.0)
    across = (right - left) / ied
    down = np.array([-across[1], across[0]])
    return (left + right) / 2.0, across, down, ied


def lower_face_covered(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """The lower face covered from just below the eyes to under the chin (a mask, a bandage, a scarf)."""
    middle, across, down, ied = _face_frame(face)
    nose = np.array(face.nose)
    top = max(float(np.dot(nose - middle, down)) - 0.35 * ied, 0.35 * ied)
    bottom, half = 2.1 * ied, 1.15 * ied
    corners = [(-half, top), (half, top), (half * 0.85, bottom), (-half * 0.85, bottom)]
    polygon = np.array([middle + a * across + d * down for a, d in corners])
    colours = [(168, 200, 226), (236, 236, 230), (60, 64, 72)]  # surgical blue, bandage white, dark scarf
    return _fill(image, polygon, colours[int(rng.integers(0, len(colours)))])


def eyes_covered(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """A band across both eyes (a blindfold, dark glasses)."""
    middle, across, down, ied = _face_frame(face)
    half_w, half_h = 1.25 * ied, rng.uniform(0.3, 0.4) * ied
    corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    polygon = np.array([middle + a * across + d * down for a, d in corners])
    shade = int(rng.integers(10, 50))
    return _fill(image, polygon, (shade, shade, shade))


def grey_flat(image: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> np.ndarray:
    """Grey and low contrast: one channel, its range squeezed to 25-40% around its mean (a faded print, fog)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = float(grey.mean())
    flat = mean + (grey - mean) * rng.uniform(0.25, 0.4)
    flat = np.clip(flat, 0, 255).astype(np.uint8)
    return np.repeat(flat[:, :, None], 3, axis=2)


#: The simulated field conditions, in the order reports list them.
CONDITIONS: dict[str, Degradation] = {
    "small": small,
    "blurred": blurred,
    "compressed": compressed,
    "dark": dark,
    "noisy": noisy,
    "lower_face_covered": lower_face_covered,
    "eyes_covered": eyes_covered,
    "grey_flat": grey_flat,
}


def degrade(image: np.ndarray, condition: str, face: FaceGeometry, key: str) -> np.ndarray:
    """Return ``image`` (RGB uint8) degraded by ``condition``; ``key`` (the probe's name) seeds the
    randomness, so that the same probe is degraded the same way on every run.

    Raises:
        KeyError: an unknown condition.
    """
    seed = int.from_bytes(hashlib.sha256(f"{condition}:{key}".encode()).digest()[:8], "big")
    return CONDITIONS[condition](np.ascontiguousarray(image), face, np.random.default_rng(seed))
