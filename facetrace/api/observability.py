"""Request ids, access log lines and Prometheus metrics of one API server.

- :class:`RequestContextMiddleware` (pure ASGI, outermost) gives every request an id: a valid
  incoming ``X-Request-ID`` is kept, anything else is replaced by a new one. The id is returned in
  the ``X-Request-ID`` response header (error responses included), put in the context variable
  that log lines (:mod:`facetrace.logs`) and audit events read, and logged with the request's
  route template, status and duration (never the raw path or query string: they can hold ids or
  a searched name). It also times the request for the latency histogram.
- :class:`Metrics` holds the server's counters in its own ``CollectorRegistry`` (tests make many
  apps in one process; the global registry would refuse the second one's metrics), and reads the
  live gauges (job queue, gallery size, notification outbox) from the database at scrape time.
- ``GET /api/v1/metrics`` serves them in the Prometheus text format. Metrics hold counts only, but they
  still describe the deployment: they are served to a bearer of ``FACETRACE_METRICS_TOKEN`` when
  it is set, and otherwise only to clients on this machine (loopback).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrace import __version__
from facetrace.errors import FacetraceError
from facetrace.logs import request_id_var, valid_request_id

if TYPE_CHECKING:
    from facetrace.api.service import Service

log = logging.getLogger(__name__)
access_log = logging.getLogger("facetrace.access")
REQUEST_ID_HEADER = "X-Request-ID"
SEARCH_KINDS = ("image", "compare", "video")
SEARCH_OUTCOMES = ("match", "no_match", "error")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path: raw paths would flood the label space
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsRefused(FacetraceError):
    code = "forbidden"
    status = 403


class MetricsUnauthorized(FacetraceError):
    code = "unauthorized"
    status = 401


def route_template(scope: Scope) -> str:
    """Return the template of the route that served ``scope`` (``/api/v1/persons/{external_id}``),
    or ``unmatched``."""
    # FastAPI keeps the routes of an included router relative to its prefix ("/persons/{external_id}")
    # and records the full template of the matched inclusion in its own scope entry.
    fastapi_scope = scope.get("fastapi")
    context = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    for candidate in (context, scope.get("route")):
        path = getattr(candidate, "path", None)
        if isinstance(path, str) and path:
            return path
    return UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Give each HTTP request an id (header, log context, audit events), time it and log it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming is not None and valid_request_id(incoming) else uuid.uuid4().hex
        request_id_var.set(request_id)  # each request runs in its own task: no reset needed
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            method = str(scope.get("method", "GET"))
            method = method if method in HTTP_METHODS else "other"  # a client may send any method name
            self.metrics.observe_request(method, route, status, elapsed)
            access_log.info(
                "%s %s %d %.1f ms",
                method,
                route,
                status,
                elapsed * 1000,
                extra={"method": method, "route": route, "status": status, "duration_ms": round(elapsed * 1000, 1)},
            )


def install_request_context(app: FastAPI, metrics: Metrics) -> None:
    """Wrap ``app``'s whole middleware stack in :class:`RequestContextMiddleware`: outside Starlette's
    ``ServerErrorMiddleware`` (which ``add_middleware`` cannot reach), so that the 500 of an unexpected
    error, and the 413 of the body limit, carry the request id and are timed too."""
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_context() -> ASGIApp:
        return RequestContextMiddleware(build(), metrics)

    app.build_middleware_stack = build_with_context  # type: ignore[method-assign]


@dataclass
class SearchTally:
    """Filled in by a counted search: whether a candidate reached the decision threshold."""

    match: bool = False


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

    def bind(self, service: Service) -> None:
        """Add the gauges read from ``service`` at scrape time (job queue, gallery, outbox)."""
        self.registry.register(_LiveCollector(service))

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

    def __init__(self, service: Service) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        return []  # computed per scrape: nothing to check for duplicates at registration

    def collect(self) -> Iterator[Metric]:
        from facetrace.store.jobs import Job
        from facetrace.store.workflow_models import Notification

        info = GaugeMetricFamily("facetrace_build_info", "The running facetrace version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        encrypted = GaugeMetricFamily(
            "facetrace_encryption_at_rest", "1 when templates, contacts, photos and the index file are encrypted."
        )
        encrypted.add_metric([], 1 if self.service.settings.encrypted else 0)
        yield encrypted
        up = GaugeMetricFamily("facetrace_database_up", "1 when the database answered this scrape.")
        jobs = GaugeMetricFamily("facetrace_jobs", "Background jobs by kind and state.", labels=["kind", "state"])
        outbox = GaugeMetricFamily("facetrace_notifications", "Notifications by status.", labels=["status"])
        try:
            with self.service.db.sessions() as session:
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
        index = self.service.gallery.loaded_index()
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
        workers.add_metric([], self.service.gallery.analysis_workers_alive())
        yield workers


def _index_labels(index: Any) -> tuple[str, str]:
    """Return (backend, index type) of a vector index without computing its full description."""
    plan = getattr(index, "plan", None)
    if plan is not None:
        return "faiss", str(plan.factory)
    return type(index).__name__.removesuffix("Index").lower() or "unknown", "remote"


# -- GET /api/v1/metrics -------------------------------------------------------------------------------
router = APIRouter(tags=["system"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format.",
        }
    },
)
def metrics(request: Request) -> Response:
    """The server's Prometheus metrics (counts only, no personal data). Send
    ``Authorization: Bearer FACETRACE_METRICS_TOKEN`` when that token is set; without it, only
    clients on this machine (loopback) are served."""
    from facetrace.api.deps import client_address, is_loopback

    service: Service = request.app.state.service
    token = service.settings.metrics_token
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if token:
        if not header:
            raise MetricsUnauthorized("send the metrics token: Authorization: Bearer FACETRACE_METRICS_TOKEN")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token.encode()):
            raise MetricsRefused("wrong metrics token")
    elif not is_loopback(client_address(request)):
        if not header:
            raise MetricsUnauthorized("metrics are served to loopback clients, or with FACETRACE_METRICS_TOKEN set")
        raise MetricsRefused("metrics are served to loopback clients, or with FACETRACE_METRICS_TOKEN set")
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
