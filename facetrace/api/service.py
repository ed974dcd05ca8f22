"""The long-lived objects of one API server: settings, database, gallery, analysis pool and job runner.

dlib holds the GIL while it embeds a face, so analysis on the server's request threads would
stall every other request. The server's gallery therefore analyses uploaded images in a pool of
worker processes (:class:`~facetrace.gallery.AnalysisPool`, ``Settings.analysis_processes``;
1 = in the server process, serialised), and only the fast FAISS search runs in the server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from facetrace.api.jobs import JobRunner
from facetrace.api.observability import Metrics
from facetrace.config import Settings
from facetrace.gallery import AnalysisPool, Gallery
from facetrace.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Everything one API server holds for its lifetime."""

    settings: Settings
    db: Database
    gallery: Gallery
    jobs: JobRunner
    metrics: Metrics = field(default_factory=Metrics)
    _warm_up: threading.Thread | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open (and migrate) the database and set up the gallery and job runner.

        Raises:
            ConfigError: the database cannot be opened.
        """
        settings.home.mkdir(parents=True, exist_ok=True)
        if not settings.encrypted:
            log.warning(
                "encryption at rest is OFF: templates, contact details and photos are stored unencrypted "
                "(create a key with `facetrace key generate PATH`, set FACETRACE_KEY_FILE, run `facetrace key rotate`)"
            )
        db = Database(settings.db_url, keyring=settings.keyring)
        metrics = Metrics()
        gallery = Gallery(
            settings, db=db, pool=AnalysisPool.for_settings(settings), on_enrolled=metrics.count_enrollment
        )
        jobs = JobRunner(db, workers=settings.job_workers)
        service = cls(settings=settings, db=db, gallery=gallery, jobs=jobs, metrics=metrics)
        service.jobs.bind(service)
        metrics.bind(service)
        return service

    def warm_up(self) -> None:
        """Load the face models and the index (synced with the database) now, in the background,
        rather than in the first search; readiness reports the index as loading meanwhile."""

        def load() -> None:
            try:
                self.gallery.index()
            except Exception as exc:  # the first search reports it to its caller
                log.error("loading the index failed: %s", exc)

        self._warm_up = threading.Thread(target=load, name="facetrace-warm-up", daemon=True)
        self._warm_up.start()

    def close(self) -> None:
        """Stop the job runner and the analysis pool; save the index; close the database."""
        if self._warm_up is not None:
            self._warm_up.join(120)  # not closed under a loading index
        self.jobs.shutdown()
        self.gallery.close()
