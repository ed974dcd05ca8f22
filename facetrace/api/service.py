"""The long-lived objects of one API server: settings, database, gallery, analysis pool and job runner.

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
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from facetrace.api.jobs import JobRunner
from facetrace.config import Settings
from facetrace.errors import FacetraceError
from facetrace.gallery.service import EnrollOutcome, Gallery
from facetrace.gallery.sources import EnrollItem
from facetrace.store.db import Database
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
            log.error("an image analysis worker died on %s; restarting the pool", name)
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
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


class ServiceGallery(Gallery):
    """The engine's :class:`Gallery`, analysing uploads in the pool (or serialised in-process)."""

    def __init__(self, settings: Settings, *, db: Database) -> None:
        super().__init__(settings, db=db)
        processes = settings.analysis_processes or default_workers()
        self.pool = AnalysisPool(processes, self.analyzer_options, settings.max_pixels) if processes > 1 else None
        self._analysis_lock = threading.Lock()

    def detect(self, data: bytes, name: str = "image") -> list[Face]:
        """Return every face in encoded image ``data``. Raises ImageError for bad images."""
        if self.pool is not None:
            return self.pool.detect(data, name)
        with self._analysis_lock:  # dlib's models are not meant for concurrent calls
            return super().detect(data, name)

    def enroll_uploads(self, items: list[EnrollItem]) -> EnrollOutcome:
        """Enroll a few uploaded images in this thread (bulk imports run as jobs); return the outcome."""
        with self._analysis_lock:
            return self.enroll(items, workers=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        super().close()


@dataclass
class Service:
    """Everything one API server holds for its lifetime."""

    settings: Settings
    db: Database
    gallery: ServiceGallery
    jobs: JobRunner

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open (and migrate) the database and set up the gallery and job runner.

        Raises:
            ConfigError: the database cannot be opened.
        """
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        gallery = ServiceGallery(settings, db=db)
        service = cls(settings=settings, db=db, gallery=gallery, jobs=JobRunner(db, workers=settings.job_workers))
        service.jobs.bind(service)
        return service

    def close(self) -> None:
        """Stop the job runner and the analysis pool; save the index; close the database."""
        self.jobs.shutdown()
        self.gallery.close()
