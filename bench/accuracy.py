"""Accuracy of facetrace versus the face_recognition library, and the check of facetrace's calibration.

Follows ../shared/eval-protocol.md on a dataset folder (default ../shared/data/faces-dev), in one run:
1. facetrace: the product's pipeline (HOG + CNN fallback, 5-point chip, dlib ResNet with its mirror,
   ONNX runtime) and score (cosine with symmetric cohort normalisation); also plain cosine, for the
   before/after of the normalisation.
2. face_recognition defaults (bench/peer.py), same split.
3. FNIR at FPIR 0.01 of facetrace / of the peer (goal: <= 0.6) and rank-1 (goal: >= 0.95).
4. Calibration check: for each half of the identities (a fixed hash split), build FMR(s) on that half
   and, on the other half (never seen by it), compare the observed FPIR at the policy threshold with
   targets 0.1, 0.01 and 0.001, with 95% Wilson intervals.
5. Plots: docs/accuracy_det.png (DET of both systems) and docs/accuracy_calibration.png.

    .venv/bin/python bench/accuracy.py [DATASET_DIR] [--workers N] [--json] [--plots DIR] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import peer  # noqa: E402

from facetrace.config import get_settings  # noqa: E402
from facetrace.evaluation.protocol import Split, build_split, compute_metrics, det_curve  # noqa: E402
from facetrace.evaluation.run import (  # noqa: E402
    calibrate_embedded,
    embed_samples,
    evaluate_embedded,
    identity_half,
    verify_calibration,
)
from facetrace.gallery import Gallery  # noqa: E402
from facetrace.vision.parallel import default_workers  # noqa: E402

TARGETS = (0.1, 0.01, 0.001)
KEYS = ("gallery", "rank1", "rank5", "fnir_at_fpir_0.01", "fnir_at_fpir_0.1")


def half(split: Split, which: int) -> Split:
    """Return the part of ``split`` whose identities fall in hash half ``which``."""

    def keep(samples: list[Any]) -> list[Any]:
        return [s for s in samples if identity_half(s.identity) == which]

    return Split(keep(split.gallery), keep(split.mated), keep(split.nonmated))


def run(dataset: Path, workers: int, with_peer: bool) -> dict[str, Any]:
    split = build_split(dataset)
    samples = split.all_samples()
    gallery = Gallery(get_settings())
    model_id, options = gallery.model_id, gallery.analyzer_options
    start = time.perf_counter()
    embedded = embed_samples(samples, workers=workers, options=options)
    vectors = dict(zip((s.path for s in samples), embedded.vectors, strict=True))
    ours = evaluate_embedded(split, vectors, model_id)
    seconds = time.perf_counter() - start
    cosine = evaluate_embedded(split, vectors, model_id, normalise=False)
    failures = sum(v is None for v in embedded.vectors)
    report: dict[str, Any] = {
        "dataset": str(dataset),
        "split": split.counts(),
        "workers": workers,
        "facetrace": {
            **{k: ours[k] for k in KEYS},
            "failure_to_extract": failures / len(samples),
            "images_per_s": len(samples) / seconds,
        },
        "facetrace_cosine_only": {k: cosine[k] for k in KEYS},
        "_det": {"facetrace": det_curve(ours["mated"], ours["nonmated"], 40)},
    }
    peer_run = peer.run_peer(dataset, workers, split=split) if with_peer else None
    # Leakage-free figures and calibration check: evaluate each half of the identities with a cohort
    # and a calibration built only from the other half (the shipped cohort holds faces-dev distractors).
    checks, halves = [], []
    for which in (0, 1):
        this, other = half(split, which), half(split, 1 - which)
        cohort = np.vstack(
            [vectors[s.path] for s in other.gallery if "distractors" in str(s.path) and vectors[s.path] is not None]
        )
        calibration = calibrate_embedded(other, vectors, model_id, source=f"half {1 - which}", cohort=cohort)
        rows = verify_calibration(calibration, this, vectors, model_id, TARGETS, cohort=cohort)
        checks.append({"built_on_half": 1 - which, "verified_on_half": which, "cohort": len(cohort), "rows": rows})
        report.setdefault("_calibrations", []).append(calibration)
        ours_half = evaluate_embedded(this, vectors, model_id, cohort=cohort)
        row: dict[str, Any] = {
            "half": which,
            "cohort_from_other_half": len(cohort),
            "facetrace": {k: ours_half[k] for k in KEYS},
        }
        if peer_run is not None:
            enrolled, matrix = peer.embedded(this.gallery, peer_run["embeddings"])
            ids = [s.identity for s in enrolled]
            mated = peer.probe_results(this.mated, peer_run["embeddings"], ids, matrix, mated=True)
            nonmated = peer.probe_results(this.nonmated, peer_run["embeddings"], ids, matrix, mated=False)
            row["face_recognition"] = {"gallery": len(enrolled), **compute_metrics(mated, nonmated)}
            row["fnir_at_fpir_0.01_ratio"] = ours_half["fnir_at_fpir_0.01"] / max(
                row["face_recognition"]["fnir_at_fpir_0.01"], 1e-9
            )
        halves.append(row)
    report["calibration_check"] = checks
    report["leakage_free_halves"] = halves
    if peer_run is not None:
        theirs = peer_run
        report["face_recognition"] = {
            **{k: theirs[k] for k in KEYS},
            "failure_to_extract": theirs["failure_to_extract"],
            "images_per_s": theirs["images_per_s"],
        }
        report["_det"]["face_recognition"] = det_curve(theirs["mated_results"], theirs["nonmated_results"], 40)
        report["fnir_at_fpir_0.01_ratio"] = report["facetrace"]["fnir_at_fpir_0.01"] / max(
            report["face_recognition"]["fnir_at_fpir_0.01"], 1e-9
        )
    return report


def plot(report: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, curve in report["_det"].items():
        xs, ys = zip(*curve, strict=True)
        ax.plot(xs, ys, marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("FPIR (non-mated searches returning a candidate above the threshold)")
    ax.set_ylabel("FNIR (mated searches not found at rank 1 above it)")
    ax.set_title("DET, open-set 1:N on faces-dev")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written.append(folder / "accuracy_det.png")
    fig.savefig(written[-1], dpi=110)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    calibration = report["_calibrations"][0]
    scores = np.linspace(calibration.scores[0], calibration.scores[-1] + 0.05, 200)
    left.semilogy(scores, [calibration.fmr(s) for s in scores], label="FMR(s), built on half 1")
    left.axvline(calibration.tail_start, color="grey", ls=":", label="beyond: extrapolated tail")
    left.set_xlabel("score (normalised)")
    left.set_ylabel("FMR(s)")
    left.set_title("Calibration curve")
    left.legend()
    for check in report["calibration_check"]:
        targets = [r["target_fpir"] for r in check["rows"]]
        observed = [max(r["observed_fpir"], 1e-4) for r in check["rows"]]
        errs = np.array(
            [[r["observed_fpir"] - r["ci95"][0], r["ci95"][1] - r["observed_fpir"]] for r in check["rows"]]
        ).T
        right.errorbar(
            targets, observed, yerr=errs, fmt="o", capsize=3, label=f"built on half {check['built_on_half']}"
        )
    grid = np.array([5e-4, 0.2])
    right.loglog(grid, grid, "k-", lw=0.8, label="observed = target")
    right.loglog(grid, grid * 2, "k:", lw=0.8, label="factor 2")
    right.loglog(grid, grid / 2, "k:", lw=0.8)
    right.set_xlabel("target FPIR (policy)")
    right.set_ylabel("observed FPIR on the other half")
    right.set_title("Calibration check on unseen identities")
    right.legend(fontsize=8)
    fig.tight_layout()
    written.append(folder / "accuracy_calibration.png")
    fig.savefig(written[-1], dpi=110)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description="facetrace vs face_recognition accuracy, and calibration check")
    parser.add_argument("dataset", nargs="?", type=Path, default=peer.default_dataset_dir())
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plots", type=Path, default=REPO_ROOT / "docs")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    report = run(args.dataset, args.workers or default_workers(), not args.no_peer)
    plots = plot(report, args.plots)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    public["plots"] = [str(p) for p in plots]
    if args.json:
        print(json.dumps(public, indent=2, default=float))
        return 0
    print(f"dataset {public['dataset']}: {public['split']}")
    systems = ["facetrace", "facetrace_cosine_only"] + (["face_recognition"] if "face_recognition" in public else [])
    print(f"{'system':24} " + " ".join(f"{k:>18}" for k in KEYS))
    for name in systems:
        print(f"{name:24} " + " ".join(f"{public[name][k]:>18.4f}" for k in KEYS))
    if "fnir_at_fpir_0.01_ratio" in public:
        print(
            f"FNIR@FPIR0.01 ratio facetrace / face_recognition: {public['fnir_at_fpir_0.01_ratio']:.3f} (goal <= 0.6)"
        )
    for check in public["calibration_check"]:
        for row in check["rows"]:
            print(
                f"calibration half {check['built_on_half']} -> {check['verified_on_half']}: target {row['target_fpir']}"
                f" observed {row['observed_fpir']:.4f} CI {row['ci95']} ratio {row['ratio']}"
                f" ({row['nonmated_searches']} non-mated searches)"
            )
    for row in public["leakage_free_halves"]:
        line = f"half {row['half']} (cohort and calibration from the other half): facetrace " + ", ".join(
            f"{k} {row['facetrace'][k]:.4f}" for k in KEYS[1:]
        )
        if "face_recognition" in row:
            line += f" | face_recognition FNIR@0.01 {row['face_recognition']['fnir_at_fpir_0.01']:.4f}"
            line += f" | ratio {row['fnir_at_fpir_0.01_ratio']:.3f}"
        print(line)
    print("plots:", ", ".join(public["plots"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
