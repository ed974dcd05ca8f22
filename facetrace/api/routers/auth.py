"""Sign in and out (login sessions for the web UI) and manage one's own API tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from facetrace.api.schemas import Items, LoginResult, LogoutResult, Me, NewToken, TokenView
from facetrace.http.cookies import delete_session_cookie, set_session_cookie
from facetrace.http.deps import SESSION_COOKIE, CurrentActor, ServiceDep, client_address
from facetrace.usecases import sessions

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="What the token is for, e.g. the script's name.")
    days: float | None = Field(default=None, gt=0, le=3650, description="Validity (default: Settings.token_days).")


@router.post("/login", response_model=LoginResult)
def login(body: LoginRequest, request: Request, response: Response, service: ServiceDep) -> Any:
    """Check a user name and password and open a login session (an HttpOnly, SameSite=Lax cookie).

    Returns the user and the session's CSRF token, to be sent as ``X-CSRF-Token`` (or a
    ``csrf_token`` form field) with every non-GET request made with the cookie. Repeated failures
    lock the user name and the client address out for a while (429 with Retry-After).
    """
    opened = sessions.login(
        service,
        body.username,
        body.password,
        source=client_address(request),
        previous_secret=request.cookies.get(SESSION_COOKIE),
    )
    set_session_cookie(response, service, request, opened.secret)
    return opened.as_dict()


@router.post("/logout", response_model=LogoutResult)
def logout(request: Request, response: Response, actor: CurrentActor, service: ServiceDep) -> Any:
    """End what the call signed in with: the login session, or the API token sent with it (revoked)."""
    ended = sessions.logout(service, actor)
    delete_session_cookie(response, service, request)
    return {"logged_out": ended}


@router.get("/me", response_model=Me)
def me(actor: CurrentActor) -> Any:
    """Return the signed-in user, how they signed in, and (for a session) the CSRF token."""
    return {
        "user": actor.user.as_dict(),
        "via": actor.via,
        "csrf_token": actor.session.csrf_token if actor.session else None,
    }


@router.get("/tokens", response_model=Items[TokenView])
def tokens(actor: CurrentActor, service: ServiceDep) -> Any:
    """List the caller's own API tokens (never their secrets)."""
    return {"items": sessions.tokens(service, actor)}


@router.post("/tokens", status_code=201, response_model=NewToken)
def new_token(body: TokenRequest, actor: CurrentActor, service: ServiceDep) -> Any:
    """Issue an API token for the caller. The secret is in this response only: store it safely."""
    return sessions.new_token(service, actor, body.name, body.days)


@router.delete("/tokens/{token_id}", response_model=TokenView)
def delete_token(token_id: int, actor: CurrentActor, service: ServiceDep) -> Any:
    """Revoke one of the caller's tokens (an admin may revoke anyone's)."""
    return sessions.revoke(service, actor, token_id)
