"""Experiment for field photos (#16): occlusion-aware scoring, "the score of the visible part".

For a probe whose lower face (or eyes) is covered, the covered region of the aligned chip is filled with
grey in the probe *and* in every reference, both are embedded, and they are compared: the descriptor then
sees the same visible part on both sides. The covered region is given (an oracle): this measures the
ceiling of the idea before any occlusion detector. Raw cosine of the 5-point chip with its flipped twin
(no cohort normalisation, no 68-point chip), so every row compares like with like.

Probes: every 9th mated and every 4th non-mated probe of the protocol's split (bench/degraded.py
--quick), clean and degraded by ``lower_face_covered`` and ``eyes_covered`` of
facetrace.evaluation.degrade; references stay clean. FNIR at FPIR 0.01 and 0.1 take the threshold from
each row's own non-mated probes (the protocol). Results: bench/results/visible_part.json, and
docs/accuracy.md ("What was tried for field photos"). About 1 hour on 2 cores (the covered probes go
through the CNN detector); embeddings are cached in bench/.cache/visible_part.

    .venv/bin/python bench/visible_part.py [DATASET_DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import peer  # noqa: E402

from facetrace.evaluation import degrade  # noqa: E402
from facetrace.evaluation.protocol import Sample, build_split, compute_metrics  # noqa: E402
from facetrace.evaluation.run import probe_results  # noqa: E402
from facetrace.vision.decode import load_image  # noqa: E402
from facetrace.vision.pipeline import FaceAnalyzer, get_analyzer  # noqa: E402

CACHE = REPO_ROOT / "bench" / ".cache" / "visible_part"
RESULTS = REPO_ROOT / "bench" / "results" / "visible_part.json"
# Rows of the 150-px aligned chip (dlib's get_face_chip, padding 0.25), measured with the 68-point
# landmarks on real chips: eyes at row 46, nose tip 76, mouth 105, chin 146.
UPPER_FROM = 60  # "upper visible": rows from mid-nose down are filled (a mask, a bandage, a scarf)
EYES_BAND = (24, 68)  # "lower visible": the band of brows and eyes is filled (a blindfold, dark glasses)
PARTS = ("full", "upper_visible", "lower_visible")
CONDITIONS = ("clean", "lower_face_covered", "eyes_covered")

_analyzer: FaceAnalyzer | None = None


def part_chips(chip: np.ndarray) -> list[np.ndarray]:
    """Return the chip whole, with its lower face filled, and with its eyes filled (grey 128)."""
    upper, lower = chip.copy(), chip.copy()
    upper[UPPER_FROM:] = 128
    lower[EYES_BAND[0] : EYES_BAND[1]] = 128
    return [chip, upper, lower]


def embed_one(job: tuple[str, str, str]) -> tuple[str, np.ndarray | None]:
    """Return the key and the three part templates of the largest face of one image (degraded first)."""
    global _analyzer
    if _analyzer is None:
        _analyzer = get_analyzer(second_alignment=False)
    key, path, condition = job
    image = load_image(path)
    if condition != "clean":
        found = _analyzer.analyze(image, largest_only=True)
        geometry = (
            degrade.FaceGeometry.from_landmarks(
                tuple(float(v) for v in found[0].box),  # type: ignore[arg-type]
                np.asarray(found[0].landmarks),
            )
            if found
            else degrade.FaceGeometry.guess(image)
        )
        image = degrade.degrade(image, condition, geometry, Path(path).name)
    faces = _analyzer.analyze(image, largest_only=True, keep_chips=True)
    if not faces or faces[0].chip is None:
        return key, None
    return key, np.asarray(_analyzer.embedder.embed_chips(part_chips(faces[0].chip)), np.float32)


def embed_all(samples: list[Sample], condition: str, workers: int) -> dict[str, np.ndarray | None]:
    """Return the part templates of every sample under ``condition`` (cached)."""
    cache = CACHE / f"{condition}-{len(samples)}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())  # noqa: S301 - our own cache file
    started = time.perf_counter()
    jobs = [(str(s.path), str(s.path), condition) for s in samples]
    with Pool(workers) as pool:
        out = dict(pool.imap_unordered(embed_one, jobs, chunksize=8))
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    print(f"{condition}: {len(samples)} images in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return out


def results(
    probes: dict[str, np.ndarray | None],
    part: int,
    references: np.ndarray,
    samples: list[Sample],
    gallery_ids: list[str],
    mated: bool,
) -> list[Any]:
    """Return the protocol's probe results of ``samples`` scored by raw cosine on template ``part``."""
    found = [probes[str(s.path)] for s in samples]
    rows = np.vstack([f[part] for f in found if f is not None]) @ references.T
    truths = [s.identity if mated else None for s in samples]
    return probe_results(rows, [f is not None for f in found], truths, gallery_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=peer.default_dataset_dir())
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    split = build_split(args.dataset)
    mated, nonmated = split.mated[::9], split.nonmated[::4]
    references = embed_all(split.gallery, "gallery", args.workers)
    enrolled = [s for s in split.gallery if references[str(s.path)] is not None]
    report: dict[str, Any] = {"gallery": len(enrolled), "mated": len(mated), "nonmated": len(nonmated), "rows": {}}
    for condition in CONDITIONS:
        probes = embed_all(mated + nonmated, condition, args.workers)
        for number, part in enumerate(PARTS):
            matrix = np.vstack([references[str(s.path)][number] for s in enrolled])  # type: ignore[index]

            ids = [s.identity for s in enrolled]
            metrics = compute_metrics(
                results(probes, number, matrix, mated, ids, True), results(probes, number, matrix, nonmated, ids, False)
            )
            row = {k: round(metrics[k], 3) for k in ("rank1", "fnir_at_fpir_0.01", "fnir_at_fpir_0.1")}
            report["rows"][f"{condition}/{part}"] = row
            print(condition, part, row, flush=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
