"""The server's gallery: the engine's :class:`Gallery` with uploads analysed in a pool of worker processes.

dlib holds the GIL while it embeds a face, so analysis on the server's request threads would
stall every other request. Uploaded images are therefore decoded and analysed in a pool of
worker processes (``Settings.analysis_processes``; 1 = in the server process, serialised), and
only the fast FAISS search runs in the server. A worker that crashes on a hostile file takes
only itself down.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from facetrace.config import Settings
from facetrace.errors import FacetraceError
from facetrace.gallery.service import EnrollOutcome, Gallery
from facetrace.gallery.sources import EnrollItem
from facetrace.store.db import Database
from facetrace.usecases.metrics import Metrics
from facetrace.vision.decode import decode_image
from facetrace.vision.parallel import default_workers
from facetrace.vision.pipeline import Face, get_analyzer

log = logging.getLogger(__name__)


class AnalysisUnavailable(FacetraceError):
    code = "unavailable"
    status = 503


def _analyze_in_worker(data: bytes, name: str, max_pixels: int, options: dict[str, Any]) -> list[Face] | FacetraceError:
    """Decode and analyse one image in a worker process; errors come back as values."""
    try:
        return get_analyzer(**options).analyze(decode_image(data, max_pixels=max_pixels, name=name))
    except FacetraceError as exc:
        return exc


class AnalysisPool:
    """Worker processes that decode and analyse uploaded images; started on first use."""

    def __init__(self, processes: int, options: dict[str, Any], max_pixels: int) -> None:
        self.processes = processes
        self.options = options
        self.max_pixels = max_pixels
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.closed = False

    def health(self) -> tuple[bool, str]:
        """Return (usable, what state it is in) without starting anything: for the readiness check.

        A pool whose worker died is dropped here too, so that the next image starts a fresh one
        even when no search comes to notice it.
        """
        with self._lock:
            executor = self._executor
            if self.closed:
                return False, "stopped: the server is shutting down"
            if executor is None:
                return True, "idle: the workers start with the first image"
            if getattr(executor, "_broken", False):
                self._executor = None
                broken = executor
            else:
                return True, f"{self.alive()} of {self.processes} worker(s) running"
        broken.shutdown(wait=False, cancel_futures=True)
        log.error("an image analysis worker died; the pool starts afresh with the next image")
        return False, "a worker died; the pool starts afresh with the next image"

    def alive(self) -> int:
        """Return the number of live worker processes (0 before the first image)."""
        executor = self._executor
        processes = dict(getattr(executor, "_processes", None) or {}) if executor is not None else {}
        return sum(1 for p in processes.values() if p.is_alive())

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # forkserver: workers never inherit the server's threads (event loop, FAISS/OpenMP).
                self._executor = ProcessPoolExecutor(self.processes, mp_context=mp.get_context("forkserver"))
            return self._executor

    def detect(self, data: bytes, name: str) -> list[Face]:
        """Return the faces in encoded image ``data``.

        Raises:
            ImageError: not a usable image (or over the pixel limit).
            AnalysisUnavailable: a worker died (the pool is restarted for the next request).
        """
        pool = self._pool()
        try:
            result = pool.submit(_analyze_in_worker, data, name, self.max_pixels, self.options).result()
        except BrokenProcessPool:
            log.error("an image analysis worker died; restarting the pool")  # no file name: it may name a person
            with self._lock:
                if self._executor is pool:
                    self._executor = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise AnalysisUnavailable(f"{name}: the image analysis worker stopped unexpectedly") from None
        if isinstance(result, FacetraceError):
            raise result
        return result

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


class ServiceGallery(Gallery):
    """The engine's :class:`Gallery`, analysing uploads in the pool (or serialised in-process)."""

    def __init__(self, settings: Settings, *, db: Database, metrics: Metrics | None = None) -> None:
        super().__init__(settings, db=db)
        self.metrics = metrics or Metrics()
        processes = settings.analysis_processes or default_workers()
        self.pool = AnalysisPool(processes, self.analyzer_options, settings.max_pixels) if processes > 1 else None
        self._analysis_lock = threading.Lock()

    def detect(self, data: bytes, name: str = "image") -> list[Face]:
        """Return every face in encoded image ``data``. Raises ImageError for bad images."""
        if self.pool is not None:
            return self.pool.detect(data, name)
        with self._analysis_lock:  # dlib's models are not meant for concurrent calls
            return super().detect(data, name)

    def loaded_index(self) -> Any:
        """Return the index when it is loaded in memory, else None (never loads it)."""
        return self._index

    def index_consistency(self, *, lock_timeout: float = 0.5) -> tuple[bool, str]:
        """Return (ok, state) of the loaded index against the database, cheaply: one grouped count.

        The index must hold exactly the database's templates when both are at the same gallery
        version; when the database is ahead (an enrollment committed, its template about to be
        added, or another process enrolled) the index catches up with the next search, so that is
        no failure. Never loads or syncs the index itself.
        """
        for attempt in range(2):
            if not self._lock.acquire(timeout=lock_timeout):
                return True, "busy: the index is being brought in line with the database"
            try:
                index = self._index
                if index is None:
                    return False, "loading: the index is not in memory yet"
                held, version = len(index), self._version
                stored = self._face_count()
                current = self.db.gallery_version()
            finally:
                self._lock.release()
            if current != version:
                return True, "catching up: the database changed since the index was last brought in line"
            if held == stored:
                return True, "loaded, in line with the database"
            if attempt == 0:
                time.sleep(0.2)  # an enrollment in another thread may be adding its template right now
        log.error("readiness: the index holds %d templates, the database %d at the same version", held, stored)
        return False, "damaged: the index and the database disagree on the templates they hold"

    def analysis_workers_alive(self) -> int:
        """Return the live analysis worker processes (1 when images are analysed in the server)."""
        return self.pool.alive() if self.pool is not None else 1

    def _enroll_one(
        self,
        item: EnrollItem,
        path: Path,
        data: bytes,
        digest: str,
        result: Any,
        outcome: EnrollOutcome,
    ) -> str | None:
        # Counted image by image (not when a whole import ends), so that metrics follow a long import.
        enrolled, skipped = outcome.images_enrolled, outcome.images_skipped
        error = super()._enroll_one(item, path, data, digest, result, outcome)
        self.metrics.count_enrollment(
            enrolled=outcome.images_enrolled - enrolled,
            skipped=outcome.images_skipped - skipped,
            failed=1 if error else 0,
        )
        return error

    def enroll_uploads(self, items: list[EnrollItem]) -> EnrollOutcome:
        """Enroll a few uploaded images in this thread (bulk imports run as jobs); return the outcome."""
        with self._analysis_lock:
            return self.enroll(items, workers=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        super().close()
