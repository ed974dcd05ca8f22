"""Run the accuracy protocol and build calibrations with the product's own face pipeline and score.

``facetrace eval`` and ``facetrace calibrate`` both embed the largest face of every image with the
gallery's analyzer, then score probes against a gallery exactly as a search does (cosine, symmetric
cohort normalisation against a cohort drawn from the gallery: :mod:`facetrace.gallery.scoring`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetrace.evaluation.protocol import ProbeResult, Sample, Split, build_split, compute_metrics, observed_fpir
from facetrace.gallery.calibration import Calibration, build_calibration
from facetrace.gallery.scoring import TOP_K, CohortScorer, default_cohort
from facetrace.vision.parallel import analyze_paths

ProgressFn = Callable[[int, int, int], None]


@dataclass
class Embedded:
    """Embeddings of a list of samples: ``vectors[i]`` is None when no face was found."""

    samples: list[Sample]
    vectors: list[np.ndarray | None]
    seconds: float

    def found(self) -> tuple[list[Sample], np.ndarray]:
        keep = [(s, v) for s, v in zip(self.samples, self.vectors, strict=True) if v is not None]
        return [s for s, _ in keep], (np.vstack([v for _, v in keep]) if keep else np.zeros((0, 128), np.float32))


def embed_samples(
    samples: Sequence[Sample],
    *,
    workers: int = 0,
    options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> Embedded:
    """Embed the largest face of every sample; return them with the wall time taken."""
    start = time.perf_counter()
    vectors: list[np.ndarray | None] = []
    failures = 0
    results = analyze_paths([s.path for s in samples], workers=workers, largest_only=True, options=options)
    for number, result in enumerate(results, start=1):
        if isinstance(result, list) and result:
            vectors.append(np.asarray(result[0].embedding, dtype=np.float32))
        else:
            vectors.append(None)
            failures += 1
        if progress:
            progress(number, len(samples), failures)
    return Embedded(list(samples), vectors, time.perf_counter() - start)


class GalleryScorer:
    """Scores probes against a fixed gallery matrix exactly as :class:`~facetrace.gallery.Gallery` does."""

    def __init__(
        self, gallery: np.ndarray, model_id: str, *, normalise: bool = True, cohort: np.ndarray | None = None
    ) -> None:
        self.gallery = np.ascontiguousarray(gallery, dtype=np.float32)
        vectors = default_cohort(model_id) if cohort is None else cohort
        self.scorer = CohortScorer(vectors if normalise else np.zeros((0, self.gallery.shape[1])))
        self.mu_gallery = self.scorer.mu(self.gallery) if self.scorer.active and len(self.gallery) else None

    def scores(self, probes: np.ndarray) -> np.ndarray:
        """Return the (probes x gallery) matrix of normalised scores."""
        return self.scorer.scores(probes, self.gallery, self.mu_gallery)


def _with_vectors(
    samples: Sequence[Sample], embedded: dict[Path, np.ndarray | None]
) -> list[tuple[Sample, np.ndarray]]:
    """Return the samples that have an embedding, each with it."""
    out = []
    for sample in samples:
        vector = embedded[sample.path]
        if vector is not None:
            out.append((sample, vector))
    return out


def probe_results(
    scores: np.ndarray, probe_ok: list[bool], truths: list[str | None], gallery_ids: list[str], top: int = 10
) -> list[ProbeResult]:
    """Return one :class:`ProbeResult` per probe, in order: its ``top`` gallery identities by score, or none
    where ``probe_ok`` is false. ``scores`` holds one row per probe that is ok, in the same order."""
    out = []
    row = 0
    for ok, truth in zip(probe_ok, truths, strict=True):
        if not ok:
            out.append(ProbeResult(truth, []))
            continue
        line = scores[row]
        row += 1
        best = np.argsort(-line, kind="stable")[:top]
        out.append(ProbeResult(truth, [(gallery_ids[i], float(line[i])) for i in best]))
    return out


def evaluate_embedded(
    split: Split,
    embedded: dict[Path, np.ndarray | None],
    model_id: str,
    *,
    normalise: bool = True,
    cohort: np.ndarray | None = None,
) -> dict[str, Any]:
    """Return the protocol's figures and raw results from already embedded split images
    (``normalise=False``: plain cosine, for comparison)."""
    enrolled = _with_vectors(split.gallery, embedded)
    gallery_ids = [s.identity for s, _ in enrolled]
    matrix = np.vstack([v for _, v in enrolled]) if enrolled else np.zeros((0, 128), np.float32)
    scorer = GalleryScorer(matrix, model_id, normalise=normalise, cohort=cohort)

    def run(samples: list[Sample], mated: bool) -> list[ProbeResult]:
        ok = [embedded[s.path] is not None for s in samples]
        vectors = [v for _, v in _with_vectors(samples, embedded)]
        scores = scorer.scores(np.vstack(vectors)) if vectors else np.zeros((0, len(matrix)))
        truths: list[str | None] = [s.identity if mated else None for s in samples]
        return probe_results(scores, ok, truths, gallery_ids)

    mated = run(split.mated, True)
    nonmated = run(split.nonmated, False)
    return {"gallery": len(enrolled), "mated": mated, "nonmated": nonmated, **compute_metrics(mated, nonmated)}


def evaluate(
    dataset_dir: Path,
    *,
    model_id: str,
    workers: int = 0,
    options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run ``../shared/eval-protocol.md`` on ``dataset_dir``; return its JSON keys (and raw results
    under ``mated_results`` / ``nonmated_results``).

    Raises:
        ManifestError: the folder is missing or holds no identity.
    """
    split = build_split(dataset_dir)
    samples = split.all_samples()
    start = time.perf_counter()
    emb = embed_samples(samples, workers=workers, options=options, progress=progress)
    figures = evaluate_embedded(split, dict(zip((s.path for s in samples), emb.vectors, strict=True)), model_id)
    seconds = time.perf_counter() - start
    failures = sum(v is None for v in emb.vectors)
    return {
        "gallery": figures["gallery"],
        "mated_probes": len(split.mated),
        "nonmated_probes": len(split.nonmated),
        "rank1": figures["rank1"],
        "rank5": figures["rank5"],
        "fnir_at_fpir_0.01": figures["fnir_at_fpir_0.01"],
        "fnir_at_fpir_0.1": figures["fnir_at_fpir_0.1"],
        "failure_to_extract": failures / len(samples) if samples else 0.0,
        "images": len(samples),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(samples) / seconds, 2) if seconds else 0.0,
        "model_id": model_id,
        "mated_results": figures["mated"],
        "nonmated_results": figures["nonmated"],
    }


def identity_half(identity: str) -> int:
    """Return 0 or 1: a fixed, label-only assignment of identities to two disjoint halves."""
    import hashlib

    return int(hashlib.sha256(identity.encode()).hexdigest(), 16) % 2


def comparison_scores(
    split: Split, embedded: dict[Path, np.ndarray | None], model_id: str, *, cohort: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (impostor, genuine) normalised scores of every probe against every gallery entry."""
    enrolled = _with_vectors(split.gallery, embedded)
    probes = _with_vectors(split.mated + split.nonmated, embedded)
    if len(enrolled) < 2 or not probes:
        return np.zeros(0), np.zeros(0)
    scorer = GalleryScorer(np.vstack([v for _, v in enrolled]), model_id, cohort=cohort)
    gallery_ids = np.array([s.identity for s, _ in enrolled])
    impostor, genuine = [], []
    for start in range(0, len(probes), 512):
        chunk = probes[start : start + 512]
        scores = scorer.scores(np.vstack([v for _, v in chunk]))
        same = np.array([s.identity for s, _ in chunk])[:, None] == gallery_ids[None, :]
        impostor.append(scores[~same])
        genuine.append(scores[same])
    return np.concatenate(impostor), np.concatenate(genuine)


def calibrate_embedded(
    split: Split,
    embedded: dict[Path, np.ndarray | None],
    model_id: str,
    source: str,
    *,
    cohort: np.ndarray | None = None,
) -> Calibration:
    """Build FMR(s) from the impostor comparisons of a labelled split (see :func:`comparison_scores`).

    Raises:
        ValueError: fewer than 1000 impostor comparisons.
    """
    impostor, genuine = comparison_scores(split, embedded, model_id, cohort=cohort)
    return build_calibration(
        impostor,
        genuine=genuine,
        model_id=model_id,
        score_name=f"cosine, symmetric normalisation against the shipped cohort (k={TOP_K})",
        info={"source": source, "gallery": len(split.gallery), "probes": len(split.mated) + len(split.nonmated)},
    )


def leave_identity_out_scores(
    gallery: list[tuple[str, np.ndarray]], probes: list[tuple[str, np.ndarray]], model_id: str
) -> np.ndarray:
    """Return, for every probe, its best score against a gallery from which its own identity was
    removed (cohort included): one non-mated search per probe, for calibration checks on small sets."""
    identities = np.array([i for i, _ in gallery])
    matrix = np.vstack([v for _, v in gallery])
    best = np.full(len(probes), -np.inf)
    probe_ids = np.array([i for i, _ in probes])
    for identity in np.unique(probe_ids):
        keep = identities != identity
        rows = np.nonzero(probe_ids == identity)[0]
        if keep.sum() < 2:
            continue
        scorer = GalleryScorer(matrix[keep], model_id)
        best[rows] = scorer.scores(np.vstack([probes[r][1] for r in rows])).max(axis=1)
    return best


def verify_calibration(
    calibration: Calibration,
    split: Split,
    embedded: dict[Path, np.ndarray | None],
    model_id: str,
    targets: Sequence[float],
    *,
    cohort: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """On a split not used to build ``calibration``, compare the observed FPIR at each policy
    threshold with its target; return one row per target with the 95% Wilson interval."""
    figures = evaluate_embedded(split, embedded, model_id, cohort=cohort)
    best = [r.best_score() for r in figures["nonmated"]]
    rows = []
    for target in targets:
        threshold = calibration.threshold(target, figures["gallery"])
        rate, low, high = observed_fpir(best, threshold)
        rows.append(
            {
                "target_fpir": target,
                "threshold": round(threshold, 4),
                "nonmated_searches": len(best),
                "observed_fpir": round(rate, 4),
                "ci95": [round(low, 4), round(high, 4)],
                "ratio": round(rate / target, 2),
                "measurable": len(best) * target >= 5,
            }
        )
    return rows


__all__ = [
    "GalleryScorer",
    "calibrate_embedded",
    "comparison_scores",
    "embed_samples",
    "evaluate",
    "evaluate_embedded",
    "identity_half",
    "verify_calibration",
]
