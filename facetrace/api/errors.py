"""Every API error is ``{"error": {"code", "message"}}`` with a fitting status: never a stack trace.

Handlers cover facetrace's own errors, HTTP errors raised by the framework (unknown route 404,
405, 413), request validation (422) and anything unexpected (500, logged server-side only).
A pure ASGI middleware refuses request bodies over the size limit before they are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetrace.errors import FacetraceError, disk_full_error
from facetrace.usecases.errors import value_out_of_range

log = logging.getLogger(__name__)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_attempts",
    500: "internal",
    503: "unavailable",
}


class BodyTooLarge(StarletteHTTPException):
    """Raised while a body streams in past the limit. An HTTPException, so that FastAPI's body
    parsing re-raises it instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body grew past the limit of {limit:,} bytes")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. not_found, forbidden, invalid_request.")
    message: str = Field(description="One line for a person.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# Declared on every API route, so that the published schema says what errors look like (instead of
# FastAPI's default 422 body, which this API never sends).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Bad request",
        401: "No valid credentials",
        403: "Not allowed for the caller's roles, or a missing CSRF token",
        404: "No such resource",
        409: "Conflict with the record's state or the identification policy",
        413: "Upload or body too large",
        415: "Unsupported media type",
        422: "Invalid request",
        429: "Too many attempts (Retry-After says when to try again)",
    }.items()
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """Return the JSON error body."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(FacetraceError)
    async def facetrace_error(_request: Request, exc: FacetraceError) -> JSONResponse:
        headers = None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
        elif exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        elif exc.status_code == 405:
            message = "method not allowed on this resource"
        return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(DataError)
    @app.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: Exception) -> JSONResponse:
        refused = value_out_of_range(exc)
        if refused is None:
            log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
            return error_response(500, "internal", "internal error; the server log has the details")
        log.info("refused an out-of-range value on %s %s: %s", request.method, request.url.path, exc)
        return error_response(refused.status, refused.code, refused.message)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        if (full := disk_full_error(exc)) is not None:  # a full disk anywhere: say so, not "internal"
            log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
            return error_response(full.status, full.code, full.message)
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error; the server log has the details")


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit_for(path)`` bytes with a JSON 413.

    A declared Content-Length over the limit is refused before anything is read; a body that
    streams in without one is counted and stopped at the limit.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > limit:
            response = error_response(413, "too_large", f"the request body is larger than the limit of {limit:,} bytes")
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
