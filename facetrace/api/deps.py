"""Request dependencies: the service, who is calling (API token or login session), role checks,
CSRF protection for cookie sessions, upload reading, and audit events.

Every route declares who may call it with :func:`require_roles` (or :func:`authenticated` for
any signed-in user); roles are checked on the server for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request, UploadFile
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from facetrace.api.errors import Unauthorized, UnsupportedMediaType
from facetrace.api.service import Service
from facetrace.errors import FacetraceError, ImageError, ImageTooLargeError, PermissionDenied
from facetrace.store.accounts import User, WebSession, csrf_matches, resolve_session, user_for_token
from facetrace.store.audit import append_event
from facetrace.vision.decode import sniff_image_format

SESSION_COOKIE = "facetrace_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}

bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `facetrace user token` or /auth/tokens.")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The web UI's login session.")


@dataclass
class Actor:
    """The signed-in caller of one request."""

    user: User
    via: str  # "token" or "session"
    source: str | None  # client address
    session: WebSession | None = None

    @property
    def name(self) -> str:
        return self.user.username


def get_service(request: Request) -> Service:
    """Return the server's :class:`Service`."""
    service: Service = request.app.state.service
    return service


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
    service: Service = Depends(get_service),
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    session_secret: str | None = Depends(cookie_scheme),
) -> Actor | None:
    """Return the caller identified by a bearer token or a session cookie, or None."""
    source = client_address(request)
    with service.db.session() as session:
        if bearer is not None and bearer.credentials:
            user = user_for_token(session, bearer.credentials)
            if user is None:
                raise Unauthorized("the API token is unknown, revoked or expired, or its user is disabled")
            return Actor(user, "token", source)
        if session_secret:
            found = resolve_session(session, session_secret)
            if found is not None:
                return Actor(found[0], "session", source, found[1])
    return None


async def authenticated(request: Request, actor: Actor | None = Depends(current_actor)) -> Actor:
    """Return the signed-in caller; for a cookie session, check the CSRF token of unsafe requests.

    Raises:
        Unauthorized: no valid credentials.
        PermissionDenied: a cookie-authenticated form or API post without the session's CSRF token.
    """
    if actor is None:
        raise Unauthorized("sign in first: send an API token (Authorization: Bearer) or a session cookie")
    if actor.via == "session" and request.method not in SAFE_METHODS:
        assert actor.session is not None
        token = request.headers.get(CSRF_HEADER)
        if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()  # cached: the endpoint reads the same parsed form
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        if not csrf_matches(actor.session, token):
            raise PermissionDenied(f"missing or wrong CSRF token (send the {CSRF_HEADER} header or a csrf_token field)")
    return actor


def require_roles(*roles: str) -> Callable[..., Actor]:
    """Return a dependency admitting a signed-in caller holding at least one of ``roles``.

    A refusal is recorded in the audit trail (outcome ``denied``) and answered 403.
    """

    def dependency(
        request: Request, actor: Actor = Depends(authenticated), service: Service = Depends(get_service)
    ) -> Actor:
        if any(actor.user.has_role(role) for role in roles):
            return actor
        with service.db.session() as session:
            append_event(
                session,
                actor=actor.name,
                action="access.denied",
                outcome="denied",
                source=actor.source,
                detail={"method": request.method, "path": request.url.path, "needs": list(roles)},
            )
        raise PermissionDenied(f"this needs the role {' or '.join(roles)}")

    dependency.roles = roles  # type: ignore[attr-defined]  # read by the docs and tests
    return dependency


@dataclass
class AuditNote:
    """What an audited action fills in as it learns it: records touched, details, outcome."""

    records: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"


def record_event(
    service: Service,
    actor: Actor | None,
    action: str,
    *,
    records: list[str] | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    source: str | None = None,
    username: str | None = None,
) -> None:
    """Append one audit event in its own transaction."""
    with service.db.session() as session:
        append_event(
            session,
            actor=actor.name if actor else username,
            action=action,
            records=records,
            outcome=outcome,
            source=actor.source if actor else source,
            detail=detail,
        )


@contextmanager
def audited(service: Service, actor: Actor, action: str, **detail: Any) -> Iterator[AuditNote]:
    """Run an action and append its audit event afterwards, with outcome ``error`` (or
    ``not_found``) and the error's code when it raised a FacetraceError."""
    note = AuditNote(detail={k: v for k, v in detail.items() if v is not None})
    try:
        yield note
    except FacetraceError as exc:
        note.detail["error"] = exc.code
        outcome = "not_found" if exc.status == 404 else "denied" if exc.status == 403 else "error"
        record_event(service, actor, action, records=note.records, outcome=outcome, detail=note.detail)
        raise
    record_event(service, actor, action, records=note.records, outcome=note.outcome, detail=note.detail)


def read_image_upload(upload: UploadFile, limit: int) -> tuple[bytes, str]:
    """Read an uploaded image; return its bytes and a safe file name with the suffix of its sniffed
    type (the client's file name and content type are not trusted).

    Raises:
        ImageTooLargeError: more than ``limit`` bytes.
        ImageError: empty.
        UnsupportedMediaType: the bytes are not a supported image format.
    """
    data = upload.file.read(limit + 1)
    name = _safe_name(upload.filename or "upload")
    if len(data) > limit:
        raise ImageTooLargeError(f"{name}: larger than the upload limit of {limit:,} bytes")
    if not data:
        raise ImageError(f"{name}: empty file")
    kind = sniff_image_format(data)
    if kind is None:
        raise UnsupportedMediaType(f"{name}: not a supported image (JPEG, PNG, WebP, BMP, TIFF or GIF)")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return data, (stem or "upload") + SUFFIXES[kind]


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isalnum() or c in "._- " else "_" for c in base).strip(" .")
    return cleaned[:150] or "upload"
