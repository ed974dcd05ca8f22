"""The peer: ``face_recognition`` with its defaults, measured under ``shared/eval-protocol.md``.

The peer is what a user of the ``face_recognition`` package gets without tuning:
``load_image_file`` -> ``face_locations(img)`` (HOG, upsample 1) -> largest face ->
``face_encodings(img, [box])`` (5-point landmarks, ``num_jitters=1``); the score of a gallery
candidate is the negative euclidean distance. Images are processed by a pool of ``workers``
processes (one per core, each single-threaded), so that a throughput comparison with facetrace can
be made on the same number of cores. The search is brute force over the gallery with numpy.

Run as a script::

    .venv/bin/python bench/peer.py [DATASET_DIR] [--workers N] [--json] [--limit-identities K]

or import it (``bench/`` is not a package)::

    sys.path.insert(0, str(repo_root / "bench"))
    import peer
    result = peer.run_peer(dataset_dir, workers=2)

The split and the figures come from :mod:`facetrace.evaluation.protocol`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # running from a checkout without the package installed
    sys.path.insert(0, str(REPO_ROOT))

from facetrace.errors import FacetraceError  # noqa: E402
from facetrace.evaluation.protocol import (  # noqa: E402
    ProbeResult,
    Sample,
    Split,
    build_split,
    compute_metrics,
)

#: The keys of :func:`run_peer`'s result that are printed with ``--json`` (the protocol's keys first).
PRINTED_KEYS = (
    "gallery",
    "mated_probes",
    "nonmated_probes",
    "rank1",
    "rank5",
    "fnir_at_fpir_0.01",
    "fnir_at_fpir_0.1",
    "failure_to_extract",
    "images",
    "seconds",
    "images_per_s",
    "gallery_split",
    "failures",
    "workers",
    "extract_seconds",
    "search_seconds",
    "cpu_images_per_s_per_worker",
    "identity_stride",
    "dataset",
    "system",
)

SYSTEM = "face_recognition 1.3 defaults: HOG upsample 1, largest face, 5-point, num_jitters 1, -L2"

# Single-threaded numerical libraries in each worker: one process per core.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def default_dataset_dir() -> Path:
    """Return ``$FACETRACE_DATASET`` when set, else ``<repo root>/../shared/data/faces-dev``."""
    env = os.environ.get("FACETRACE_DATASET")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "faces-dev"


def _init_worker() -> None:
    """Pool initializer: make the worker single-threaded and load the models once."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    import face_recognition  # noqa: F401  (loads the dlib models at import)


def extract(path: str) -> tuple[str, np.ndarray | None, float, float]:
    """Return ``(path, embedding, seconds, cpu_seconds)`` for one image, the peer's way.

    ``embedding`` is the 128-d float64 encoding of the largest face (by box area; the first
    detected on a tie), or None when no face is found or the file cannot be decoded (a failure
    to extract). ``seconds`` is the wall time the image took in the worker and ``cpu_seconds`` the
    worker's CPU time for it (unlike wall time, barely affected by other load on the machine).
    """
    import face_recognition

    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        image = face_recognition.load_image_file(path)
    except (OSError, ValueError):
        return path, None, time.perf_counter() - start, time.process_time() - cpu_start
    locations = face_recognition.face_locations(image)
    if not locations:
        return path, None, time.perf_counter() - start, time.process_time() - cpu_start
    largest = max(locations, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
    encodings = face_recognition.face_encodings(image, [largest])
    embedding = np.asarray(encodings[0], dtype=np.float64) if encodings else None
    return path, embedding, time.perf_counter() - start, time.process_time() - cpu_start


def extract_encoded(job: tuple[str, bytes]) -> tuple[str, np.ndarray | None]:
    """Return ``(key, embedding)`` for one encoded image given as ``(key, bytes)``, the peer's way
    (see :func:`extract`); the embedding is None when no face is found or the bytes do not decode."""
    import io

    import face_recognition

    key, data = job
    try:
        image = face_recognition.load_image_file(io.BytesIO(data))
    except (OSError, ValueError):
        return key, None
    locations = face_recognition.face_locations(image)
    if not locations:
        return key, None
    largest = max(locations, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
    encodings = face_recognition.face_encodings(image, [largest])
    return key, (np.asarray(encodings[0], dtype=np.float64) if encodings else None)


def extract_encoded_all(jobs: Sequence[tuple[str, bytes]], workers: int) -> dict[str, np.ndarray | None]:
    """Return the peer's embedding (or None) of every ``(key, encoded image)``, on ``workers`` processes."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=workers, initializer=_init_worker) as pool:
        return dict(pool.imap_unordered(extract_encoded, jobs, chunksize=4))


def extract_all(
    paths: Sequence[str], workers: int, chunksize: int = 4
) -> tuple[dict[str, np.ndarray | None], dict[str, float], dict[str, float]]:
    """Return the embedding (or None), the worker wall time and the worker CPU time of every path,
    using ``workers`` processes.

    The pool is started with ``spawn`` so that each worker is a fresh, single-threaded process.
    """
    embeddings: dict[str, np.ndarray | None] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=workers, initializer=_init_worker) as pool:
        for path, embedding, took, cpu in pool.imap_unordered(extract, paths, chunksize=chunksize):
            embeddings[path] = embedding
            seconds[path] = took
            cpu_seconds[path] = cpu
    return embeddings, seconds, cpu_seconds


def search(
    gallery_ids: Sequence[str], gallery: np.ndarray, probes: np.ndarray, top_k: int
) -> list[list[tuple[str, float]]]:
    """Return, for each probe row, its ``top_k`` gallery candidates ``(identity, -L2 distance)``, best first.

    Brute force: all distances are computed. Ties keep the gallery order.
    """
    if len(probes) == 0:
        return []
    if len(gallery) == 0:
        return [[] for _ in range(len(probes))]
    k = min(top_k, len(gallery))
    squared = (
        np.einsum("ij,ij->i", probes, probes)[:, None]
        + np.einsum("ij,ij->i", gallery, gallery)[None, :]
        - 2.0 * probes @ gallery.T
    )
    scores = -np.sqrt(np.maximum(squared, 0.0))
    results = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
        top = top[np.lexsort((top, -row[top]))]
        results.append([(gallery_ids[i], float(row[i])) for i in top])
    return results


def embedded(samples: Sequence[Sample], embeddings: dict[str, np.ndarray | None]) -> tuple[list[Sample], np.ndarray]:
    """Return the samples that have an embedding, and their embeddings stacked as an ``(n, 128)`` array."""
    found: list[Sample] = []
    rows: list[np.ndarray] = []
    for sample in samples:
        embedding = embeddings[str(sample.path)]
        if embedding is not None:
            found.append(sample)
            rows.append(embedding)
    return found, (np.stack(rows) if rows else np.zeros((0, 128)))


def probe_results(
    samples: Sequence[Sample],
    embeddings: dict[str, np.ndarray | None],
    gallery_ids: Sequence[str],
    gallery: np.ndarray,
    *,
    mated: bool,
    top_k: int = 10,
) -> list[ProbeResult]:
    """Return one :class:`ProbeResult` per sample, in order: its ``top_k`` candidates from
    :func:`search`, or none when the sample has no embedding. ``truth`` is the sample's identity
    for ``mated`` probes and None otherwise."""
    found, matrix = embedded(samples, embeddings)
    candidates = dict(zip((s.path for s in found), search(gallery_ids, gallery, matrix, top_k), strict=True))
    return [ProbeResult(s.identity if mated else None, candidates.get(s.path, [])) for s in samples]


def run_peer(
    dataset_dir: Path,
    workers: int | None = None,
    *,
    identity_stride: int = 1,
    top_k: int = 10,
    split: Split | None = None,
) -> dict[str, Any]:
    """Run the peer on ``dataset_dir`` under the protocol and return its figures and raw results.

    Printed keys (see :data:`PRINTED_KEYS`): the protocol's ``gallery`` (identities enrolled,
    i.e. gallery images with a face), ``mated_probes``, ``nonmated_probes``, ``rank1``, ``rank5``,
    ``fnir_at_fpir_0.01``, ``fnir_at_fpir_0.1``, ``failure_to_extract``, ``images``, ``seconds``
    (wall clock from the pool's start to the end of the search), ``images_per_s``; and
    ``gallery_split`` (gallery images before extraction), ``failures`` (image count),
    ``workers``, ``extract_seconds``, ``search_seconds``, ``cpu_images_per_s_per_worker`` (images
    per second of worker CPU time: decode, detect, embed; a figure that other load on the machine
    barely changes), ``identity_stride``, ``dataset``,
    ``system``.

    Raw keys (not printed): ``mated_results`` and ``nonmated_results`` (lists of
    :class:`ProbeResult`, ``top_k`` candidates each), ``embeddings`` (path string -> 128-d array or
    None), ``image_seconds`` and ``image_cpu_seconds`` (path string -> wall / CPU seconds in the
    worker), ``split`` (the
    :class:`Split`).

    ``workers`` defaults to the number of cores; ``identity_stride`` keeps every K-th identity
    (see :func:`build_split`). Raises :class:`~facetrace.errors.ManifestError` for a dataset
    folder that is missing or empty, and ``ValueError`` when the split has no mated or no
    non-mated probe.
    """
    dataset_dir = Path(dataset_dir)
    workers = workers or os.cpu_count() or 1
    if split is None:
        split = build_split(dataset_dir, identity_stride=identity_stride)
    samples = split.all_samples()

    start = time.perf_counter()
    embeddings, image_seconds, image_cpu_seconds = extract_all([str(s.path) for s in samples], workers)
    extracted = time.perf_counter()
    enrolled, gallery = embedded(split.gallery, embeddings)
    gallery_ids = [s.identity for s in enrolled]
    mated = probe_results(split.mated, embeddings, gallery_ids, gallery, mated=True, top_k=top_k)
    nonmated = probe_results(split.nonmated, embeddings, gallery_ids, gallery, mated=False, top_k=top_k)
    end = time.perf_counter()

    metrics = compute_metrics(mated, nonmated)
    failures = sum(1 for e in embeddings.values() if e is None)
    seconds = end - start
    result: dict[str, Any] = {
        "gallery": len(enrolled),
        "mated_probes": len(split.mated),
        "nonmated_probes": len(split.nonmated),
        **metrics,
        "failure_to_extract": failures / len(samples),
        "images": len(samples),
        "seconds": seconds,
        "images_per_s": len(samples) / seconds,
        "gallery_split": len(split.gallery),
        "failures": failures,
        "workers": workers,
        "extract_seconds": extracted - start,
        "search_seconds": end - extracted,
        "cpu_images_per_s_per_worker": len(samples) / max(sum(image_cpu_seconds.values()), 1e-9),
        "identity_stride": identity_stride,
        "dataset": str(dataset_dir),
        "system": SYSTEM,
        "mated_results": mated,
        "nonmated_results": nonmated,
        "embeddings": embeddings,
        "image_seconds": image_seconds,
        "image_cpu_seconds": image_cpu_seconds,
        "split": split,
    }
    return result


def printable(result: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON-ready part of a :func:`run_peer` result (the :data:`PRINTED_KEYS`)."""
    return {key: result[key] for key in PRINTED_KEYS if key in result}


def save_embeddings(result: dict[str, Any], path: Path) -> None:
    """Write the run's embeddings to ``path`` (``.npz``): ``paths`` (relative to the dataset folder),
    ``identities``, ``roles`` (gallery / mated / nonmated), ``embeddings`` (NaN rows for a failure
    to extract) and ``seconds`` (per image, in the worker)."""
    split: Split = result["split"]
    dataset = Path(result["dataset"])
    rows = (
        [(s, "gallery") for s in split.gallery]
        + [(s, "mated") for s in split.mated]
        + [(s, "nonmated") for s in split.nonmated]
    )
    matrix = np.full((len(rows), 128), np.nan)
    for i, (sample, _role) in enumerate(rows):
        embedding = result["embeddings"][str(sample.path)]
        if embedding is not None:
            matrix[i] = embedding
    np.savez_compressed(
        path,
        paths=np.array([str(s.path.relative_to(dataset)) for s, _ in rows]),
        identities=np.array([s.identity for s, _ in rows]),
        roles=np.array([role for _, role in rows]),
        embeddings=matrix,
        seconds=np.array([result["image_seconds"][str(s.path)] for s, _ in rows]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "dataset",
        nargs="?",
        type=Path,
        default=None,
        help="dataset folder (default: $FACETRACE_DATASET or ../shared/data/faces-dev)",
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--limit-identities",
        type=int,
        default=1,
        metavar="K",
        help="keep every K-th identity only, for quick runs (default 1: all)",
    )
    parser.add_argument(
        "--save-embeddings",
        type=Path,
        default=None,
        metavar="NPZ",
        help="also write every image's embedding to this .npz file",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.limit_identities < 1:
        parser.error("--limit-identities must be at least 1")

    dataset = args.dataset or default_dataset_dir()
    try:
        result = run_peer(dataset, args.workers, identity_stride=args.limit_identities)
    except (FacetraceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.save_embeddings is not None:
        save_embeddings(result, args.save_embeddings)
    out = printable(result)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:>20}  {value:.4f}" if isinstance(value, float) else f"{key:>20}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
