"""Request dependencies shared by the API and the web pages: the service, who is calling (API
token or login session), role checks, CSRF protection for cookie sessions, upload reading and
the search rate limit; and their typed aliases for route signatures.

Every route declares who may call it with :func:`require_roles` (or :data:`CurrentActor` for any
signed-in user); roles are checked on the server for every request, by
:func:`facetrace.usecases.sessions.require_role`, which audits refusals.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, UploadFile
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from facetrace.usecases import sessions
from facetrace.usecases.actors import Actor
from facetrace.usecases.ratelimit import Buckets, buckets_for, charge_search
from facetrace.usecases.service import Service
from facetrace.usecases.sessions import CSRF_HEADER
from facetrace.usecases.uploads import UploadedImage

SESSION_COOKIE = "facetrace_session"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BUCKETS_LOCK = threading.Lock()

bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `facetrace user token` or /auth/tokens.")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The web UI's login session.")


def get_service(request: Request) -> Service:
    """Return the server's :class:`Service`."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def client_address(request: Request) -> str | None:
    """Return the client's address (as uvicorn reports it, proxy headers from loopback applied)."""
    return request.client.host if request.client else None


def is_loopback(host: str | None) -> bool:
    """Return whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def current_actor(
    request: Request,
    service: ServiceDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session_secret: Annotated[str | None, Depends(cookie_scheme)],
) -> Actor | None:
    """Return the caller identified by a bearer token or a session cookie, or None.

    Raises:
        Unauthorized: an unknown, revoked or expired API token.
    """
    token = bearer.credentials if bearer is not None else None
    return sessions.identify(service, token, session_secret, client_address(request))


MaybeActor = Annotated[Actor | None, Depends(current_actor)]


async def authenticated(request: Request, actor: MaybeActor) -> Actor:
    """Return the signed-in caller; for a cookie session, check the CSRF token of unsafe requests.

    Raises:
        Unauthorized: no valid credentials.
        PermissionDenied: a cookie-authenticated form or API post without the session's CSRF token.
    """
    actor = sessions.signed_in(actor)
    if actor.via == "session" and request.method not in SAFE_METHODS:
        token = request.headers.get(CSRF_HEADER)
        if token is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
            form = await request.form()  # cached: the endpoint reads the same parsed form
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        sessions.check_csrf(actor, token)
    return actor


CurrentActor = Annotated[Actor, Depends(authenticated)]


def require_roles(*roles: str) -> Callable[..., Actor]:
    """Return a dependency admitting a signed-in caller holding at least one of ``roles``.

    A refusal is recorded in the audit trail (outcome ``denied``) and answered 403.
    """

    def dependency(request: Request, actor: CurrentActor, service: ServiceDep) -> Actor:
        return sessions.require_role(service, actor, roles, method=request.method, path=request.url.path)

    dependency.roles = roles  # type: ignore[attr-defined]  # read by the docs and tests
    return dependency


def read_image_upload(upload: UploadFile, limit: int) -> tuple[bytes, str]:
    """Read an uploaded image; return its bytes and a safe file name (see :meth:`UploadedImage.read`).

    Raises:
        ImageTooLargeError: more than ``limit`` bytes.
        ImageError: empty.
        UnsupportedMediaType: the bytes are not a supported image format.
    """
    return UploadedImage(upload.file, upload.filename).read(limit)


def uploaded(upload: UploadFile) -> UploadedImage:
    """Return an upload as the use-cases take it (read by them, inside their audit)."""
    return UploadedImage(upload.file, upload.filename)


def search_buckets(request: Request) -> Buckets:
    """Return the application's search buckets (made on first use)."""
    state = request.app.state
    buckets: Buckets | None = getattr(state, "search_buckets", None)
    if buckets is None:
        with _BUCKETS_LOCK:
            buckets = getattr(state, "search_buckets", None)
            if buckets is None:
                buckets = state.search_buckets = buckets_for(state.service.db)
    return buckets


def search_rate_limit(request: Request, actor: MaybeActor, service: ServiceDep) -> None:
    """Dependency of the search endpoints and forms: charge one search to the caller's bucket.

    Raises:
        RateLimited: the bucket is empty (429 with Retry-After).
    """
    charge_search(
        service,
        search_buckets(request),
        actor,
        source=client_address(request),
        method=request.method,
        path=request.url.path,
    )
