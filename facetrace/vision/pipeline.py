"""The face pipeline: detect -> 5-point landmarks -> aligned chip -> quality -> embedding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlib
import numpy as np

from facetrace.errors import ConfigError
from facetrace.vision import models
from facetrace.vision.decode import DEFAULT_MAX_PIXELS, load_image
from facetrace.vision.detect import Detection, DetectorName, detect_faces
from facetrace.vision.dlib_onnx import OnnxDlibResnetEmbedder
from facetrace.vision.embed import DlibResnetEmbedder, Embedder, l2_normalise
from facetrace.vision.onnx_arcface import OnnxArcFaceEmbedder
from facetrace.vision.quality import Quality, assess


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

    @property
    def model_id(self) -> str:
        return self.embedder.model_id + ("+68" if self.second_alignment else "")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Return the detections in ``image``, largest first."""
        return detect_faces(
            image, detector=self.detector, max_side=self.detect_max_side, cnn_fallback=self.cnn_fallback
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
        chips, shapes = [], []
        for det in detections:
            left, top, right, bottom = det.box
            shape = predictor(image, dlib.rectangle(left, top, right - 1, bottom - 1))
            shapes.append(shape)
            chips.append(
                dlib.get_face_chip(image, shape, size=self.embedder.chip_size, padding=self.embedder.chip_padding)
            )
        if self.own_alignment:
            predictor68 = models.landmarks68()
            chips = [
                self.embedder.align(  # type: ignore[attr-defined]
                    image,
                    np.array(
                        [
                            (p.x, p.y)
                            for p in predictor68(
                                image, dlib.rectangle(d.box[0], d.box[1], d.box[2] - 1, d.box[3] - 1)
                            ).parts()
                        ]
                    ),
                )
                for d in detections
            ]
        embeddings = self.embedder.embed_chips(chips)
        if self.second_alignment:
            predictor68 = models.landmarks68()
            extra = [
                dlib.get_face_chip(
                    image,
                    predictor68(image, dlib.rectangle(d.box[0], d.box[1], d.box[2] - 1, d.box[3] - 1)),
                    size=self.embedder.chip_size,
                    padding=self.embedder.chip_padding,
                )
                for d in detections
            ]
            embeddings = l2_normalise(embeddings + self.embedder.embed_chips(extra))
        faces = []
        for det, shape, chip, emb in zip(detections, shapes, chips, embeddings, strict=True):
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
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
