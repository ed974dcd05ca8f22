"""Sign in and out (login sessions for the web UI) and manage one's own API tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from facetrace.api.deps import (
    SESSION_COOKIE,
    Actor,
    authenticated,
    client_address,
    get_service,
    is_loopback,
    record_event,
)
from facetrace.api.schemas import Items, LoginResult, LogoutResult, Me, NewToken, TokenView
from facetrace.api.service import Service
from facetrace.store.accounts import (
    BadCredentials,
    LoginThrottled,
    ThrottlePolicy,
    WebSession,
    as_utc,
    authenticate,
    create_session,
    create_token,
    get_user,
    list_tokens,
    revoke_session_secret,
    revoke_token,
)
from facetrace.store.audit import append_event
from facetrace.store.models import utcnow

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="What the token is for, e.g. the script's name.")
    days: float | None = Field(default=None, gt=0, le=3650, description="Validity (default: Settings.token_days).")


def _cookie_secure(service: Service, request: Request) -> bool:
    if service.settings.cookie_secure is not None:
        return service.settings.cookie_secure
    # Plain http is acceptable only on loopback, for development.
    return not (request.url.scheme == "http" and is_loopback(request.url.hostname))


@router.post("/login", response_model=LoginResult)
def login(body: LoginRequest, request: Request, response: Response, service: Service = Depends(get_service)) -> Any:
    """Check a user name and password and open a login session (an HttpOnly, SameSite=Lax cookie).

    Returns the user and the session's CSRF token, to be sent as ``X-CSRF-Token`` (or a
    ``csrf_token`` form field) with every non-GET request made with the cookie. Repeated failures
    lock the user name and the client address out for a while (429 with Retry-After).
    """
    settings = service.settings
    policy = ThrottlePolicy(
        settings.login_max_failures, settings.login_max_failures_per_address, settings.login_lockout_seconds
    )
    address = client_address(request)
    with service.db.sessions() as session:
        try:
            user = authenticate(session, body.username, body.password, address, policy)
        except (BadCredentials, LoginThrottled) as exc:
            # The failure counts and its audit event are committed although the request fails.
            append_event(
                session,
                actor=body.username.strip().lower()[:200],
                action="login",
                outcome="denied",
                source=address,
                detail={"reason": exc.code},
            )
            session.commit()
            raise
        # A new session id on every login, and the one the browser came with (perhaps planted by
        # someone else: session fixation) is ended, so that it cannot ride along on this login.
        if previous := request.cookies.get(SESSION_COOKIE):
            revoke_session_secret(session, previous)
        row, secret = create_session(session, user, hours=settings.session_hours, source=address)
        append_event(session, actor=user.username, action="login", records=[f"user:{user.id}"], source=address)
        session.commit()
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        secure=_cookie_secure(service, request),
        samesite="lax",
        path="/",
    )
    return {"user": user.as_dict(), "csrf_token": row.csrf_token, "expires_at": as_utc(row.expires_at).isoformat()}


@router.post("/logout", response_model=LogoutResult)
def logout(
    request: Request,
    response: Response,
    actor: Actor = Depends(authenticated),
    service: Service = Depends(get_service),
) -> Any:
    """End the current login session (an API token stays valid: revoke it with DELETE /auth/tokens/ID)."""
    if actor.session is not None:
        with service.db.session() as session:
            row = session.get(WebSession, actor.session.id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = utcnow()
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=_cookie_secure(service, request))
    record_event(service, actor, "logout", records=[f"user:{actor.user.id}"], detail={"via": actor.via})
    return {"logged_out": actor.session is not None}


@router.get("/me", response_model=Me)
def me(actor: Actor = Depends(authenticated)) -> Any:
    """Return the signed-in user, how they signed in, and (for a session) the CSRF token."""
    return {
        "user": actor.user.as_dict(),
        "via": actor.via,
        "csrf_token": actor.session.csrf_token if actor.session else None,
    }


@router.get("/tokens", response_model=Items[TokenView])
def tokens(actor: Actor = Depends(authenticated), service: Service = Depends(get_service)) -> Any:
    """List the caller's own API tokens (never their secrets)."""
    with service.db.sessions() as session:
        return {"items": [t.as_dict() for t in list_tokens(session, actor.user)]}


@router.post("/tokens", status_code=201, response_model=NewToken)
def new_token(
    body: TokenRequest, actor: Actor = Depends(authenticated), service: Service = Depends(get_service)
) -> Any:
    """Issue an API token for the caller. The secret is in this response only: store it safely."""
    with service.db.session() as session:
        user = get_user(session, actor.name)
        row, secret = create_token(session, user, body.name, days=body.days or service.settings.token_days)
        append_event(
            session,
            actor=actor.name,
            action="token.create",
            records=[f"user:{user.id}", f"token:{row.id}"],
            source=actor.source,
            detail={"name": row.name, "expires_at": as_utc(row.expires_at).isoformat()},
        )
    return {**row.as_dict(), "token": secret}


@router.delete("/tokens/{token_id}", response_model=TokenView)
def delete_token(token_id: int, actor: Actor = Depends(authenticated), service: Service = Depends(get_service)) -> Any:
    """Revoke one of the caller's tokens (an admin may revoke anyone's)."""
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
