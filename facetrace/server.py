"""The composition root: one place builds a server over one data home and wires every part of it.

:func:`open_service` opens (and migrates) the database and builds the gallery, the job runner and
the metrics into one :class:`~facetrace.usecases.service.Service`; :func:`create_app` builds the
FastAPI application around it: the API's routers under ``/api/v1`` (OpenAPI schema at
``/api/v1/openapi.json``), the web pages at ``/``, the middleware every response passes through
(request ids and timing, security headers, body limits) and the error handlers. The API and the
web pages never import each other: both call the use-cases (:mod:`facetrace.usecases`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from facetrace import __version__
from facetrace.api.errors import ERROR_RESPONSES, BodyLimitMiddleware, install_error_handlers
from facetrace.api.observability import install_request_context
from facetrace.api.observability import router as metrics_router
from facetrace.api.routers import (
    audit,
    auth,
    exports,
    jobs,
    org_settings,
    persons,
    reconciliation,
    search,
    search_history,
    system,
    users,
    video,
    workflow,
)
from facetrace.config import Settings, get_settings
from facetrace.gallery import AnalysisPool, Gallery
from facetrace.http.deps import is_loopback
from facetrace.http.security import install_security_headers
from facetrace.logs import setup_logging
from facetrace.store.db import Database
from facetrace.usecases.jobs import JobRunner
from facetrace.usecases.metrics import LiveSources, Metrics
from facetrace.usecases.service import Service
from facetrace.web import router as web_router

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
API_ROUTERS = (
    system,
    auth,
    users,
    org_settings,
    persons,
    search,
    video,
    jobs,
    audit,
    workflow,
    reconciliation,
    exports,
    search_history,
)
IMPORT_PATH = f"{API_PREFIX}/jobs/import"
VIDEO_PATH = f"{API_PREFIX}/search/video"
MULTIPART_MARGIN = 1024 * 1024  # form fields and multipart boundaries around the files
LOG_LEVEL_VARIABLE = "FACETRACE_SERVE_LOG_LEVEL"  # how `serve --workers N` tells its processes the log level


def open_service(settings: Settings) -> Service:
    """Open (and migrate) the database and build the gallery, job runner and metrics over it.

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
    gallery = Gallery(settings, db=db, pool=AnalysisPool.for_settings(settings), on_enrolled=metrics.count_enrollment)
    jobs = JobRunner(
        db,
        workers=settings.job_workers,
        run_jobs=settings.run_jobs,
        lease_seconds=settings.job_lease_seconds,
        max_attempts=settings.job_max_attempts,
    )
    service = Service(settings=settings, db=db, gallery=gallery, jobs=jobs, metrics=metrics)
    jobs.bind(service)
    metrics.bind(LiveSources(db, settings, gallery.loaded_index, gallery.analysis_workers_alive))
    return service


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the server's application over ``settings`` (default: from the environment).

    The database is opened and migrated here; on startup, the job runner takes back the jobs that a
    stopped process left running and starts taking jobs from the queue; on shutdown, running jobs
    go back to the queue and the index is saved.

    Raises:
        ConfigError: the database cannot be opened.
    """
    settings = settings or get_settings()
    service = open_service(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.jobs.start()
        service.warm_up()  # the index loads now, not in the first search (GET /ready says when)
        yield
        service.close()

    app = FastAPI(
        title="facetrace",
        version=__version__,
        description=(
            "Face identification for humanitarian identification. Authenticate with an API token "
            "(`Authorization: Bearer ...`) or a login session cookie; every error is "
            '`{"error": {"code", "message"}}`.'
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # the Swagger page loads scripts from a CDN: not on a self-hosted server
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)

    def body_limit(path: str) -> int:
        if path == IMPORT_PATH:
            return settings.max_import_bytes + MULTIPART_MARGIN
        if path == VIDEO_PATH:
            return settings.video_max_bytes + MULTIPART_MARGIN
        return 2 * settings.max_upload_bytes + MULTIPART_MARGIN  # compare takes two images

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    install_security_headers(app)  # outermost: error responses get the headers too
    install_request_context(app, service.metrics)  # request ids and latency, 500s and 413s included
    for module in API_ROUTERS:
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(metrics_router, prefix=API_PREFIX, responses=ERROR_RESPONSES)  # GET /api/v1/metrics
    app.include_router(web_router)  # the web UI's pages at /, outside /api/v1
    return app


def app_from_environment() -> FastAPI:
    """The application factory each process of ``facetrace serve --workers N`` calls: settings and
    logging from the environment its parent set up.

    Raises:
        ConfigError: the database cannot be opened.
    """
    settings = get_settings()
    setup_logging(os.environ.get(LOG_LEVEL_VARIABLE, "INFO"), settings.log_format)
    return create_app(settings)


def _uvicorn_options(host: str, port: int, log_level: str) -> dict[str, object]:
    # uvicorn's own access log is off: the request middleware logs each request with its id and route
    # template, never the raw path. Proxy headers are trusted from a reverse proxy on loopback only.
    return {
        "host": host,
        "port": port,
        "log_level": log_level.lower(),
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "forwarded_allow_ips": "127.0.0.1",
        "server_header": False,
        "timeout_graceful_shutdown": 30,
    }


def run_server_processes(*, host: str, port: int, workers: int, log_level: str, log_format: str) -> None:
    """Serve on ``host``:``port`` with ``workers`` processes sharing one listening socket, until
    interrupted (uvicorn's supervisor restarts a process that dies). Each process opens its own
    gallery index and job runner over the shared database (PostgreSQL; the caller checks)."""
    os.environ[LOG_LEVEL_VARIABLE] = log_level.upper()
    os.environ["FACETRACE_LOG_FORMAT"] = log_format
    uvicorn.run(
        "facetrace.server:app_from_environment",
        factory=True,
        workers=workers,
        **_uvicorn_options(host, port, log_level),  # type: ignore[arg-type]
    )


def serves_beyond_this_machine(host: str) -> bool:
    """Return whether a server listening on ``host`` can be reached from other machines."""
    return not is_loopback(host)


def run_server(
    app: FastAPI, *, host: str, port: int, log_level: str, on_started: Callable[[], None] | None = None
) -> None:
    """Serve ``app`` on ``host``:``port`` until interrupted (one process: the gallery index, the job
    runner and the analysis pool live in it). ``on_started`` is called once the server accepts
    connections, after uvicorn's own start-up lines (so what it prints is the last line)."""
    config = uvicorn.Config(app, **_uvicorn_options(host, port, log_level))  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    if on_started is not None:
        callback = on_started

        def announce_when_started() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                callback()

        threading.Thread(target=announce_when_started, name="facetrace-started", daemon=True).start()
    server.run()
