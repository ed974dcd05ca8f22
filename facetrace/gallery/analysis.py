"""The gallery's face model: detecting and embedding faces in encoded images, in this process or in a
pool of worker processes.

dlib holds the GIL while it embeds a face, so analysis on a server's request threads would stall
every other request. A server therefore gives its gallery an :class:`AnalysisPool`
(``Settings.analysis_processes``): uploaded images are decoded and analysed in worker processes and
only the fast index search runs in the server; a worker that crashes on a hostile file takes only
itself down. Without a pool, images are analysed in this process, one at a time.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from facetrace.config import Settings
from facetrace.errors import FacetraceError
from facetrace.vision.decode import decode_image
from facetrace.vision.parallel import default_workers
from facetrace.vision.pipeline import Face, FaceAnalyzer, get_analyzer

log = logging.getLogger(__name__)


class AnalysisUnavailable(FacetraceError):
    code = "unavailable"
    status = 503


def analyzer_options(settings: Settings) -> dict[str, Any]:
    """Return the options that build the deployment's face analyser (here or in worker processes)."""
    return {
        "detector": settings.detector,
        "max_pixels": settings.max_pixels,
        "detect_max_side": settings.detect_max_side,
        "embedder_name": settings.embedder,
    }


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

    @classmethod
    def for_settings(cls, settings: Settings) -> AnalysisPool | None:
        """Return the pool a server of ``settings`` analyses in, or None when it analyses in its own
        process (``analysis_processes`` 1, or one usable core)."""
        processes = settings.analysis_processes or default_workers()
        return cls(processes, analyzer_options(settings), settings.max_pixels) if processes > 1 else None

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
        """Stop the worker processes (waiting for the images being analysed)."""
        with self._lock:
            self.closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


class FaceModel:
    """The deployment's face analyser, loaded on first use, and where images are analysed.

    ``pool``: analyse :meth:`detect`'s images in these worker processes; without one they are
    analysed here, one at a time (dlib's models are not meant for concurrent calls).
    """

    def __init__(self, settings: Settings, pool: AnalysisPool | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self._analyzer: FaceAnalyzer | None = None
        self._analysis_lock = threading.Lock()

    @property
    def options(self) -> dict[str, Any]:
        """The options that build this analyser (see :func:`analyzer_options`)."""
        return analyzer_options(self.settings)

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The analyser of this process, loaded on first use."""
        if self._analyzer is None:
            self._analyzer = get_analyzer(**self.options)
        return self._analyzer

    @property
    def model_id(self) -> str:
        """The embedding model's identifier (templates of other models are not comparable)."""
        return self.analyzer.model_id

    @property
    def dim(self) -> int:
        """The length of the model's templates."""
        return int(getattr(self.analyzer.embedder, "dim", 128))

    def detect(self, data: bytes, name: str = "image") -> list[Face]:
        """Return every face in encoded image ``data``.

        Raises:
            ImageError: not a usable image (or over the pixel limit).
            AnalysisUnavailable: a worker of the pool died (the pool is restarted for the next request).
        """
        if self.pool is not None:
            return self.pool.detect(data, name)
        image = decode_image(data, max_pixels=self.settings.max_pixels, name=name)
        with self._analysis_lock:
            return self.analyzer.analyze(image)

    def analyze_here(self, data: bytes, name: str, *, largest_only: bool) -> list[Face] | FacetraceError:
        """Return the faces of encoded image ``data`` analysed in this process (serialised with every other
        analysis here), or the error that stopped it, as a value (an enrollment records it and goes on)."""
        try:
            image = decode_image(data, max_pixels=self.settings.max_pixels, name=name)
            with self._analysis_lock:
                return self.analyzer.analyze(image, largest_only=largest_only)
        except FacetraceError as exc:
            return exc

    def close(self) -> None:
        """Stop the pool's worker processes, if any."""
        if self.pool is not None:
            self.pool.close()
