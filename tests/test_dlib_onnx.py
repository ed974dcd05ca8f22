"""The ONNX conversion of dlib's face descriptor must reproduce dlib on real faces."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import pytest

from facetrace.errors import ConfigError
from facetrace.vision import models
from facetrace.vision.decode import load_image
from facetrace.vision.detect import detect_faces
from facetrace.vision.dlib_onnx import (
    MODEL_FILE,
    OnnxDlibResnetEmbedder,
    load_dlib_resnet,
    parse_dlib_resnet,
)
from facetrace.vision.embed import DlibResnetEmbedder, Embedder

REPO_ROOT = Path(__file__).resolve().parents[1]
N_FACES = 10


def _faces_dir() -> Path | None:
    # The committed test subset wins; the shared development set is the fallback.
    for candidate in (REPO_ROOT / "tests/data/faces", REPO_ROOT.parent / "shared/data/faces-dev"):
        if candidate.is_dir():
            return candidate
    return None


def _image_paths(root: Path) -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png"}
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    # Spread the picks over the set rather than taking one person's photos.
    step = max(1, len(paths) // (3 * N_FACES))
    return paths[::step]


@pytest.fixture(scope="module")
def chips() -> list[np.ndarray]:
    root = _faces_dir()
    if root is None:
        pytest.skip("no face images (tests/data/faces or shared/data/faces-dev)")
    predictor = models.landmarks5()
    out: list[np.ndarray] = []
    for path in _image_paths(root):
        image = load_image(path)
        detections = detect_faces(image, detector="hog", cnn_fallback=False)
        if not detections:
            continue
        left, top, right, bottom = detections[0].box
        shape = predictor(image, dlib.rectangle(left, top, right - 1, bottom - 1))
        out.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        if len(out) == N_FACES:
            break
    if len(out) < 3:
        pytest.skip("too few faces found in the test images")
    return out


def test_parse_reads_the_whole_network() -> None:
    net = parse_dlib_resnet(models.model_path(MODEL_FILE))
    assert (net.rows, net.cols) == (150, 150)
    assert all(100.0 < m < 130.0 for m in net.mean_rgb)
    convs = [layer for layer in net.layers if layer.spec.kind == "con"]
    assert len(convs) == 29
    assert convs[0].params["weight"].shape == (32, 3, 7, 7)
    # dlib's default padding: none for strided convs, "same" for stride 1.
    assert convs[0].params["pads"] == (0, 0)
    assert convs[1].params["pads"] == (1, 1)
    assert net.layers[-1].params["weight"].shape == (256, 128)
    assert net.layers[-1].params["bias"] is None


def test_descriptors_match_dlib(chips: list[np.ndarray]) -> None:
    reference = np.array(models.resnet_descriptor().compute_face_descriptor(chips), dtype=np.float32)
    ours = OnnxDlibResnetEmbedder(flip=False).descriptors(chips)
    assert ours.shape == reference.shape == (len(chips), 128)
    assert np.abs(ours - reference).max() < 1e-5
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999


def test_flip_embedding_matches_dlib_embedder(chips: list[np.ndarray]) -> None:
    reference = DlibResnetEmbedder(flip=True).embed_chips(chips)
    embedder: Embedder = OnnxDlibResnetEmbedder(flip=True)  # satisfies the protocol
    ours = embedder.embed_chips(chips)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.abs(ours - reference).max() < 1e-5
    assert (ours * reference).sum(1).min() >= 0.9999
    # Same numbers, so the same model: templates from either embedder are comparable.
    assert embedder.model_id == DlibResnetEmbedder(flip=True).model_id
    assert OnnxDlibResnetEmbedder(flip=False).model_id == DlibResnetEmbedder(flip=False).model_id


def test_threads_do_not_change_the_result(chips: list[np.ndarray]) -> None:
    one = OnnxDlibResnetEmbedder(threads=1).embed_chips(chips[:2])
    two = OnnxDlibResnetEmbedder(threads=2).embed_chips(chips[:2])
    np.testing.assert_allclose(one, two, atol=1e-6)


def test_empty_and_bad_chips() -> None:
    embedder = OnnxDlibResnetEmbedder()
    assert embedder.embed_chips([]).shape == (0, 128)
    with pytest.raises(ValueError):
        embedder.embed_chips([np.zeros((112, 112, 3), dtype=np.uint8)])
    with pytest.raises(ValueError):
        embedder.embed_chips([np.zeros((150, 150, 3), dtype=np.float32)])
    with pytest.raises(ValueError):
        OnnxDlibResnetEmbedder(threads=0)


def test_other_files_are_refused(tmp_path: Path) -> None:
    data = models.model_path(MODEL_FILE).read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError):
        load_dlib_resnet(truncated)
    with pytest.raises(ConfigError):
        load_dlib_resnet(models.model_path("shape_predictor_5_face_landmarks.dat"))
    with pytest.raises(ConfigError):
        load_dlib_resnet(tmp_path / "missing.dat")
