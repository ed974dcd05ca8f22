"""HTTP security headers, set in one place for every response of the server: web pages, API JSON,
media, error responses (the 500 that Starlette's outermost error middleware sends included).

- ``Content-Security-Policy``: web pages may load only this server's own scripts, styles and
  images (no inline script, no other origin, no framing); everything else (API JSON, photos,
  PDFs) gets a policy that allows nothing at all, which also denies framing.
- ``X-Frame-Options: DENY`` with CSP ``frame-ancestors 'none'``: no page or response is framed.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, a restrictive
  ``Permissions-Policy``.
- ``Cache-Control: no-store`` unless the response chose its own (the public static files): pages
  and API responses carry personal and biometric data, which must not stay in a browser's cache.
- ``Strict-Transport-Security`` only on requests that arrived over TLS: the ASGI scheme is
  ``https`` when this server terminates TLS, or when uvicorn applied ``X-Forwarded-Proto`` from a
  trusted proxy (``facetrace serve`` trusts 127.0.0.1 only). The header itself is never trusted
  here: a client could otherwise make a plain-http development server send HSTS.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
# Anything that is not a page (JSON, images, PDFs, static files) runs nothing and frames nothing.
RESOURCE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=63072000; includeSubDomains"  # two years, the usual preload-list minimum
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# The headers every web page is sent with (see facetrace.web.render).
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, **COMMON_HEADERS, "Cache-Control": "no-store"}
TLS_SCHEMES = {"https", "wss"}


def security_headers(content_type: str, *, tls: bool) -> dict[str, str]:
    """Return the security headers for a response of ``content_type``; HSTS only when ``tls``."""
    html = content_type.split(";", 1)[0].strip().lower() == "text/html"
    headers = {
        **COMMON_HEADERS,
        "Content-Security-Policy": PAGE_CSP if html else RESOURCE_CSP,
        "Cache-Control": "no-store",
    }
    if tls:
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding :func:`security_headers` to every HTTP response; a header the
    response set itself (a static file's Cache-Control) is kept, except that HSTS and frame denial
    always apply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") in TLS_SCHEMES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(headers.get("content-type", ""), tls=tls).items():
                    if name in ("X-Frame-Options", "Strict-Transport-Security") or name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    """Wrap ``app``'s whole middleware stack in :class:`SecurityHeadersMiddleware`.

    Outside Starlette's ``ServerErrorMiddleware`` (which ``add_middleware`` cannot reach), so that
    the 500 response of an unexpected error carries the headers too.
    """
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeadersMiddleware(build())

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
