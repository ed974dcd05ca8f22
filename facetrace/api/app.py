"""The FastAPI application: ``create_app()`` builds one server over one data home.

Routes live under ``/api/v1`` (one router per resource in :mod:`facetrace.api.routers`); the
OpenAPI schema is at ``/api/v1/openapi.json``. Run it with ``facetrace serve``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from facetrace import __version__
from facetrace.api.errors import ERROR_RESPONSES, BodyLimitMiddleware, install_error_handlers
from facetrace.api.observability import install_request_context
from facetrace.api.observability import router as metrics_router
from facetrace.api.routers import audit, auth, jobs, persons, search, system, users, video, workflow
from facetrace.api.security import install_security_headers
from facetrace.api.service import Service
from facetrace.config import Settings, get_settings

API_PREFIX = "/api/v1"
IMPORT_PATH = f"{API_PREFIX}/jobs/import"
VIDEO_PATH = f"{API_PREFIX}/search/video"
MULTIPART_MARGIN = 1024 * 1024  # form fields and multipart boundaries around the files


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the API application over ``settings`` (default: from the environment).

    The database is opened and migrated here; on startup, jobs a previous server left unfinished
    are marked failed and resumable; on shutdown, running jobs stop and the index is saved.

    Raises:
        ConfigError: the database cannot be opened.
    """
    settings = settings or get_settings()
    service = Service.open(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.jobs.recover()
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
    for module in (system, auth, users, persons, search, video, jobs, audit, workflow):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(metrics_router, prefix=API_PREFIX, responses=ERROR_RESPONSES)  # GET /api/v1/metrics
    from facetrace.web import router as web_router  # the web UI's pages at /, outside /api/v1

    app.include_router(web_router)
    return app
