"""The Prometheus metrics of one server: counters of searches and enrollments, the latency
histogram the request middleware fills, and live gauges read at scrape time.

:class:`Metrics` holds them in its own ``CollectorRegistry`` (tests make many servers in one
process; the global registry would refuse the second one's metrics). The HTTP side (request
timing middleware, ``GET /api/v1/metrics``) is :mod:`facetrace.api.observability`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from facetrace import __version__
from facetrace.config import Settings
from facetrace.store.db import Database
from facetrace.store.jobs import Job
from facetrace.store.workflow_models import Notification

log = logging.getLogger(__name__)
SEARCH_KINDS = ("image", "compare", "video")
SEARCH_OUTCOMES = ("match", "no_match", "error")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class SearchTally:
    """Filled in by a counted search: whether a candidate reached the decision threshold."""

    match: bool = False


@dataclass(frozen=True)
class LiveSources:
    """Where the scrape-time gauges come from: the database, and the gallery's state in memory."""

    db: Database
    settings: Settings  # read at each scrape: whether data is encrypted at rest
    loaded_index: Callable[[], Any]  # the index when loaded, else None (never loads it)
    analysis_workers_alive: Callable[[], int]


class Metrics:
    """The Prometheus metrics of one server, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "facetrace_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status class.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.searches = Counter(
            "facetrace_searches",
            "Searches by kind (image, compare, video) and outcome (match: a candidate at or above the "
            "decision threshold; no_match; error: refused or failed).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.enroll_images = Counter(
            "facetrace_enroll_images",
            "Images submitted for enrollment (uploads and imports) by outcome: enrolled, skipped (already "
            "enrolled), failed (unreadable, no usable face).",
            ["outcome"],
            registry=self.registry,
        )
        self.enroll_faces = Counter(
            "facetrace_enroll_faces", "Faces enrolled as gallery templates.", registry=self.registry
        )
        for kind in SEARCH_KINDS:  # every series exists from the start: rates need a zero to begin from
            for outcome in SEARCH_OUTCOMES:
                self.searches.labels(kind, outcome)
        for outcome in ("enrolled", "skipped", "failed"):
            self.enroll_images.labels(outcome)

    def bind(self, sources: LiveSources) -> None:
        """Add the gauges read from ``sources`` at scrape time (job queue, gallery, outbox)."""
        self.registry.register(_LiveCollector(sources))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.request_seconds.labels(method, route, f"{status // 100}xx").observe(seconds)

    def count_search(self, kind: str, outcome: str) -> None:
        """Count one search of ``kind`` (image, compare, video) with ``outcome`` (match, no_match, error)."""
        self.searches.labels(kind, outcome).inc()

    @contextmanager
    def counting_search(self, kind: str) -> Iterator[SearchTally]:
        """Count the search run in the ``with`` block: ``error`` if it raises, else ``match`` when the
        block set ``tally.match``, else ``no_match``."""
        tally = SearchTally()
        try:
            yield tally
        except Exception:
            self.count_search(kind, "error")
            raise
        self.count_search(kind, "match" if tally.match else "no_match")

    def count_enrollment(self, enrolled: int = 0, skipped: int = 0, failed: int = 0) -> None:
        """Count enrollment outcomes (each enrolled image adds one face template)."""
        for outcome, n in (("enrolled", enrolled), ("skipped", skipped), ("failed", failed)):
            if n:
                self.enroll_images.labels(outcome).inc(n)
        if enrolled:
            self.enroll_faces.inc(enrolled)

    def exposition(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Gauges computed at scrape time: cheap grouped counts and what the server holds in memory."""

    def __init__(self, sources: LiveSources) -> None:
        self.sources = sources

    def describe(self) -> list[Metric]:
        return []  # computed per scrape: nothing to check for duplicates at registration

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("facetrace_build_info", "The running facetrace version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        encrypted = GaugeMetricFamily(
            "facetrace_encryption_at_rest", "1 when templates, contacts, photos and the index file are encrypted."
        )
        encrypted.add_metric([], 1 if self.sources.settings.encrypted else 0)
        yield encrypted
        up = GaugeMetricFamily("facetrace_database_up", "1 when the database answered this scrape.")
        jobs = GaugeMetricFamily("facetrace_jobs", "Background jobs by kind and state.", labels=["kind", "state"])
        outbox = GaugeMetricFamily("facetrace_notifications", "Notifications by status.", labels=["status"])
        try:
            with self.sources.db.sessions() as session:
                for kind, state, n in session.execute(
                    select(Job.kind, Job.state, func.count(Job.id)).group_by(Job.kind, Job.state)
                ):
                    jobs.add_metric([str(kind), str(state)], int(n))
                for status, n in session.execute(
                    select(Notification.status, func.count(Notification.id)).group_by(Notification.status)
                ):
                    outbox.add_metric([str(status)], int(n))
            up.add_metric([], 1)
            yield jobs
            yield outbox
        except Exception as exc:  # a scrape never fails: the gauge says the database did not answer
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
        yield up
        loaded = GaugeMetricFamily("facetrace_index_loaded", "1 when the gallery's index is loaded in memory.")
        index = self.sources.loaded_index()
        loaded.add_metric([], 1 if index is not None else 0)
        yield loaded
        if index is not None:
            templates = GaugeMetricFamily(
                "facetrace_gallery_templates",
                "Templates in the gallery's index, by backend and index type.",
                labels=["backend", "index_type"],
            )
            templates.add_metric(list(_index_labels(index)), len(index))
            yield templates
        workers = GaugeMetricFamily("facetrace_analysis_workers", "Live image analysis worker processes.")
        workers.add_metric([], self.sources.analysis_workers_alive())
        yield workers


def _index_labels(index: Any) -> tuple[str, str]:
    """Return (backend, index type) of a vector index without computing its full description."""
    plan = getattr(index, "plan", None)
    if plan is not None:
        return "faiss", str(plan.factory)
    return type(index).__name__.removesuffix("Index").lower() or "unknown", "remote"
