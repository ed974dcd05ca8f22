"""The login session's cookie: HttpOnly, SameSite=Lax, Secure except on plain-http loopback."""

from __future__ import annotations

from fastapi import Request, Response

from facetrace.http.deps import SESSION_COOKIE, is_loopback
from facetrace.usecases.service import Service


def cookie_secure(service: Service, request: Request) -> bool:
    """Return whether the session cookie is sent with the Secure flag."""
    if service.settings.cookie_secure is not None:
        return service.settings.cookie_secure
    # Plain http is acceptable only on loopback, for development.
    return not (request.url.scheme == "http" and is_loopback(request.url.hostname))


def set_session_cookie(response: Response, service: Service, request: Request, secret: str) -> None:
    """Set the cookie of a login session just opened with ``secret``."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(service.settings.session_hours * 3600),
        httponly=True,
        secure=cookie_secure(service, request),
        samesite="lax",
        path="/",
    )


def delete_session_cookie(response: Response, service: Service, request: Request) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=cookie_secure(service, request))
