"""Sign-in and sessions: who a caller is (API token or login session), the CSRF rule of cookie
sessions, role checks with audited refusals, login, logout and one's own API tokens.

Nothing here reads HTTP: the API and the web pages hand over the credentials they found (a
bearer token, a session cookie's secret, a CSRF token, the client address) and set cookies
themselves from what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from facetrace.errors import PermissionDenied
from facetrace.store.accounts import (
    ApiToken,
    BadCredentials,
    LoginThrottled,
    ThrottlePolicy,
    User,
    WebSession,
    as_utc,
    authenticate,
    create_session,
    create_token,
    csrf_matches,
    get_user,
    list_tokens,
    resolve_session,
    resolve_token,
    revoke_session_secret,
    revoke_token,
)
from facetrace.store.audit import append_event
from facetrace.store.models import utcnow
from facetrace.usecases.actors import Actor, record_event
from facetrace.usecases.errors import Unauthorized
from facetrace.usecases.service import Service

CSRF_HEADER = "X-CSRF-Token"


def identify(service: Service, bearer: str | None, session_secret: str | None, source: str | None) -> Actor | None:
    """Return the caller identified by an API token (first) or a login session's secret, or None.

    Raises:
        Unauthorized: a token was sent but is unknown, revoked or expired, or its user is disabled.
    """
    with service.db.session() as session:
        if bearer:
            by_token = resolve_token(session, bearer)
            if by_token is None:
                raise Unauthorized("the API token is unknown, revoked or expired, or its user is disabled")
            return Actor(by_token[0], "token", source, token=by_token[1])
        if session_secret:
            found = resolve_session(session, session_secret)
            if found is not None:
                return Actor(found[0], "session", source, found[1])
    return None


def signed_in(actor: Actor | None) -> Actor:
    """Return ``actor``. Raises Unauthorized when nobody signed in."""
    if actor is None:
        raise Unauthorized("sign in first: send an API token (Authorization: Bearer) or a session cookie")
    return actor


def check_csrf(actor: Actor, token: str | None) -> None:
    """Check the CSRF token sent with a state-changing request of a cookie session.

    Raises:
        PermissionDenied: a cookie session's request without its session's CSRF token.
    """
    if actor.via != "session":
        return
    assert actor.session is not None
    if not csrf_matches(actor.session, token):
        raise PermissionDenied(f"missing or wrong CSRF token (send the {CSRF_HEADER} header or a csrf_token field)")


def require_role(service: Service, actor: Actor, roles: tuple[str, ...], *, method: str, path: str) -> Actor:
    """Return ``actor`` when they hold one of ``roles``.

    Raises:
        PermissionDenied: they hold none; the refusal is recorded in the audit trail (``denied``).
    """
    if any(actor.user.has_role(role) for role in roles):
        return actor
    record_event(
        service,
        actor,
        "access.denied",
        outcome="denied",
        detail={"method": method, "path": path, "needs": list(roles)},
    )
    raise PermissionDenied(f"this needs the role {' or '.join(roles)}")


@dataclass(frozen=True)
class Login:
    """An opened login session: its user, the cookie's secret, the CSRF token and the expiry."""

    user: User
    secret: str
    csrf_token: str
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """Return what the API answers a login with (never the secret: that goes in the cookie)."""
        return {"user": self.user.as_dict(), "csrf_token": self.csrf_token, "expires_at": self.expires_at.isoformat()}


def login(service: Service, username: str, password: str, *, source: str | None, previous_secret: str | None) -> Login:
    """Check a user name and password and open a login session; end ``previous_secret``'s session.

    Repeated failures lock the user name and the client address out for a while.

    Raises:
        BadCredentials: wrong user name or password (audited as a denied login).
        LoginThrottled: locked out for now (audited too); ``retry_after`` says for how long.
    """
    settings = service.settings
    policy = ThrottlePolicy(
        settings.login_max_failures, settings.login_max_failures_per_address, settings.login_lockout_seconds
    )
    with service.db.sessions() as session:
        try:
            user = authenticate(session, username, password, source, policy)
        except (BadCredentials, LoginThrottled) as exc:
            # The failure counts and its audit event are committed although the request fails.
            append_event(
                session,
                actor=username.strip().lower()[:200],
                action="login",
                outcome="denied",
                source=source,
                detail={"reason": exc.code},
            )
            session.commit()
            raise
        # A new session id on every login, and the one the browser came with (perhaps planted by
        # someone else: session fixation) is ended, so that it cannot ride along on this login.
        if previous_secret:
            revoke_session_secret(session, previous_secret)
        row, secret = create_session(session, user, hours=settings.session_hours, source=source)
        append_event(session, actor=user.username, action="login", records=[f"user:{user.id}"], source=source)
        session.commit()
    return Login(user, secret, row.csrf_token, as_utc(row.expires_at))


def logout(service: Service, actor: Actor) -> bool:
    """End what the actor signed in with: the login session, or the API token a logout was sent with
    (it stops working at once); return whether one was ended. Audited."""
    ended = False
    with service.db.session() as session:
        if actor.session is not None:
            row = session.get(WebSession, actor.session.id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = utcnow()
                ended = True
        if actor.token is not None:
            token = session.get(ApiToken, actor.token.id)
            if token is not None and token.revoked_at is None:
                token.revoked_at = utcnow()
                ended = True
    detail: dict[str, Any] = {"via": actor.via}
    if actor.token is not None:
        detail["token"] = actor.token.id
    record_event(service, actor, "logout", records=[f"user:{actor.user.id}"], detail=detail)
    return ended


def tokens(service: Service, actor: Actor) -> list[dict[str, Any]]:
    """Return the actor's own API tokens (never their secrets)."""
    with service.db.sessions() as session:
        return [t.as_dict() for t in list_tokens(session, actor.user)]


def new_token(service: Service, actor: Actor, name: str, days: float | None) -> dict[str, Any]:
    """Issue an API token for the actor; return it with its secret (shown this once). Audited."""
    with service.db.session() as session:
        user = get_user(session, actor.name)
        row, secret = create_token(session, user, name, days=days or service.settings.token_days)
        append_event(
            session,
            actor=actor.name,
            action="token.create",
            records=[f"user:{user.id}", f"token:{row.id}"],
            source=actor.source,
            detail={"name": row.name, "expires_at": as_utc(row.expires_at).isoformat()},
        )
    return {**row.as_dict(), "token": secret}


def revoke(service: Service, actor: Actor, token_id: int) -> dict[str, Any]:
    """Revoke one of the actor's tokens (an admin may revoke anyone's); return it. Audited.

    Raises:
        NotFoundError: no such token (of this actor).
    """
    with service.db.session() as session:
        owner = None if actor.user.has_role("admin") else actor.user
        row = revoke_token(session, token_id, owner=owner)
        append_event(
            session,
            actor=actor.name,
            action="token.revoke",
            records=[f"user:{row.user_id}", f"token:{row.id}"],
            source=actor.source,
        )
    return row.as_dict()
