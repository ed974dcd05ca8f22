"""The open-set 1:N identification protocol of ``shared/eval-protocol.md``, as pure logic.

Nothing here loads a face model: :func:`build_split` turns a dataset folder into a gallery, mated
probes and non-mated probes; :func:`compute_metrics` turns the candidate lists that *some* system
returned for those probes into the protocol's figures. Any system (facetrace, the
``face_recognition`` peer in ``bench/peer.py``) is measured with the same two functions, so that the
figures compare.

Scores are similarities: higher means "more likely the same person" (a distance ``d`` is reported
as ``-d``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrace.errors import ManifestError

#: Image files taken from a dataset folder; the suffix is compared case-insensitively.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

#: The folder (directly under the dataset folder) whose identities only enlarge the gallery.
DISTRACTORS_DIR = "distractors"

#: At most this many images of each identity are used.
DEFAULT_MAX_PER_IDENTITY = 10

#: The FPIR targets of the reported figures, and the name of the figure for each.
FPIR_TARGETS: dict[str, float] = {"fnir_at_fpir_0.01": 0.01, "fnir_at_fpir_0.1": 0.1}

# Two-sided 95% normal quantile, for the Wilson interval.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Sample:
    """One image of the dataset and the identity (folder name) it is labelled with."""

    identity: str
    path: Path


@dataclass
class Split:
    """The protocol's deterministic split of a dataset folder.

    ``gallery`` holds one image per enrolled identity; ``mated`` the probes whose identity is
    enrolled; ``nonmated`` the probes whose identity is not. The three lists are disjoint, each in
    sorted (identity, image) order.
    """

    gallery: list[Sample] = field(default_factory=list)
    mated: list[Sample] = field(default_factory=list)
    nonmated: list[Sample] = field(default_factory=list)

    def all_samples(self) -> list[Sample]:
        """Return every image of the split once: the gallery, then the mated, then the non-mated probes."""
        return [*self.gallery, *self.mated, *self.nonmated]

    def counts(self) -> dict[str, int]:
        """Return the number of gallery images, mated and non-mated probes, and images in all."""
        return {
            "gallery": len(self.gallery),
            "mated_probes": len(self.mated),
            "nonmated_probes": len(self.nonmated),
            "images": len(self.gallery) + len(self.mated) + len(self.nonmated),
        }


def is_image_file(path: Path) -> bool:
    """Return True when ``path`` is a regular file whose suffix is one of :data:`IMAGE_SUFFIXES`."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder: Path, max_per_identity: int = DEFAULT_MAX_PER_IDENTITY) -> list[Path]:
    """Return the first ``max_per_identity`` image files directly in ``folder``, in sorted name order.

    Sub-folders and files of other types are ignored. The order is Python's string order of the
    file names (code point order, so ``B.jpg`` comes before ``a.jpg``).
    """
    images = sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
    return images[:max_per_identity]


def is_excluded_identity(identity: str) -> bool:
    """Return True when the protocol keeps ``identity`` out of the gallery (its images become
    non-mated probes): ``int(sha256(identity as UTF-8).hexdigest(), 16) % 3 == 0``.

    Only applies to a labelled identity with two or more images.
    """
    return int(hashlib.sha256(identity.encode("utf-8")).hexdigest(), 16) % 3 == 0


def _identity_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)


def build_split(
    dataset_dir: Path,
    max_per_identity: int = DEFAULT_MAX_PER_IDENTITY,
    *,
    identity_stride: int = 1,
) -> Split:
    """Split ``dataset_dir`` into gallery, mated and non-mated probes, as the protocol says.

    - ``dataset_dir/IDENTITY/`` are labelled identities, ``dataset_dir/distractors/IDENTITY/``
      distractors; identities and images are taken in sorted order, and only the first
      ``max_per_identity`` images of each identity are used.
    - A distractor, or a labelled identity with one image: its first image is enrolled. (A
      distractor's further images, if any, are not used.)
    - A labelled identity with two or more images that :func:`is_excluded_identity`: every image
      is a non-mated probe.
    - Any other labelled identity: the first image is enrolled, the others are mated probes.
    - Folders with no image file (``lists/``) and files at the top level are ignored.

    ``identity_stride`` (not part of the protocol; for quick runs) keeps every ``identity_stride``-th
    identity only: the labelled identities and the distractors, each group in sorted order, are
    numbered together (labelled first) and the identities whose number is a multiple of the stride
    are kept. ``1`` keeps all.

    Returns the :class:`Split`. Raises :class:`~facetrace.errors.ManifestError` when
    ``dataset_dir`` is not a folder or holds no identity with an image, and ``ValueError`` when
    ``max_per_identity`` or ``identity_stride`` is below 1.
    """
    if max_per_identity < 1:
        raise ValueError(f"max_per_identity must be at least 1, not {max_per_identity}")
    if identity_stride < 1:
        raise ValueError(f"identity_stride must be at least 1, not {identity_stride}")
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise ManifestError(f"dataset folder not found: {dataset_dir}")

    # (identity, images, is_distractor), labelled identities first, each group in sorted order.
    identities: list[tuple[str, list[Path], bool]] = []
    for folder in _identity_folders(dataset_dir):
        if folder.name == DISTRACTORS_DIR:
            continue
        images = list_images(folder, max_per_identity)
        if images:
            identities.append((folder.name, images, False))
    distractors_dir = dataset_dir / DISTRACTORS_DIR
    if distractors_dir.is_dir():
        for folder in _identity_folders(distractors_dir):
            images = list_images(folder, max_per_identity)
            if images:
                identities.append((folder.name, images, True))
    if not identities:
        raise ManifestError(
            f"no identity in {dataset_dir}: expected IDENTITY/IMAGE or distractors/IDENTITY/IMAGE files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )

    split = Split()
    for number, (identity, images, is_distractor) in enumerate(identities):
        if number % identity_stride:
            continue
        samples = [Sample(identity, path) for path in images]
        if is_distractor or len(samples) == 1:
            split.gallery.append(samples[0])
        elif is_excluded_identity(identity):
            split.nonmated.extend(samples)
        else:
            split.gallery.append(samples[0])
            split.mated.extend(samples[1:])
    return split


@dataclass
class ProbeResult:
    """What a system returned for one probe.

    ``truth`` is the probe's identity, or None for a non-mated probe. ``candidates`` are
    ``(identity, score)`` pairs, best (highest score) first; an empty list means that no face was
    extracted from the probe or that the search returned no candidate.
    """

    truth: str | None
    candidates: list[tuple[str, float]] = field(default_factory=list)

    def best_score(self) -> float:
        """Return the score of the first candidate, or ``-inf`` when there is none."""
        return float(self.candidates[0][1]) if self.candidates else -math.inf

    def rank_of_truth(self) -> int | None:
        """Return the 1-based rank of ``truth`` among the candidates' distinct identities, or None.

        A repeated identity counts at its first (best) place only, so that a gallery with several
        templates per identity is ranked by identity.
        """
        if self.truth is None:
            return None
        seen: set[str] = set()
        for identity, _score in self.candidates:
            if identity in seen:
                continue
            seen.add(identity)
            if identity == self.truth:
                return len(seen)
        return None

    def hit_above(self, threshold: float) -> bool:
        """Return True when the truth is the first candidate and its score is strictly above ``threshold``."""
        return (
            self.truth is not None
            and bool(self.candidates)
            and self.candidates[0][0] == self.truth
            and float(self.candidates[0][1]) > threshold
        )


def _check_fpir(fpir: float) -> None:
    if not 0.0 <= fpir <= 1.0 or math.isnan(fpir):
        raise ValueError(f"FPIR must be within [0, 1], not {fpir}")


def _check_nonempty(mated: Sequence[ProbeResult], nonmated: Sequence[ProbeResult]) -> None:
    if not mated:
        raise ValueError("no mated probe: rank and FNIR are undefined (the split has no mated probe)")
    if not nonmated:
        raise ValueError(
            "no non-mated probe: FPIR, and so FNIR at a given FPIR, is undefined (the split has no excluded identity)"
        )


def threshold_at_fpir(nonmated: Sequence[ProbeResult], fpir: float) -> float:
    """Return the threshold T of the protocol: the ``1 - fpir`` quantile of the best score of each
    non-mated probe (``-inf`` for a probe with no candidate).

    The quantile is ``numpy.quantile(..., method="higher")``: T is always one of the observed best
    scores (never an interpolation between two, which also keeps ``-inf`` well-defined), and since a
    probe counts as a false positive only when its score is strictly above T, the observed FPIR at
    T is never above ``fpir``. When ``(1 - fpir) * (n - 1)`` is a whole number (for instance
    n = 1401 and fpir 0.01 or 0.1) every numpy method gives the same T. With few non-mated probes
    "higher" is conservative: for n = 10 and fpir 0.1 it gives the maximum (observed FPIR 0), where
    ``method="inverted_cdf"`` would allow the one false positive that 0.1 * 10 permits; but floating
    point error in ``q * n`` can push "inverted_cdf" one score too low (observed FPIR above the
    target), while it can only push "higher" one score too high.

    Raises ``ValueError`` when ``nonmated`` is empty or ``fpir`` is not within [0, 1].
    """
    _check_fpir(fpir)
    if not nonmated:
        raise ValueError("no non-mated probe: the threshold at a given FPIR is undefined")
    best = np.array([result.best_score() for result in nonmated], dtype=np.float64)
    return float(np.quantile(best, 1.0 - fpir, method="higher"))


def fnir_at(mated: Sequence[ProbeResult], threshold: float) -> float:
    """Return the share of mated probes whose truth is not rank 1 with a score strictly above ``threshold``.

    Raises ``ValueError`` when ``mated`` is empty.
    """
    if not mated:
        raise ValueError("no mated probe: FNIR is undefined")
    misses = sum(1 for result in mated if not result.hit_above(threshold))
    return misses / len(mated)


def fnir_at_fpir(mated: Sequence[ProbeResult], nonmated: Sequence[ProbeResult], fpir: float) -> float:
    """Return FNIR at the threshold :func:`threshold_at_fpir` gives for ``fpir``.

    A mated probe with no candidate, or whose identity is not enrolled, is a miss. Raises
    ``ValueError`` when either list is empty or ``fpir`` is not within [0, 1].
    """
    _check_nonempty(mated, nonmated)
    return fnir_at(mated, threshold_at_fpir(nonmated, fpir))


def rank_k(mated: Sequence[ProbeResult], k: int) -> float:
    """Return the share of mated probes whose truth is among the first ``k`` candidate identities.

    Raises ``ValueError`` when ``mated`` is empty or ``k`` is below 1.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if not mated:
        raise ValueError("no mated probe: rank-k is undefined")
    hits = 0
    for result in mated:
        rank = result.rank_of_truth()
        if rank is not None and rank <= k:
            hits += 1
    return hits / len(mated)


def compute_metrics(mated: Sequence[ProbeResult], nonmated: Sequence[ProbeResult]) -> dict[str, float]:
    """Return the protocol's accuracy figures for one system's results.

    Keys: ``rank1``, ``rank5`` (share of mated probes whose truth is the first / among the first
    five candidate identities) and ``fnir_at_fpir_0.01``, ``fnir_at_fpir_0.1`` (see
    :func:`fnir_at_fpir`; the threshold is :func:`threshold_at_fpir`, i.e. ``numpy.quantile`` with
    ``method="higher"`` over the non-mated best scores, ``-inf`` for a non-mated probe with no
    candidate). Every value is a float in [0, 1], never NaN.

    Raises ``ValueError`` when there is no mated or no non-mated probe: those figures are then
    undefined, and a made-up value would read as a measurement.
    """
    _check_nonempty(mated, nonmated)
    metrics = {"rank1": rank_k(mated, 1), "rank5": rank_k(mated, 5)}
    for key, fpir in FPIR_TARGETS.items():
        metrics[key] = fnir_at_fpir(mated, nonmated, fpir)
    return metrics


def det_curve(
    mated: Sequence[ProbeResult],
    nonmated: Sequence[ProbeResult],
    points: Sequence[float] | int = 50,
) -> list[tuple[float, float]]:
    """Return ``(fpir, fnir)`` pairs for a DET plot.

    ``points`` is either the FPIR targets themselves, or a number of targets spaced evenly on a log
    scale from ``1 / n_nonmated`` (the smallest FPIR the non-mated probes can measure) to 1. Each
    pair is the target FPIR and :func:`fnir_at_fpir` at it, so a pair at 0.01 is exactly the
    reported ``fnir_at_fpir_0.01``; the observed FPIR at the same threshold, which may be a little
    lower, comes from :func:`observed_fpir`. Pairs are sorted by FPIR.

    Raises ``ValueError`` when either list is empty, when ``points`` is an int below 1, or when a
    target is not within [0, 1].
    """
    _check_nonempty(mated, nonmated)
    targets: list[float]
    if isinstance(points, int):
        if points < 1:
            raise ValueError(f"points must be at least 1, not {points}")
        low = 1.0 / len(nonmated)
        targets = [1.0] if points == 1 or low >= 1.0 else [float(x) for x in np.geomspace(low, 1.0, points)]
    else:
        targets = [float(x) for x in points]
    best = np.array([result.best_score() for result in nonmated], dtype=np.float64)
    curve = []
    for fpir in sorted(targets):
        _check_fpir(fpir)
        threshold = float(np.quantile(best, 1.0 - fpir, method="higher"))
        curve.append((fpir, fnir_at(mated, threshold)))
    return curve


def wilson_interval(successes: int, trials: int, z: float = _Z95) -> tuple[float, float]:
    """Return the Wilson score interval ``(low, high)`` for ``successes`` out of ``trials``
    (95% with the default ``z``). Raises ``ValueError`` when ``trials`` is below 1 or
    ``successes`` is not within [0, trials]."""
    if trials < 1:
        raise ValueError("the Wilson interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within [0, {trials}], not {successes}")
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def observed_fpir(nonmated_best_scores: Iterable[float], threshold: float) -> tuple[float, float, float]:
    """Return ``(rate, ci_low, ci_high)``: the share of non-mated probes whose best score is strictly
    above ``threshold`` and its 95% Wilson score interval.

    A probe with no candidate should be passed as ``-inf`` (it is never above a threshold). Raises
    ``ValueError`` when no score is given or a score is NaN.
    """
    scores = np.asarray(list(nonmated_best_scores), dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no non-mated score: FPIR is undefined")
    if np.isnan(scores).any():
        raise ValueError("a non-mated score is NaN")
    false_positives = int(np.count_nonzero(scores > threshold))
    low, high = wilson_interval(false_positives, int(scores.size))
    return false_positives / scores.size, low, high
