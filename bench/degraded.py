"""Field conditions: accuracy and honest decisions on degraded probes, facetrace against face_recognition.

The protocol of ../shared/eval-protocol.md on faces-dev, with every selected probe degraded in turn by
each condition of :mod:`facetrace.evaluation.degrade` (small, blurred, compressed, dark, noisy, lower face
covered, eyes covered, grey and flat); references stay clean. "clean" is the same probes undegraded, and
"large_pose" the clean probes whose estimated yaw (the product's 5-point estimate) is at least 25 degrees.

Per condition, for both systems in the same run: failure to extract, rank-1, FNIR at FPIR 0.01 and 0.1
(the threshold from that condition's own non-mated probes, as the protocol defines it), and at a fixed
threshold: for facetrace its own policy (the shipped calibration, target FPIR 0.01 for the gallery's size,
the quality gate), for face_recognition its default tolerance 0.6 and the distance that gives FPIR 0.01 on
clean probes. The observed false-match rate at the fixed threshold comes with its 95% Wilson interval.
Pooled over conditions, facetrace's figures per probe-quality band show what a quality score says about
the error rate.

Embeddings are cached in bench/.cache/degraded (per system, variant and condition), so that a second run,
or a run of another facetrace variant, embeds only what changed.

    .venv/bin/python bench/degraded.py [DATASET_DIR] [--quick] [--workers N] [--json] [--no-peer]
        [--variant NAME] [--plot PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import peer  # noqa: E402

from facetrace.config import get_settings  # noqa: E402
from facetrace.evaluation import degrade  # noqa: E402
from facetrace.evaluation.protocol import (  # noqa: E402
    ProbeResult,
    Sample,
    build_split,
    compute_metrics,
    threshold_at_fpir,
    wilson_interval,
)
from facetrace.evaluation.run import GalleryScorer, probe_results  # noqa: E402
from facetrace.gallery import Gallery  # noqa: E402
from facetrace.gallery.calibration import Calibration  # noqa: E402
from facetrace.vision.decode import ImageInput, load_image  # noqa: E402
from facetrace.vision.parallel import analyze_images, default_workers  # noqa: E402

CACHE = REPO_ROOT / "bench" / ".cache" / "degraded"
POLICY_FPIR = 0.01
PEER_TOLERANCE = 0.6
POSE_DEGREES = 25.0
QUALITY_BANDS = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 101.0)
#: The bands the product shows examiners (facetrace/gallery/quality_bands.json): unusable below the gate.
PRODUCT_BANDS = (0.0, 10.0, 40.0, 70.0, 101.0)
PRODUCT_BAND_NAMES = ("unusable", "poor", "fair", "good")
#: facetrace variants measured against each other: analyzer options on top of the product's.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "before": {"small_faces": False, "restore": False},  # the pipeline before this benchmark
    "no-restore": {"restore": False},
}


@dataclass
class FaceRecord:
    """What facetrace found in one image: its template, quality and geometry."""

    vector: np.ndarray
    quality: float
    quality_detail: dict[str, float]
    box: tuple[int, int, int, int]
    points: np.ndarray


def _encode(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _cache_path(system: str, variant: str, condition: str, keys: Sequence[str]) -> Path:
    """Return the cache file of one pass: it changes with the images and, for a degraded
    condition, with the degradations' source."""
    source = ""
    if condition in degrade.CONDITIONS:
        source = inspect.getsource(degrade.CONDITIONS[condition]) + inspect.getsource(degrade.degrade)
    digest = hashlib.sha256((source + "\n".join(keys)).encode()).hexdigest()[:12]
    return CACHE / f"{system}-{variant}-{condition}-{digest}.pkl"


def _cached(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if path.exists():
        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - our own cache file
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(result, handle)
    return result


def facetrace_pass(
    jobs: Iterator[tuple[str, ImageInput]], options: dict[str, Any], workers: int
) -> dict[str, FaceRecord | None]:
    """Return facetrace's largest face of every ``(key, image)``, or None where none was found."""
    out: dict[str, FaceRecord | None] = {}
    for key, _image, faces in analyze_images(jobs, workers=workers, largest_only=True, options=options):
        if isinstance(faces, list) and faces:
            face = faces[0]
            out[key] = FaceRecord(
                np.asarray(face.embedding, np.float32),
                face.quality.score,
                face.quality.as_dict(),
                face.box,
                np.asarray(face.landmarks, np.float64),
            )
        else:
            out[key] = None
    return out


def _geometry(record: FaceRecord | None, image: np.ndarray) -> degrade.FaceGeometry:
    if record is None:
        return degrade.FaceGeometry.guess(image)
    return degrade.FaceGeometry.from_landmarks(tuple(float(v) for v in record.box), record.points)  # type: ignore[arg-type]


def degraded_images(
    samples: Sequence[Sample], condition: str, clean: dict[str, FaceRecord | None]
) -> Iterator[tuple[str, ImageInput]]:
    """Yield ``(key, PNG image)`` of every sample degraded by ``condition`` (read and degraded lazily)."""
    for sample in samples:
        key = str(sample.path)
        image = load_image(sample.path)
        if condition != "clean":
            image = degrade.degrade(image, condition, _geometry(clean[key], image), sample.path.name)
        yield key, ImageInput(sample.path.name + ".png", _encode(image))


# ------------------------------------------------------------------------------------------ scoring
def _score_rows(
    samples: Sequence[Sample], vectors: dict[str, np.ndarray | None], score: Callable[[np.ndarray], np.ndarray]
) -> dict[str, np.ndarray]:
    """Return each sample's row of scores against the gallery, for the samples with a face (scored at once)."""
    found = [str(s.path) for s in samples if vectors.get(str(s.path)) is not None]
    rows = score(np.vstack([vectors[k] for k in found])) if found else []
    return dict(zip(found, rows, strict=True))


def _results(
    samples: Sequence[Sample], rows: dict[str, np.ndarray], gallery_ids: list[str], mated: bool
) -> list[ProbeResult]:
    ok = [str(s.path) in rows for s in samples]
    matrix = np.vstack([rows[str(s.path)] for s in samples if str(s.path) in rows]) if any(ok) else np.zeros((0, 0))
    return probe_results(matrix, ok, [s.identity if mated else None for s in samples], gallery_ids)


def _rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials) if trials else (0.0, 1.0)
    return {"count": successes, "of": trials, "rate": successes / trials if trials else 0.0, "ci95": [low, high]}


def _decisions(
    mated: list[ProbeResult], nonmated: list[ProbeResult], accept: Callable[[ProbeResult, int], bool], offset: int
) -> dict[str, Any]:
    """Return the true matches among mated probes and false matches among non-mated ones, where
    ``accept(result, index)`` says whether a result's first candidate is declared a match."""
    true = sum(1 for i, r in enumerate(mated) if accept(r, i) and r.candidates[0][0] == r.truth)
    wrong = sum(1 for i, r in enumerate(mated) if accept(r, i) and r.candidates[0][0] != r.truth)
    false = sum(1 for i, r in enumerate(nonmated) if accept(r, offset + i))
    return {
        "true_matches": _rate(true, len(mated)),
        "wrong_person_matches_on_mated": wrong,
        "false_matches": _rate(false, len(nonmated)),
    }


def _figures(mated: list[ProbeResult], nonmated: list[ProbeResult], failures: int) -> dict[str, Any]:
    metrics = compute_metrics(mated, nonmated)
    return {
        "mated": len(mated),
        "nonmated": len(nonmated),
        "failure_to_extract": failures / max(1, len(mated) + len(nonmated)),
        **{k: metrics[k] for k in ("rank1", "fnir_at_fpir_0.01", "fnir_at_fpir_0.1")},
    }


# ---------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    split = build_split(args.dataset)
    mated_stride, nonmated_stride = (9, 4) if args.quick else (args.mated_stride, args.nonmated_stride)
    mated_samples = split.mated[::mated_stride]
    nonmated_samples = split.nonmated[::nonmated_stride]
    probes = mated_samples + nonmated_samples
    settings = get_settings()
    gallery = Gallery(settings)
    model_id = gallery.model_id
    options = {**gallery.analyzer_options, **VARIANTS[args.variant]}
    workers = args.workers or default_workers()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    def ours(condition: str, samples: Sequence[Sample], clean: dict[str, FaceRecord | None] | None) -> dict[str, Any]:
        keys = [str(s.path) for s in samples]
        path = _cache_path("facetrace", args.variant if condition != "gallery" else "default", condition, keys)

        def compute() -> dict[str, Any]:
            log(f"facetrace {args.variant} {condition}: embedding {len(samples)} images")
            if condition in ("gallery", "clean", "second_reference"):
                jobs = ((str(s.path), ImageInput.read(s.path)) for s in samples)
            else:
                assert clean is not None
                jobs = degraded_images(samples, condition, clean)
            t0 = time.perf_counter()
            records = facetrace_pass(jobs, options, workers)
            return {"records": records, "seconds": time.perf_counter() - t0}

        return _cached(path, compute)

    def theirs(condition: str, samples: Sequence[Sample], clean: dict[str, FaceRecord | None]) -> dict[str, Any]:
        keys = [str(s.path) for s in samples]

        def compute() -> dict[str, Any]:
            log(f"face_recognition {condition}: embedding {len(samples)} images")
            if condition in ("gallery", "clean"):
                jobs = [(str(s.path), s.path.read_bytes()) for s in samples]
            else:
                jobs = [(k, img.data) for k, img in degraded_images(samples, condition, clean)]
            t0 = time.perf_counter()
            vectors = peer.extract_encoded_all(jobs, workers)
            return {"vectors": vectors, "seconds": time.perf_counter() - t0}

        return _cached(_cache_path("peer", "defaults", condition, keys), compute)

    gallery_records = ours("gallery", split.gallery, None)["records"]
    enrolled = [s for s in split.gallery if gallery_records[str(s.path)] is not None]
    gallery_ids = [s.identity for s in enrolled]
    scorer = GalleryScorer(np.vstack([gallery_records[str(s.path)].vector for s in enrolled]), model_id)
    calibration = Calibration.load()
    threshold = calibration.threshold(POLICY_FPIR, len(enrolled))
    min_quality = settings.min_quality
    clean_records = ours("clean", probes, None)["records"]

    if args.with_peer:
        peer_gallery = theirs("gallery", split.gallery, {})["vectors"]
        peer_enrolled = [s for s in split.gallery if peer_gallery.get(str(s.path)) is not None]
        peer_ids = [s.identity for s in peer_enrolled]
        peer_matrix = np.vstack([peer_gallery[str(s.path)] for s in peer_enrolled])

    yaw = {k: abs(r.quality_detail["yaw_deg"]) for k, r in clean_records.items() if r is not None}
    pose_keys = {k for k, y in yaw.items() if y >= POSE_DEGREES}
    # clean first: face_recognition's fixed threshold is the one that gives FPIR 0.01 on clean probes
    conditions = ["clean", *[c for c in (args.conditions or [*degrade.CONDITIONS, "large_pose"]) if c != "clean"]]
    report: dict[str, Any] = {
        "dataset": str(Path(args.dataset)),
        "variant": args.variant,
        "analyzer_options": options,
        "gallery": len(enrolled),
        "probes": {"mated": len(mated_samples), "nonmated": len(nonmated_samples)},
        "policy": {"target_fpir": POLICY_FPIR, "threshold": threshold, "min_quality": min_quality},
        "conditions": {},
    }
    pooled: dict[str, list[Any]] = {"ours_m": [], "ours_n": [], "peer_m": [], "peer_n": [], "q_m": [], "q_n": []}
    peer_clean_threshold = None
    band_rows: list[tuple[float, bool, bool, bool]] = []  # quality, mated, correct-first, above threshold
    impostors: dict[int, list[np.ndarray]] = {}  # quality band -> normalised impostor scores
    all_records: dict[str, dict[str, FaceRecord | None]] = {}  # condition -> probe records
    raw_impostors: list[np.ndarray] = []  # raw cosines of degraded probes with other people's references
    raw_genuine: list[float] = []  # raw cosines of degraded mated probes with their own reference
    for condition in conditions:
        if condition == "large_pose":
            sel_m = [s for s in mated_samples if str(s.path) in pose_keys]
            sel_n = [s for s in nonmated_samples if str(s.path) in pose_keys]
            records = clean_records
        else:
            sel_m, sel_n = mated_samples, nonmated_samples
            records = clean_records if condition == "clean" else ours(condition, probes, clean_records)["records"]
            all_records[condition] = records
        vectors = {k: (r.vector if r is not None else None) for k, r in records.items()}
        quality = {k: (r.quality if r is not None else 0.0) for k, r in records.items()}
        rows = _score_rows(sel_m + sel_n, vectors, scorer.scores)
        m = _results(sel_m, rows, gallery_ids, True)
        n = _results(sel_n, rows, gallery_ids, False)
        q_m = [quality[str(s.path)] for s in sel_m]
        q_n = [quality[str(s.path)] for s in sel_n]
        failures = sum(1 for s in sel_m + sel_n if vectors[str(s.path)] is None)
        row: dict[str, Any] = {"facetrace": _figures(m, n, failures)}
        qualities = q_m + q_n

        def policy(result: ProbeResult, index: int, qualities: list[float] = qualities) -> bool:
            return bool(result.candidates) and result.candidates[0][1] >= threshold and qualities[index] >= min_quality

        def threshold_only(result: ProbeResult, index: int) -> bool:
            return bool(result.candidates) and result.candidates[0][1] >= threshold

        row["facetrace"]["at_policy"] = _decisions(m, n, policy, len(m))
        row["facetrace"]["at_policy_without_quality_gate"] = _decisions(m, n, threshold_only, len(m))
        row["facetrace"]["median_quality"] = float(np.median(qualities)) if qualities else 0.0
        if condition not in ("clean", "large_pose"):
            pooled["ours_m"] += m
            pooled["ours_n"] += n
            pooled["q_m"] += q_m
            pooled["q_n"] += q_n
        for result, q in zip(m + n, qualities, strict=True):
            hit = bool(result.candidates) and result.candidates[0][1] >= threshold
            band_rows.append((q, result.truth is not None, result.rank_of_truth() == 1, hit))
        if condition != "large_pose":
            _collect_impostors(
                sel_m + sel_n,
                records,
                rows,
                scorer.gallery,
                np.array(gallery_ids),
                impostors,
                raw_impostors,
                raw_genuine,
            )
        if args.with_peer:
            peer_records = (
                theirs("clean", probes, clean_records)
                if condition in ("clean", "large_pose")
                else theirs(condition, probes, clean_records)
            )["vectors"]
            pm = peer.probe_results(sel_m, peer_records, peer_ids, peer_matrix, mated=True)
            pn = peer.probe_results(sel_n, peer_records, peer_ids, peer_matrix, mated=False)
            pfail = sum(1 for s in sel_m + sel_n if peer_records.get(str(s.path)) is None)
            if condition == "clean":
                peer_clean_threshold = threshold_at_fpir(pn, POLICY_FPIR)
            peer_bar = peer_clean_threshold if peer_clean_threshold is not None else -np.inf
            row["face_recognition"] = _figures(pm, pn, pfail)
            row["face_recognition"]["at_tolerance_0.6"] = _decisions(
                pm, pn, lambda r, i: bool(r.candidates) and -r.candidates[0][1] <= PEER_TOLERANCE, len(pm)
            )
            row["face_recognition"]["at_clean_fpir_0.01"] = _decisions(
                pm, pn, lambda r, i, bar=peer_bar: bool(r.candidates) and r.candidates[0][1] > bar, len(pm)
            )
            row["fnir_at_fpir_0.01_ratio"] = row["facetrace"]["fnir_at_fpir_0.01"] / max(
                row["face_recognition"]["fnir_at_fpir_0.01"], 1e-9
            )
            if condition not in ("clean", "large_pose"):
                pooled["peer_m"] += pm
                pooled["peer_n"] += pn
        report["conditions"][condition] = row
        log(_line(condition, row))
    overall: dict[str, Any] = {"facetrace": compute_metrics(pooled["ours_m"], pooled["ours_n"])}
    if args.with_peer:
        overall["face_recognition"] = compute_metrics(pooled["peer_m"], pooled["peer_n"])
        overall["fnir_at_fpir_0.01_ratio"] = overall["facetrace"]["fnir_at_fpir_0.01"] / max(
            overall["face_recognition"]["fnir_at_fpir_0.01"], 1e-9
        )
    report["overall_degraded"] = overall
    report["quality_bands"] = _bands(band_rows)
    report["product_bands"] = _bands(band_rows, PRODUCT_BANDS)
    report["calibration_by_quality"] = _calibration_by_quality(impostors, calibration)
    report["tracker"] = _tracker_thresholds(scorer.gallery, gallery_ids, raw_impostors, raw_genuine)
    report["video_clips"] = clip_experiment(
        args,
        split,
        ours_options=options,
        clean=clean_records,
        scorer=scorer,
        gallery_ids=gallery_ids,
        threshold=threshold,
        workers=workers,
        log=log,
    )
    second = _second_references(split, mated_samples, ours, enrolled)
    report["several_references"] = several_references(
        second, mated_samples, nonmated_samples, all_records, enrolled, gallery_records, model_id, threshold
    )
    report["peer_clean_threshold"] = peer_clean_threshold
    report["seconds"] = time.perf_counter() - started
    return report


def _collect_impostors(
    samples: Sequence[Sample],
    records: dict[str, FaceRecord | None],
    rows: dict[str, np.ndarray],
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    impostors: dict[int, list[np.ndarray]],
    raw_impostors: list[np.ndarray],
    raw_genuine: list[float],
) -> None:
    """Add every probe's comparisons with other people's references (its normalised ``rows``, and raw
    cosines with the ``gallery``), by the probe's quality band."""
    for sample in samples:
        record = records[str(sample.path)]
        if record is None:
            continue
        other = gallery_ids != sample.identity
        impostors.setdefault(_band_of(record.quality), []).append(rows[str(sample.path)][other])
        raw = gallery @ record.vector
        raw_impostors.append(raw[other][:: max(1, len(raw) // 300)])  # a sample: enough for FMR 0.5 and 1e-3
        raw_genuine.extend(raw[~other].tolist())


def _band_of(quality: float) -> int:
    return int(np.searchsorted(QUALITY_BANDS, quality, side="right")) - 1


def _calibration_by_quality(impostors: dict[int, list[np.ndarray]], calibration: Calibration) -> list[dict[str, Any]]:
    """Per probe-quality band: the impostor score at FMR 1e-2, 1e-3 and 1e-4 measured on the degraded
    probes, against the shipped calibration's score at the same FMR (the offset a quality-conditioned
    calibration would add; near zero means one calibration holds for every quality)."""
    out = []
    for band in sorted(impostors):
        scores = np.sort(np.concatenate(impostors[band]))[::-1]
        row: dict[str, Any] = {"quality": [QUALITY_BANDS[band], QUALITY_BANDS[band + 1]], "comparisons": len(scores)}
        for level in (1e-2, 1e-3, 1e-4):
            rank = int(level * len(scores))
            if rank >= 10:
                row[f"offset_at_fmr_{level:g}"] = float(scores[rank - 1] - calibration.threshold(level, 1))
        out.append(row)
    return out


def _tracker_thresholds(
    gallery: np.ndarray, gallery_ids: list[str], raw_impostors: list[np.ndarray], raw_genuine: list[float]
) -> dict[str, Any]:
    """The raw cosines at FMR 0.5 and 0.001 (the tracker's continuity and re-identification bars) for the
    current embedding, on clean references (every pair of different people) and on degraded probes, and
    the share of degraded genuine pairs that clear each bar."""
    sims = gallery @ gallery.T
    ids = np.array(gallery_ids)
    upper = np.triu_indices(len(ids), k=1)
    clean = sims[upper][ids[upper[0]] != ids[upper[1]]]
    degraded_imp = np.concatenate(raw_impostors)
    genuine = np.array(raw_genuine)
    out: dict[str, Any] = {"clean_pairs": len(clean), "degraded_pairs": len(degraded_imp)}
    for name, level in (("continuity_fmr_0.5", 0.5), ("relink_fmr_0.001", 0.001)):
        bar_clean = float(np.quantile(clean, 1 - level))
        bar_degraded = float(np.quantile(degraded_imp, 1 - level))
        out[name] = {
            "clean": bar_clean,
            "degraded": bar_degraded,
            "genuine_degraded_above_clean_bar": float(np.mean(genuine >= bar_clean)),
        }
    return out


def _second_references(
    split: Any,
    mated: Sequence[Sample],
    ours: Callable[..., dict[str, Any]],
    enrolled: Sequence[Sample],
) -> dict[str, tuple[str, FaceRecord]]:
    """Return ``identity -> (path, record)``: a second clean reference (the identity's first mated image,
    embedded) for every enrolled identity with at least two mated images and one among the selected probes."""
    enrolled_ids = {s.identity for s in enrolled}
    by_identity: dict[str, list[Sample]] = {}
    for sample in split.mated:
        by_identity.setdefault(sample.identity, []).append(sample)
    wanted = {s.identity for s in mated if s.identity in enrolled_ids}
    extra = [imgs[0] for ident, imgs in by_identity.items() if ident in wanted and len(imgs) >= 2]
    records = ours("second_reference", extra, None)["records"]
    return {s.identity: (str(s.path), records[str(s.path)]) for s in extra if records[str(s.path)] is not None}


def several_references(
    second: dict[str, tuple[str, FaceRecord]],
    mated: Sequence[Sample],
    nonmated: Sequence[Sample],
    all_records: dict[str, dict[str, FaceRecord | None]],
    enrolled: Sequence[Sample],
    gallery_records: dict[str, FaceRecord | None],
    model_id: str,
    threshold: float,
) -> dict[str, Any]:
    """Two references per person against one: the product's best-face fusion (a person's score is their best
    reference's) and a mean template, on the mated probes of people with a second reference (never the
    second reference itself) and every non-mated probe, clean and degraded conditions pooled."""
    references = {path for path, _ in second.values()}
    probes_m = [s for s in mated if s.identity in second and str(s.path) not in references]
    ids = [s.identity for s in enrolled]
    first = np.vstack([gallery_records[str(s.path)].vector for s in enrolled])  # type: ignore[union-attr]
    extra_ids = [i for i in ids if i in second]
    extra = np.vstack([second[i][1].vector for i in extra_ids])
    mean = first.copy()
    index = {ident: k for k, ident in enumerate(ids)}
    for ident in extra_ids:
        total = first[index[ident]] + second[ident][1].vector
        mean[index[ident]] = total / np.linalg.norm(total)
    galleries = {
        "one_reference": (first, ids),
        "two_references_best_face": (np.vstack([first, extra]), ids + extra_ids),
        "two_references_mean_template": (mean, ids),
    }
    out: dict[str, Any] = {"people_with_two_references": len(extra_ids), "mated_probes_per_condition": len(probes_m)}
    for name, (matrix, gallery_ids) in galleries.items():
        scorer = GalleryScorer(matrix, model_id)
        pooled_m: list[ProbeResult] = []
        pooled_n: list[ProbeResult] = []
        for records in all_records.values():
            vectors = {k: (r.vector if r is not None else None) for k, r in records.items()}
            rows = _score_rows([*probes_m, *nonmated], vectors, scorer.scores)
            pooled_m += _results(probes_m, rows, list(gallery_ids), True)
            pooled_n += _results(nonmated, rows, list(gallery_ids), False)
        metrics = compute_metrics(pooled_m, pooled_n)
        decided = _decisions(
            pooled_m, pooled_n, lambda r, i: bool(r.candidates) and r.candidates[0][1] >= threshold, len(pooled_m)
        )
        out[name] = {**{k: metrics[k] for k in ("rank1", "fnir_at_fpir_0.01", "fnir_at_fpir_0.1")}, **decided}
    return out


CLIP_FRAMES = 6
CLIP_CONDITIONS = ("small", "blurred", "compressed", "dark", "noisy")


def clip_experiment(
    args: argparse.Namespace,
    split: Any,
    *,
    ours_options: dict[str, Any],
    clean: dict[str, FaceRecord | None],
    scorer: GalleryScorer,
    gallery_ids: list[str],
    threshold: float,
    workers: int,
    log: Callable[..., None],
) -> dict[str, Any]:
    """Simulated video: each probe seen in CLIP_FRAMES frames, each degraded by a random video-like
    condition. Compares a track's quality-weighted template (the product's, over its 5 best faces) with
    its single best face and with the plain mean of all its faces: rank-1 and decisions at the policy."""
    from facetrace.vision.track import Observation, Track, TrackerConfig

    mated, nonmated = split.mated[::9], split.nonmated[::4]
    mated_paths = {s.path for s in mated}
    frames: list[tuple[Sample, str, str]] = []  # sample, frame key, condition
    for sample in mated + nonmated:
        rng = np.random.default_rng(int(hashlib.sha256(sample.path.name.encode()).hexdigest()[:8], 16))
        for k in range(CLIP_FRAMES):
            frames.append((sample, f"{sample.path}#{k}", CLIP_CONDITIONS[int(rng.integers(0, len(CLIP_CONDITIONS)))]))

    def jobs() -> Iterator[tuple[str, ImageInput]]:
        for sample, key, condition in frames:
            image = load_image(sample.path)
            geometry = _geometry(clean[str(sample.path)], image)
            yield key, ImageInput("frame.png", _encode(degrade.degrade(image, condition, geometry, key)))

    keys = [key for _, key, _ in frames]
    path = _cache_path("facetrace", args.variant, "clips", keys + [inspect.getsource(degrade)])

    def compute() -> dict[str, Any]:
        log(f"facetrace {args.variant} clips: embedding {len(keys)} frames")
        return {"records": facetrace_pass(jobs(), ours_options, workers)}

    records = _cached(path, compute)["records"]
    config = TrackerConfig()
    ids = np.array(gallery_ids)
    out: dict[str, Any] = {"frames_per_clip": CLIP_FRAMES, "conditions": list(CLIP_CONDITIONS)}
    for name in ("track_template", "best_face", "mean_of_all"):
        found = correct = true_match = false_match = 0
        for sample in mated + nonmated:
            faces = [records[f"{sample.path}#{k}"] for k in range(CLIP_FRAMES)]
            faces = [f for f in faces if f is not None]
            if not faces:
                continue
            if name == "track_template":
                track = Track(1, 0.0, 0, 0.0, 0, faces[0].box, faces[0].vector, 0)
                for k, face in enumerate(faces):
                    track.add(Observation(k / 5, k, face.box, face.vector, face.quality), config.keep_best, 0, 1.0)
                vector = track.template
            elif name == "best_face":
                vector = max(faces, key=lambda f: f.quality).vector
            else:
                total = np.sum([f.vector for f in faces], axis=0)
                vector = total / np.linalg.norm(total)
            row = scorer.scores(vector[None])[0]
            best = int(np.argmax(row))
            is_mated = sample.path in mated_paths
            found += is_mated
            correct += is_mated and ids[best] == sample.identity
            above = row[best] >= threshold
            true_match += is_mated and above and ids[best] == sample.identity
            false_match += (not is_mated) and above
        out[name] = {
            "rank1": correct / max(1, len(mated)),
            "true_matches": _rate(true_match, len(mated)),
            "false_matches": _rate(false_match, len(nonmated)),
        }
    return out


def _bands(rows: list[tuple[float, bool, bool, bool]], edges: Sequence[float] = QUALITY_BANDS) -> list[dict[str, Any]]:
    """Per quality band (all conditions pooled): FNIR and FPIR at the policy threshold alone (no gate)."""
    out = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = [r for r in rows if low <= r[0] < high]
        mated = [r for r in inside if r[1]]
        nonmated = [r for r in inside if not r[1]]
        missed = sum(1 for r in mated if not (r[2] and r[3]))
        false = sum(1 for r in nonmated if r[3])
        out.append(
            {
                "quality": [low, min(high, 100.0)],
                "mated": len(mated),
                "fnir_at_policy": _rate(missed, len(mated)),
                "nonmated": len(nonmated),
                "fpir_at_policy": _rate(false, len(nonmated)),
            }
        )
    return out


def _line(condition: str, row: dict[str, Any]) -> str:
    ours = row["facetrace"]
    at = ours["at_policy"]
    text = (
        f"{condition:19} facetrace FTX {ours['failure_to_extract']:.3f} r1 {ours['rank1']:.3f}"
        f" FNIR@.01 {ours['fnir_at_fpir_0.01']:.3f} @.1 {ours['fnir_at_fpir_0.1']:.3f}"
        f" | policy TM {at['true_matches']['count']}/{at['true_matches']['of']}"
        f" FM {at['false_matches']['count']}/{at['false_matches']['of']}"
        f" (no gate TM {ours['at_policy_without_quality_gate']['true_matches']['count']}"
        f" FM {ours['at_policy_without_quality_gate']['false_matches']['count']}) q~{ours['median_quality']:.0f}"
    )
    if "face_recognition" in row:
        theirs = row["face_recognition"]
        text += (
            f" || fr FTX {theirs['failure_to_extract']:.3f} r1 {theirs['rank1']:.3f}"
            f" FNIR@.01 {theirs['fnir_at_fpir_0.01']:.3f} ratio {row['fnir_at_fpir_0.01_ratio']:.2f}"
            f" | 0.6 TM {theirs['at_tolerance_0.6']['true_matches']['count']}"
            f" FM {theirs['at_tolerance_0.6']['false_matches']['count']}"
            f" | 1% TM {theirs['at_clean_fpir_0.01']['true_matches']['count']}"
            f" FM {theirs['at_clean_fpir_0.01']['false_matches']['count']}"
        )
    return text


def write_bands(report: dict[str, Any], path: Path) -> None:
    """Write the product's quality-band table (facetrace/gallery/quality_bands.json) from this run."""
    bands = []
    for name, row in zip(PRODUCT_BAND_NAMES, report["product_bands"], strict=True):
        bands.append(
            {
                "name": name,
                "low": row["quality"][0],
                "high": 101 if row["quality"][1] >= 100 else row["quality"][1],
                "true_match_rate": round(1.0 - row["fnir_at_policy"]["rate"], 3) if row["mated"] else 0.0,
                "false_match_rate": round(row["fpir_at_policy"]["rate"], 4),
                "mated": row["mated"],
                "nonmated": row["nonmated"],
            }
        )
    table = {
        "source": "bench/degraded.py on faces-dev: every field condition and the clean probes pooled,"
        f" {report['probes']['mated']} mated and {report['probes']['nonmated']} non-mated probes per condition,"
        f" gallery {report['gallery']}",
        "policy_target_fpir": POLICY_FPIR,
        "bands": bands,
    }
    path.write_text(json.dumps(table, indent=1) + "\n")


def plot(report: dict[str, Any], path: Path) -> None:
    """Per condition: true matches at a 1% false-match operating point for both systems, and
    facetrace's observed false-match rate at its policy with the 95% Wilson interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["conditions"])
    rows = [report["conditions"][c] for c in names]
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    ours = [r["facetrace"]["at_policy"]["true_matches"]["rate"] for r in rows]
    left.bar(x - 0.2, ours, 0.4, label="facetrace at its policy (FPIR 0.01)")
    if "face_recognition" in rows[0]:
        theirs = [r["face_recognition"]["at_clean_fpir_0.01"]["true_matches"]["rate"] for r in rows]
        left.bar(x + 0.2, theirs, 0.4, label="face_recognition at the distance of FPIR 0.01 on clean probes")
    left.set_xticks(x, names, rotation=35, ha="right")
    left.set_ylabel("true matches (share of mated probes)")
    left.set_title("Found, at about one false match in 100 searches")
    left.legend(fontsize=8)
    rates = [r["facetrace"]["at_policy"]["false_matches"] for r in rows]
    observed = np.array([f["rate"] for f in rates])
    errors = np.array([[f["rate"] - f["ci95"][0], f["ci95"][1] - f["rate"]] for f in rates]).T
    right.errorbar(x, observed, yerr=errors, fmt="o", capsize=3, label="observed, 95% Wilson interval")
    right.axhline(POLICY_FPIR, color="k", lw=0.8, label="policy target 0.01")
    right.axhline(2 * POLICY_FPIR, color="k", ls=":", lw=0.8, label="twice the target")
    right.set_xticks(x, names, rotation=35, ha="right")
    right.set_ylabel("false matches (share of non-mated probes)")
    right.set_title("facetrace: honest decisions under degradation")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description="accuracy and honest decisions under field conditions")
    parser.add_argument("dataset", nargs="?", type=Path, default=peer.default_dataset_dir())
    parser.add_argument("--quick", action="store_true", help="every 9th mated and 4th non-mated probe")
    parser.add_argument("--mated-stride", type=int, default=3)
    parser.add_argument("--nonmated-stride", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    parser.add_argument("--no-peer", dest="with_peer", action="store_false")
    parser.add_argument("--conditions", nargs="+", choices=["clean", *degrade.CONDITIONS, "large_pose"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "docs" / "accuracy_field.png")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "results" / "degraded.json")
    parser.add_argument("--write-bands", action="store_true", help="write facetrace/gallery/quality_bands.json")
    args = parser.parse_args()
    report = run(args)
    report["dataset"] = str(Path(os.path.relpath(Path(args.dataset).resolve(), REPO_ROOT)))
    plot(report, args.plot)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=1, default=float) + "\n")
    if args.write_bands:
        write_bands(report, REPO_ROOT / "facetrace" / "gallery" / "quality_bands.json")
    if args.json:
        print(json.dumps(report, indent=1, default=float))
    else:
        print(json.dumps(report["overall_degraded"], indent=1, default=float))
        for band in report["quality_bands"]:
            print(band)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
