"""Ingest throughput: facetrace enrollment + search versus the face_recognition library.

On the protocol split of a dataset (default ../shared/data/faces-dev), with 1 worker and with
every core:
- facetrace: enroll the gallery images through the product (`Gallery.enroll`: decode, detect,
  align, quality, embed, SQLite + media + FAISS), then search every probe through the product
  (`Gallery.search_faces`); images/s = images / wall time of both.
- the peer: `face_recognition` defaults (`face_locations` + `face_encodings`, one process per
  worker), brute-force search.
Prints both, their ratio, each one's failure-to-extract rate and rank-1 under the protocol.

    .venv/bin/python bench/ingest.py [DATASET_DIR] [--identity-stride K] [--json]

The default stride 4 (every 4th identity, ~1,600 images) keeps a run to ~10 minutes on 2 cores;
``--identity-stride 1`` measures the whole folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import peer  # noqa: E402

from facetrace.config import get_settings  # noqa: E402
from facetrace.evaluation.protocol import ProbeResult, Split, build_split, compute_metrics  # noqa: E402
from facetrace.gallery import EnrollItem, Gallery  # noqa: E402
from facetrace.vision.parallel import analyze_paths, default_workers  # noqa: E402


def run_facetrace(split: Split, workers: int) -> dict[str, Any]:
    """Enroll the split's gallery and search its probes through the product; return figures."""
    with tempfile.TemporaryDirectory(prefix="ft-ingest-") as home:
        gallery = Gallery(get_settings(home=Path(home), workers=workers, min_quality=0.0))
        items = [
            EnrollItem(s.identity, s.identity, [s.path], source="benchmark", legal_basis="research")
            for s in split.gallery
        ]
        _ = gallery.analyzer  # load the models before the clock starts, as the peer's pool does
        start = time.perf_counter()
        outcome = gallery.enroll(items, workers=workers)
        probes = split.mated + split.nonmated
        failures = len(outcome.errors)
        mated: list[ProbeResult] = []
        nonmated: list[ProbeResult] = []
        results = analyze_paths(
            [s.path for s in probes], workers=workers, largest_only=True, options=gallery.analyzer_options
        )
        for number, (sample, faces) in enumerate(zip(probes, results, strict=True)):
            candidates: list[tuple[str, float]] = []
            if isinstance(faces, list) and faces:
                found = gallery.search_faces(faces[:1], top_k=10).to_dict()["faces"][0]["candidates"]
                candidates = [(c["person"]["external_id"], c["score"]) for c in found]
            else:
                failures += 1
            target = mated if number < len(split.mated) else nonmated
            target.append(ProbeResult(sample.identity if number < len(split.mated) else None, candidates))
        seconds = time.perf_counter() - start
        gallery.close()
    images = len(split.gallery) + len(probes)
    return {
        "workers": workers,
        "images": images,
        "seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 2),
        "failure_to_extract": round(failures / images, 4),
        **{k: round(v, 4) for k, v in compute_metrics(mated, nonmated).items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="facetrace vs face_recognition ingest throughput")
    parser.add_argument("dataset", nargs="?", type=Path, default=peer.default_dataset_dir())
    parser.add_argument("--identity-stride", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    split = build_split(args.dataset, identity_stride=args.identity_stride)
    cores = default_workers()
    rows = []
    for workers in sorted({1, cores}):
        ours = run_facetrace(split, workers)
        theirs = peer.printable(peer.run_peer(args.dataset, workers, split=split))
        rows.append(
            {
                "workers": workers,
                "facetrace": ours,
                "face_recognition": {
                    k: round(v, 4) if isinstance(v, float) else v
                    for k, v in theirs.items()
                    if k in ("images", "seconds", "images_per_s", "failure_to_extract", "rank1", "rank5")
                },
                "throughput_ratio": round(ours["images_per_s"] / theirs["images_per_s"], 2),
            }
        )
    report = {
        "dataset": str(args.dataset),
        "identity_stride": args.identity_stride,
        "split": split.counts(),
        "runs": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"dataset {args.dataset} (every {args.identity_stride} identity): {split.counts()}")
        for row in rows:
            a, b = row["facetrace"], row["face_recognition"]
            print(
                f"{row['workers']} worker(s): facetrace {a['images_per_s']:.1f} img/s "
                f"(FTX {a['failure_to_extract']:.2%}, rank-1 {a['rank1']:.3f}) | "
                f"face_recognition {b['images_per_s']:.1f} img/s "
                f"(FTX {b['failure_to_extract']:.2%}, rank-1 {b['rank1']:.3f}) | ratio {row['throughput_ratio']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
