"""An operator's own ONNX face embedder (ArcFace-style), as a replacement for dlib's descriptor.

Configured with ``FACETRACE_EMBEDDER=onnx:/path/to/model.onnx`` — a file the operator supplies;
nothing is downloaded. The model takes NCHW float32 RGB of 112x112 faces scaled to [-1, 1] (the
InsightFace convention) and returns one embedding per face; faces are aligned to the standard
ArcFace 5-point template (eye centres, nose tip, mouth corners, from dlib's 68-point landmarks).
The model id is ``onnx:`` plus the first 12 hex digits of the file's sha256, so templates of
different files are never compared. No calibration or cohort ships for such a model: searches
run, but no candidate is called a match until ``facetrace calibrate`` is run for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrace.errors import ConfigError
from facetrace.vision.embed import l2_normalise

# Where the five points sit in a 112x112 ArcFace chip (InsightFace's reference template).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def arcface_points(landmarks68: np.ndarray) -> np.ndarray:
    """Return the 5 ArcFace points (left eye, right eye, nose tip, left and right mouth corners, as
    seen in the image) from dlib's 68 landmarks."""
    pts = np.asarray(landmarks68, dtype=np.float32)
    return np.array(
        [pts[36:42].mean(axis=0), pts[42:48].mean(axis=0), pts[30], pts[48], pts[54]],
        dtype=np.float32,
    )


class OnnxArcFaceEmbedder:
    """Runs an ONNX embedding model on ArcFace-aligned 112x112 chips (mean with the mirrored chip)."""

    chip_size = 112
    chip_padding = 0.0

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"ONNX face model {self.path}: cannot read ({exc.strerror})") from None
        self.model_id = f"onnx:{hashlib.sha256(data).hexdigest()[:12]}"
        self._data = data
        self._threads = threads
        self._session: Any = None
        self._dim = 0

    @property
    def dim(self) -> int:
        """The embedding size, read by running the model once on a blank chip."""
        if not self._dim:
            self._dim = self._run(np.zeros((1, 3, self.chip_size, self.chip_size), np.float32)).shape[1]
        return self._dim

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            try:
                self._session = ort.InferenceSession(self._data, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ConfigError(f"ONNX face model {self.path.name}: cannot load ({exc})") from None
        name = self._session.get_inputs()[0].name
        out = np.asarray(self._session.run(None, {name: batch})[0], dtype=np.float32)
        return out.reshape(len(batch), -1)

    def align(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        """Return the 112x112 RGB chip of the face whose 68 landmarks are given."""
        matrix, _ = cv2.estimateAffinePartial2D(arcface_points(landmarks68), ARCFACE_TEMPLATE, method=cv2.LMEDS)
        if matrix is None:
            raise ConfigError("cannot align the face to the ArcFace template")
        return cv2.warpAffine(image, matrix, (self.chip_size, self.chip_size), borderMode=cv2.BORDER_REPLICATE)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """Return one L2-normalised row per 112x112 RGB chip (the chip and its mirror averaged)."""
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        stack = np.stack(list(chips) + [c[:, ::-1] for c in chips]).astype(np.float32)
        batch = np.ascontiguousarray(((stack - 127.5) / 127.5).transpose(0, 3, 1, 2))
        out = self._run(batch)
        return l2_normalise(out[: len(chips)] + out[len(chips) :])
