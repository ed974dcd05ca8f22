"""Time dlib's face descriptor against its ONNX conversion (:mod:`facetrace.vision.dlib_onnx`).

Single-threaded on both sides (the pipeline parallelises with processes). Prints the median
and best wall time per run and per chip for one chip, and for a chip with its mirror image
(what ``flip=True`` computes), plus the one-off conversion cost::

    .venv/bin/python bench/dlib_onnx_timing.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetrace.vision import models
from facetrace.vision.dlib_onnx import MODEL_FILE, OnnxDlibResnetEmbedder, load_dlib_resnet


def _a_chip() -> np.ndarray:
    """Return a real aligned chip from the dev faces when there are some, else noise
    (the network's cost does not depend on the pixels)."""
    import dlib

    from facetrace.vision.decode import load_image
    from facetrace.vision.detect import detect_faces

    root = Path(__file__).resolve().parents[1].parent / "shared/data/faces-dev"
    for path in sorted(root.glob("*/*.jpg"))[:20]:
        image = load_image(path)
        detections = detect_faces(image, detector="hog", cnn_fallback=False)
        if detections:
            left, top, right, bottom = detections[0].box
            shape = models.landmarks5()(image, dlib.rectangle(left, top, right - 1, bottom - 1))
            return np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25))
    return np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()

    start = time.perf_counter()
    load_dlib_resnet(models.model_path(MODEL_FILE))
    print(f"conversion (parse + build ONNX): {1000 * (time.perf_counter() - start):.0f} ms")

    chip = _a_chip()
    pair = [chip, np.ascontiguousarray(chip[:, ::-1])]
    dlib_net = models.resnet_descriptor()
    onnx = OnnxDlibResnetEmbedder(flip=False, threads=args.threads)

    rows = [
        ("dlib", 1, _time(lambda: dlib_net.compute_face_descriptor([chip]), args.repeats)),
        ("dlib", 2, _time(lambda: dlib_net.compute_face_descriptor(pair), args.repeats)),
        ("onnx", 1, _time(lambda: onnx.descriptors([chip]), args.repeats)),
        ("onnx", 2, _time(lambda: onnx.descriptors(pair), args.repeats)),
    ]
    print(f"{'engine':6} {'batch':>5} {'median ms/run':>14} {'best ms/run':>12} {'median ms/chip':>15}")
    for engine, batch, (median, best) in rows:
        print(f"{engine:6} {batch:>5} {median:>14.1f} {best:>12.1f} {median / batch:>15.1f}")
    for batch in (1, 2):
        dlib_ms = next(m for e, b, (m, _) in rows if e == "dlib" and b == batch)
        onnx_ms = next(m for e, b, (m, _) in rows if e == "onnx" and b == batch)
        print(f"speed-up, batch {batch}: {dlib_ms / onnx_ms:.1f}x")


if __name__ == "__main__":
    main()
