"""Request ids, access log lines and Prometheus metrics of one API server.

- :class:`RequestContextMiddleware` (pure ASGI, outermost) gives every request an id: a valid
  incoming ``X-Request-ID`` is kept, anything else is replaced by a new one. The id is returned in
  the ``X-Request-ID`` response header (error responses included), put in the context variable
  that log lines (:mod:`facetrace.logs`) and audit events read, and logged with the request's
  route template, status and duration (never the raw path or query string: they can hold ids or
  a searched name). It also times the request for the latency histogram.
- :class:`facetrace.usecases.metrics.Metrics` holds the server's counters and reads the live
  gauges (job queue, gallery size, notification outbox) at scrape time.
- ``GET /api/v1/metrics`` serves them in the Prometheus text format. Metrics hold counts only, but they
  still describe the deployment: they are served to a bearer of ``FACETRACE_METRICS_TOKEN`` when
  it is set, and otherwise only to clients on this machine (loopback).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep, client_address, is_loopback
from facetrace.logs import request_id_var, valid_request_id
from facetrace.usecases.metrics import Metrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("facetrace.access")
REQUEST_ID_HEADER = "X-Request-ID"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path: raw paths would flood the label space


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
def metrics(request: Request, service: ServiceDep) -> Response:
    """The server's Prometheus metrics (counts only, no personal data). Send
    ``Authorization: Bearer FACETRACE_METRICS_TOKEN`` when that token is set; without it, only
    clients on this machine (loopback) are served."""
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
