"""An operator's own ONNX embedder plugs into the pipeline and the gallery (FACETRACE_EMBEDDER=onnx:PATH).

The model here is a small ONNX graph made in the test (a fixed random projection of the aligned chip),
standing in for an ArcFace file an operator would supply: what is tested is the plumbing — alignment,
batching, model id, storage, search — and that no match is declared without a calibration for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from facetrace.config import get_settings
from facetrace.errors import ConfigError
from facetrace.gallery import EnrollItem, Gallery
from facetrace.vision.pipeline import FaceAnalyzer


def _projection_model(path: Path, dim: int = 64) -> Path:
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(3 * 112 * 112, dim)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["out"])],
        "projection",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", dim])],
        initializer=[weights, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_embedder_aligns_and_embeds(tmp_path: Path, faces_dir: Path) -> None:
    model = _projection_model(tmp_path / "arcface.onnx")
    analyzer = FaceAnalyzer(embedder_name=f"onnx:{model}")
    image = sorted((faces_dir / "Ashanti").glob("*.jpg"))[0]
    faces = analyzer.analyze_file(image)
    assert len(faces) == 1
    face = faces[0]
    assert face.model_id.startswith("onnx:") and len(face.model_id) == 17
    assert face.embedding.shape == (64,) and np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    again = analyzer.analyze_file(image)[0]
    assert float(face.embedding @ again.embedding) == pytest.approx(1.0, abs=1e-5)


def test_gallery_with_an_operator_model_searches_but_declares_no_match_uncalibrated(
    tmp_path: Path, tmp_home: Path, faces_dir: Path
) -> None:
    model = _projection_model(tmp_path / "arcface.onnx")
    gallery = Gallery(get_settings(workers=1, embedder=f"onnx:{model}"))
    try:
        names = ["Ashanti", "Bill_Paxton", "Aaron_Peirsol"]
        items = [EnrollItem(n, n, sorted((faces_dir / n).glob("*.jpg"))[:1], "test", "test") for n in names]
        assert gallery.enroll(items, workers=1).images_enrolled == 3
        probe = sorted((faces_dir / "Ashanti").glob("*.jpg"))[0].read_bytes()
        result = gallery.search(probe, top_k=3).to_dict()
        assert result["gallery"]["model_id"].startswith("onnx:") and result["policy"]["calibrated"] is False
        top = result["faces"][0]["candidates"][0]
        assert top["person"]["external_id"] == "Ashanti" and top["similarity"] == pytest.approx(1.0, abs=1e-4)
        assert result["faces"][0]["match"] is None and "no calibration" in top["reason"]
    finally:
        gallery.close()


def test_a_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        FaceAnalyzer(embedder_name=f"onnx:{tmp_path / 'missing.onnx'}")
