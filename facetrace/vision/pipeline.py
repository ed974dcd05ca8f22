"""The face pipeline: detect -> 5-point landmarks -> aligned chip -> quality -> embedding."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np

from facetrace.errors import ConfigError
from facetrace.vision import models
from facetrace.vision.decode import DEFAULT_MAX_PIXELS, load_image
from facetrace.vision.detect import Detection, DetectorName, detect_faces
from facetrace.vision.dlib_onnx import OnnxDlibResnetEmbedder
from facetrace.vision.embed import DlibResnetEmbedder, Embedder, l2_normalise
from facetrace.vision.onnx_arcface import OnnxArcFaceEmbedder
from facetrace.vision.quality import Quality, assess, restore_chip

#: Faces narrower than this (pixels) are upscaled before landmarks and chips, by the smallest whole
#: factor that makes them about SMALL_FACE_TARGET_PX wide, at most SMALL_FACE_MAX_UPSCALE.
SMALL_FACE_PX = 64
SMALL_FACE_TARGET_PX = 100
SMALL_FACE_MAX_UPSCALE = 5


@dataclass
class Face:
    """One face found in one image: where it is, how good it is, and its template."""

    box: tuple[int, int, int, int]
    landmarks: list[tuple[float, float]]
    detector: str
    detection_score: float
    quality: Quality
    embedding: np.ndarray
    model_id: str
    chip: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description (without the embedding)."""
        return {
            "box": list(self.box),
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "detector": self.detector,
            "detection_score": round(self.detection_score, 3),
            "quality": self.quality.as_dict(),
            "model_id": self.model_id,
        }


class FaceAnalyzer:
    """Finds and embeds faces. One instance per process: it holds the loaded models."""

    def __init__(
        self,
        *,
        detector: DetectorName = "hog",
        embedder: Embedder | None = None,
        detect_max_side: int = 1024,
        cnn_fallback: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        second_alignment: bool = True,
        embedder_name: str = "dlib-onnx",
        small_faces: bool = True,
        restore: bool = True,
    ) -> None:
        self.detector: DetectorName = detector
        self.embedder: Embedder = embedder or make_embedder(embedder_name)
        # A second chip aligned with 68-point landmarks, averaged with the 5-point one: on faces-dev,
        # rank-1 +0.8 points and FNIR at FPIR 0.01 -0.02 for 2 more forward passes (docs/accuracy.md).
        # An embedder with its own alignment (an operator's ArcFace model) gets 68-point landmarks instead.
        self.own_alignment = hasattr(self.embedder, "align")
        self.second_alignment = second_alignment and not self.own_alignment
        self.detect_max_side = detect_max_side
        self.cnn_fallback = cnn_fallback
        self.max_pixels = max_pixels
        self.small_faces = small_faces
        self.restore = restore

    def _alignment_view(
        self, image: np.ndarray, det: Detection
    ) -> tuple[np.ndarray, dlib.rectangle, Callable[[np.ndarray], np.ndarray]]:
        """Return the image to find landmarks and cut chips in, the face's box in it, and the map of its
        points back to ``image``. A face under :data:`SMALL_FACE_PX` wide is cut out with a margin and
        upscaled (bicubic) first: dlib's landmarks and the chip's resampling do better on it than on the
        few pixels of the original (bench/degraded.py, "small")."""
        left, top, right, bottom = det.box
        width = right - left
        if not self.small_faces or width >= SMALL_FACE_PX or width < 4:
            return image, dlib.rectangle(left, top, right - 1, bottom - 1), lambda points: points
        factor = min(SMALL_FACE_MAX_UPSCALE, math.ceil(SMALL_FACE_TARGET_PX / width))
        height_img, width_img = image.shape[:2]
        x0, y0 = max(0, left - width), max(0, top - width)
        x1, y1 = min(width_img, right + width), min(height_img, bottom + width)
        crop = cv2.resize(image[y0:y1, x0:x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        rect = dlib.rectangle(
            (left - x0) * factor, (top - y0) * factor, (right - x0) * factor - 1, (bottom - y0) * factor - 1
        )
        offset = np.array([x0, y0], dtype=np.float64)
        return np.ascontiguousarray(crop), rect, lambda points: points / factor + offset

    @property
    def model_id(self) -> str:
        return self.embedder.model_id + ("+68" if self.second_alignment else "")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Return the detections in ``image``, largest first."""
        return detect_faces(
            image,
            detector=self.detector,
            max_side=self.detect_max_side,
            cnn_fallback=self.cnn_fallback,
            small_faces=self.small_faces,
        )

    def analyze(self, image: np.ndarray, *, largest_only: bool = False, keep_chips: bool = False) -> list[Face]:
        """Return every face in the RGB ``image`` (only the largest with ``largest_only``),
        each with landmarks, quality and an L2-normalised embedding, largest first."""
        detections = self.detect(image)
        if largest_only:
            detections = detections[:1]
        if not detections:
            return []
        predictor = models.landmarks5()
        predictor68 = models.landmarks68() if (self.own_alignment or self.second_alignment) else None
        chips, extra, points5 = [], [], []
        size, padding = self.embedder.chip_size, self.embedder.chip_padding
        for det in detections:
            source, rect, to_image = self._alignment_view(image, det)
            shape = predictor(source, rect)
            points5.append(to_image(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)))
            if self.own_alignment:
                assert predictor68 is not None
                points68 = np.array([(p.x, p.y) for p in predictor68(source, rect).parts()])
                chips.append(self.embedder.align(source, points68))  # type: ignore[attr-defined]
            else:
                chips.append(dlib.get_face_chip(source, shape, size=size, padding=padding))
            if self.second_alignment:
                assert predictor68 is not None
                extra.append(dlib.get_face_chip(source, predictor68(source, rect), size=size, padding=padding))
        if self.restore:
            chips, extra = [restore_chip(c) for c in chips], [restore_chip(c) for c in extra]
        embeddings = self.embedder.embed_chips(chips)
        if self.second_alignment:
            # A second chip aligned with 68-point landmarks, averaged with the 5-point one (docs/accuracy.md).
            embeddings = l2_normalise(embeddings + self.embedder.embed_chips(extra))
        faces = []
        for det, points, chip, emb in zip(detections, points5, chips, embeddings, strict=True):
            faces.append(
                Face(
                    box=det.box,
                    landmarks=[(float(x), float(y)) for x, y in points],
                    detector=det.detector,
                    detection_score=det.score,
                    quality=assess(points, chip, det.score, det.detector),
                    embedding=emb,
                    model_id=self.model_id,
                    chip=chip if keep_chips else None,
                )
            )
        return faces

    def analyze_file(self, path: str | Path, *, largest_only: bool = False) -> list[Face]:
        """Decode the image at ``path`` and return its faces (see :meth:`analyze`).

        Raises:
            ImageError: the file is not a usable image.
        """
        return self.analyze(load_image(path, max_pixels=self.max_pixels), largest_only=largest_only)


def make_embedder(name: str) -> Embedder:
    """Return the embedder called ``name``.

    ``dlib-onnx`` (default): dlib's ResNet descriptor converted at load time and run by onnxruntime
    (same numbers as dlib to ~1e-7, 15x faster here, as dlib-bin has no BLAS); ``dlib``: dlib itself.

    Raises:
        ConfigError: an unknown name.
    """
    if name == "dlib-onnx":
        return OnnxDlibResnetEmbedder(flip=True)
    if name == "dlib":
        return DlibResnetEmbedder(flip=True)
    if name.startswith("onnx:"):
        return OnnxArcFaceEmbedder(name.removeprefix("onnx:"))
    raise ConfigError(f"unknown embedder {name!r} (known: dlib-onnx, dlib, onnx:/path/to/model.onnx)")


_ANALYZERS: dict[tuple[Any, ...], FaceAnalyzer] = {}


def get_analyzer(detector: DetectorName = "hog", max_pixels: int = DEFAULT_MAX_PIXELS, **options: Any) -> FaceAnalyzer:
    """Return a cached analyzer for these options (models load once per process)."""
    key = (detector, max_pixels, tuple(sorted(options.items())))
    if key not in _ANALYZERS:
        _ANALYZERS[key] = FaceAnalyzer(detector=detector, max_pixels=max_pixels, **options)
    return _ANALYZERS[key]
