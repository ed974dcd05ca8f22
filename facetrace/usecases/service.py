"""The long-lived objects of one server: settings, database, gallery, job runner and metrics.

The composition root (:mod:`facetrace.server`) builds one :class:`Service`; the API routes, the
web pages and the use-cases below them all work on it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from facetrace.config import Settings
from facetrace.gallery import Gallery
from facetrace.store.db import Database
from facetrace.usecases.jobs import JobRunner
from facetrace.usecases.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Everything one server holds for its lifetime."""

    settings: Settings
    db: Database
    gallery: Gallery
    jobs: JobRunner
    metrics: Metrics = field(default_factory=Metrics)
    _warm_up: threading.Thread | None = field(default=None, init=False, repr=False)

    def warm_up(self) -> None:
        """Load the face models and the index (synced with the database) now, in the background,
        rather than in the first search; readiness reports the index as loading meanwhile."""

        def load() -> None:
            try:
                self.gallery.index()
                self.gallery.gallery_size()  # counted once now (seconds at millions), not in the first search
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
