"""Analyse many images on every core: one process per worker, models loaded once each."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, TypeVar

from facetrace.errors import FacetraceError
from facetrace.vision.decode import ImageInput, decode_image
from facetrace.vision.pipeline import Face, FaceAnalyzer, get_analyzer

T = TypeVar("T")
#: Images handed to the workers ahead of the one awaited, per worker: enough to keep them busy, few
#: enough that a large import never holds more than a handful of files in memory.
AHEAD_PER_WORKER = 2

_worker_analyzer: FaceAnalyzer | None = None


def default_workers() -> int:
    """Return the number of usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker(options: dict[str, Any]) -> None:
    global _worker_analyzer
    _worker_analyzer = get_analyzer(**options)


def _init_pool_worker(options: dict[str, Any], nice: int) -> None:
    if nice > 0:
        os.nice(nice)  # a background job's workers leave the cores to interactive searches first
    _init_worker(options)


def _analyze_one(job: tuple[str, bool]) -> list[Face] | FacetraceError:
    path, largest_only = job
    assert _worker_analyzer is not None
    try:
        return _worker_analyzer.analyze_file(path, largest_only=largest_only)
    except FacetraceError as exc:
        return exc


def analyze_paths(
    paths: Iterable[str | Path],
    *,
    workers: int = 0,
    largest_only: bool = False,
    options: dict[str, Any] | None = None,
    nice: int = 0,
) -> Iterator[list[Face] | FacetraceError]:
    """Yield, in input order, the faces of each image (or the error that stopped it).

    ``workers=0`` uses every core; ``workers=1`` runs in this process. ``nice`` > 0 lowers the CPU
    priority of the worker processes by that much (background jobs; not applied in this process).
    """
    options = options or {}
    jobs = [(str(p), largest_only) for p in paths]
    workers = workers or default_workers()
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(options)
        for job in jobs:
            yield _analyze_one(job)
        return
    # forkserver: workers never inherit this process's threads (FAISS/OpenMP, HTTP server).
    context = mp.get_context("forkserver")
    with context.Pool(workers, initializer=_init_pool_worker, initargs=(options, nice)) as pool:
        yield from pool.imap(_analyze_one, jobs, chunksize=2)


def _analyze_image(image: ImageInput, largest_only: bool) -> list[Face] | FacetraceError:
    assert _worker_analyzer is not None
    try:
        decoded = decode_image(image.data, max_pixels=_worker_analyzer.max_pixels, name=image.name)
        return _worker_analyzer.analyze(decoded, largest_only=largest_only)
    except FacetraceError as exc:
        return exc


def analyze_images(
    jobs: Iterable[tuple[T, ImageInput]],
    *,
    workers: int = 0,
    largest_only: bool = False,
    options: dict[str, Any] | None = None,
    nice: int = 0,
) -> Iterator[tuple[T, ImageInput, list[Face] | FacetraceError]]:
    """Yield, in input order, each job's key, image and faces (or the error that stopped it).

    ``jobs`` is read lazily, a few images ahead of the results (``AHEAD_PER_WORKER`` per worker), so that
    its images can be read from files one by one. ``workers=0`` uses every core; ``workers=1`` (or a
    single image) runs in this process. ``nice`` > 0 lowers the CPU priority of the worker processes by
    that much (background jobs; not applied in this process).
    """
    options = options or {}
    workers = workers or default_workers()
    pending = iter(jobs)
    first = next(pending, None)
    second = next(pending, None) if first is not None else None
    if first is None:
        return
    head = [first] if second is None else [first, second]
    if workers <= 1 or second is None:
        _init_worker(options)
        for key, image in itertools.chain(head, pending):
            yield key, image, _analyze_image(image, largest_only)
        return
    # forkserver: workers never inherit this process's threads (FAISS/OpenMP, HTTP server).
    context = mp.get_context("forkserver")
    with context.Pool(workers, initializer=_init_pool_worker, initargs=(options, nice)) as pool:
        queued: deque[tuple[T, ImageInput, AsyncResult[list[Face] | FacetraceError]]] = deque()
        for key, image in itertools.chain(head, pending):
            queued.append((key, image, pool.apply_async(_analyze_image, (image, largest_only))))
            if len(queued) >= AHEAD_PER_WORKER * workers:
                key, image, result = queued.popleft()
                yield key, image, result.get()
        while queued:
            key, image, result = queued.popleft()
            yield key, image, result.get()
