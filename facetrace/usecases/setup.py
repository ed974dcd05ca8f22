"""First run: on an install with no user, the first admin is created in the browser.

Each start of a server with no user issues a one-time setup token (a random secret, kept only as its
sha256 in the database, so that any server process can check it); the server prints the setup link
as the last line of its start-up output. The token is valid once: creating the first admin consumes
it, atomically, so that two browsers racing with the same link create one admin.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, cast

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult

from facetrace.errors import ConflictError, PermissionDenied
from facetrace.store.accounts import User, create_user, token_digest
from facetrace.store.audit import append_event
from facetrace.store.models import Meta
from facetrace.usecases.service import Service

SETUP_TOKEN_KEY = "first_run_setup_token"  # Meta key; the value is the token's sha256


def needs_setup(service: Service) -> bool:
    """Return whether the install has no user account yet."""
    with service.db.sessions() as session:
        return not session.execute(select(func.count()).select_from(User)).scalar()


def open_setup(service: Service) -> str | None:
    """Issue a new one-time setup token when the install has no user (an older one stops working);
    return it, or None when users exist (any stale token is removed then)."""
    with service.db.session() as session:
        session.execute(delete(Meta).where(Meta.key == SETUP_TOKEN_KEY))
        if session.execute(select(func.count()).select_from(User)).scalar():
            return None
        token = secrets.token_urlsafe(32)
        session.add(Meta(key=SETUP_TOKEN_KEY, value=token_digest(token)))
        return token


def setup_token_valid(service: Service, token: str | None) -> bool:
    """Return whether ``token`` is the install's live setup token (constant-time comparison)."""
    if not token:
        return False
    with service.db.sessions() as session:
        stored = session.get(Meta, SETUP_TOKEN_KEY)
        return stored is not None and hmac.compare_digest(stored.value, token_digest(token))


def create_first_admin(
    service: Service, token: str, *, username: str, password: str, display_name: str = "", source: str | None
) -> User:
    """Create the first user, with the admin role, and consume the setup token; return the user. Audited.

    Raises:
        PermissionDenied: the token is not the live setup token (wrong, used, or replaced by a restart).
        ConflictError: a user exists already.
        PasswordTooWeak, FacetraceError: a weak password or a bad user name (nothing is consumed then).
    """
    if not setup_token_valid(service, token):
        raise PermissionDenied("this setup link is not valid: use the one the server printed when it last started")
    with service.db.session() as session:
        if session.execute(select(func.count()).select_from(User)).scalar():
            raise ConflictError("the first admin exists already: sign in")
        user = create_user(session, username, password, ["admin"], display_name)  # may refuse: nothing consumed
        deleted = session.execute(delete(Meta).where(Meta.key == SETUP_TOKEN_KEY, Meta.value == token_digest(token)))
        consumed = cast(CursorResult[Any], deleted).rowcount
        if consumed != 1:  # another request used the link meanwhile: its transaction won
            raise PermissionDenied("this setup link was used already: sign in")
        append_event(
            session,
            actor="setup",
            action="user.create",
            records=[f"user:{user.id}"],
            source=source,
            detail={"username": user.username, "roles": user.roles, "first_run": True},
        )
        return user
