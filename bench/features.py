"""Extract, once, everything the accuracy experiments need from every image of the protocol split.

For each image: the largest face's dlib descriptor of the aligned chip and of its mirror (each
L2-normalised), the quality score, and which detector found it (``hog``, or ``cnn`` when the
fallback was needed). Variants (flip or not, cosine or L2, score normalisation, fallback or not)
are then evaluated offline from this cache. Cached as .npz under $FACETRACE_BENCH_CACHE
(default: bench/.cache).

    .venv/bin/python bench/features.py [DATASET_DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from facetrace.evaluation.protocol import build_split  # noqa: E402
from facetrace.vision.embed import DlibResnetEmbedder, l2_normalise  # noqa: E402
from facetrace.vision.parallel import analyze_paths  # noqa: E402


class TwoViewEmbedder(DlibResnetEmbedder):
    """Returns [plain | mirrored] descriptors side by side (256 values), each half unit-norm."""

    def __init__(self) -> None:
        super().__init__(flip=False)
        self.model_id = "dlib-resnet-v1/two-view"

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        plain = super().embed_chips(chips)
        mirrored = super().embed_chips([np.ascontiguousarray(c[:, ::-1]) for c in chips])
        return np.hstack([plain, mirrored])


def cache_dir() -> Path:
    return Path(os.environ.get("FACETRACE_BENCH_CACHE", REPO_ROOT / "bench" / ".cache"))


def default_dataset_dir() -> Path:
    return Path(os.environ.get("FACETRACE_DATASET", REPO_ROOT.parent / "shared" / "data" / "faces-dev"))


def extract(dataset_dir: Path, workers: int = 0, *, refresh: bool = False) -> dict[str, np.ndarray]:
    """Return the features of every split image (cached). Keys: paths, plain, mirror, quality,
    detector (0 = none, 1 = hog, 2 = cnn), seconds."""
    target = cache_dir() / f"features-{dataset_dir.name}.npz"
    if target.exists() and not refresh:
        return dict(np.load(target, allow_pickle=False))
    split = build_split(dataset_dir)
    paths = [str(s.path) for s in split.all_samples()]
    plain = np.zeros((len(paths), 128), np.float32)
    mirror = np.zeros((len(paths), 128), np.float32)
    quality = np.zeros(len(paths), np.float32)
    detector = np.zeros(len(paths), np.int8)
    start = time.perf_counter()
    options = {"embedder": TwoViewEmbedder()}
    for i, result in enumerate(analyze_paths(paths, workers=workers, largest_only=True, options=options)):
        if isinstance(result, list) and result:
            face = result[0]
            plain[i], mirror[i] = face.embedding[:128], face.embedding[128:]
            quality[i] = face.quality.score
            detector[i] = 1 if face.detector == "hog" else 2
        if i % 500 == 0:
            print(f"{i}/{len(paths)} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "paths": np.array(paths),
        "plain": l2_normalise(plain),
        "mirror": l2_normalise(mirror),
        "quality": quality,
        "detector": detector,
        "seconds": np.array(seconds),
    }
    np.savez(target, **data)  # type: ignore[arg-type]
    return data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset_dir())
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--refresh", action="store_true")
    args = parser.parse_args()
    out = extract(args.dataset, args.workers, refresh=args.refresh)
    print(f"{len(out['paths'])} images, {float(out['seconds']):.0f} s, no face: {(out['detector'] == 0).sum()}")
