"""Face detection with dlib: HOG by default, the CNN (MMOD) detector on request or as fallback.

Detection runs on a copy downscaled to a working size; boxes come back in the original
image's coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from facetrace.vision import models

DetectorName = Literal["hog", "cnn"]
# The CNN (MMOD) detector needs at least this many pixels on each side; no face fits in fewer.
CNN_MIN_SIDE = 20


@dataclass(frozen=True)
class Detection:
    """One detected face: box (left, top, right, bottom) in original pixels, and a score."""

    box: tuple[int, int, int, int]
    score: float
    detector: str

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


def _working_copy(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _to_original(rect: object, scale: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    height, width = shape[:2]
    left = int(round(rect.left() / scale))  # type: ignore[attr-defined]
    top = int(round(rect.top() / scale))  # type: ignore[attr-defined]
    right = int(round((rect.right() + 1) / scale))  # type: ignore[attr-defined]
    bottom = int(round((rect.bottom() + 1) / scale))  # type: ignore[attr-defined]
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


#: A working copy at most this long on its longer side is searched once more, upsampled twice (4x),
#: when nothing was found: its faces may be 20-40 px wide (a face far from the camera), below what
#: HOG finds even upsampled once (about 40 px). Costs nothing on larger photos.
SMALL_IMAGE_SIDE = 400


def detect_hog(
    image: np.ndarray, *, max_side: int = 1024, upsample: int | None = None, small_faces: bool = True
) -> list[Detection]:
    """Return HOG detections. With ``upsample=None`` the image is searched as is, and again
    upsampled once when nothing is found and the working copy is small (faces under 80 px), and
    with ``small_faces`` twice when it is tiny (see :data:`SMALL_IMAGE_SIDE`)."""
    work, scale = _working_copy(image, max_side)
    detector = models.hog_detector()
    longest = max(work.shape[:2])
    levels = [upsample] if upsample is not None else ([0, 1] if longest <= 1400 else [0])
    if upsample is None and small_faces and longest <= SMALL_IMAGE_SIDE:
        levels.append(2)
    for level in levels:
        rects, scores, _ = detector.run(work, level, 0.0)
        if len(rects):
            return [
                Detection(_to_original(r, scale, image.shape), float(s), "hog")
                for r, s in zip(rects, scores, strict=True)
            ]
    return []


def detect_cnn(
    image: np.ndarray, *, max_side: int = 1024, upsample: int | None = None, small_faces: bool = True
) -> list[Detection]:
    """Return detections of dlib's CNN (MMOD) detector: slower, better on hard poses (upsampled
    twice with ``small_faces`` when the working copy is tiny, see :data:`SMALL_IMAGE_SIDE`)."""
    work, scale = _working_copy(image, max_side)
    if min(work.shape[:2]) < CNN_MIN_SIDE:
        return []  # dlib's network raises (and can corrupt its heap) on images this thin
    if upsample is None:
        longest = max(work.shape[:2])
        upsample = 2 if small_faces and longest <= SMALL_IMAGE_SIDE / 2 else (1 if longest <= 640 else 0)
    found = models.cnn_detector()(work, upsample)
    return [Detection(_to_original(d.rect, scale, image.shape), float(d.confidence), "cnn") for d in found]


def detect_faces(
    image: np.ndarray,
    *,
    detector: DetectorName = "hog",
    max_side: int = 1024,
    cnn_fallback: bool = True,
    small_faces: bool = True,
) -> list[Detection]:
    """Return every face found in ``image``, largest first.

    With the HOG detector, an image where HOG finds nothing is searched again with the CNN
    detector unless ``cnn_fallback`` is false. ``small_faces``: tiny images are searched further
    upsampled (see :data:`SMALL_IMAGE_SIDE`).
    """
    if detector == "cnn":
        found = detect_cnn(image, max_side=max_side, small_faces=small_faces)
    else:
        found = detect_hog(image, max_side=max_side, small_faces=small_faces)
        if not found and cnn_fallback:
            found = detect_cnn(image, max_side=max_side, small_faces=small_faces)
    return sorted(found, key=lambda d: d.area, reverse=True)
