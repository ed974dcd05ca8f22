"""User administration (admins): list, create, show and change accounts and their roles.

The input models are Pydantic models: the API validates its JSON bodies with them and the web
pages their forms, so that both refuse the same input with the same reasons.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError
from facetrace.store.accounts import (
    ROLE_DESCRIPTIONS,
    ROLES,
    User,
    create_user,
    get_user,
    set_disabled,
    set_password,
    set_roles,
)
from facetrace.store.audit import append_event
from facetrace.usecases.actors import Actor
from facetrace.usecases.service import Service


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    roles: list[str] = Field(default_factory=list)
    display_name: str = Field(default="", max_length=300)


class UserUpdate(BaseModel):
    display_name: str | None = Field(default=None, max_length=300)
    roles: list[str] | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1000)


def roles() -> list[dict[str, str]]:
    """Return every role with what it allows."""
    return [{"role": r, "description": ROLE_DESCRIPTIONS[r]} for r in ROLES]


def list_users(service: Service) -> list[dict[str, Any]]:
    """Return every user account, by user name."""
    with service.db.sessions() as session:
        return [u.as_dict() for u in session.execute(select(User).order_by(User.username)).scalars()]


def show_user(service: Service, username: str) -> dict[str, Any]:
    """Return one user account. Raises NotFoundError."""
    with service.db.sessions() as session:
        return get_user(session, username).as_dict()


def add_user(service: Service, actor: Actor, body: NewUser) -> dict[str, Any]:
    """Create a user with a password (at least 10 characters) and roles; return it. Audited.

    Raises:
        ConflictError: the user name is taken. FacetraceError: a weak password or an unknown role.
    """
    with service.db.session() as session:
        user = create_user(session, body.username, body.password, body.roles, body.display_name)
        append_event(
            session,
            actor=actor.name,
            action="user.create",
            records=[f"user:{user.id}"],
            source=actor.source,
            detail={"username": user.username, "roles": user.roles},
        )
        return user.as_dict()


def _enabled_admins(session: Session) -> int:
    return sum(1 for u in session.execute(select(User)).scalars() if u.has_role("admin"))


def update_user(service: Service, actor: Actor, username: str, body: UserUpdate) -> dict[str, Any]:
    """Change a user's display name, roles, password, or disable/enable the account; return it. Audited.

    Disabling a user or changing their password ends their login sessions and revokes their API tokens;
    removing a role revokes their API tokens. Enabling the account again revives none of them.

    Raises:
        NotFoundError: no such user.
        ConflictError: the change would leave no enabled admin.
    """
    with service.db.session() as session:
        user = get_user(session, username)
        changes: dict[str, Any] = {}
        if body.display_name is not None:
            user.display_name = body.display_name.strip() or user.username
            changes["display_name"] = user.display_name
        if body.roles is not None:
            changes.update(set_roles(session, user, body.roles))
        if body.disabled is not None:
            revoked = changes.get("tokens_revoked", 0)
            changes.update(set_disabled(session, user, body.disabled))
            if "tokens_revoked" in changes:
                changes["tokens_revoked"] += revoked
        if body.password is not None:
            set_password(session, user, body.password)
            changes["password"] = "changed"
        session.flush()
        if _enabled_admins(session) == 0:
            raise ConflictError("this would leave no enabled admin; give another user the admin role first")
        action = "user.roles" if "roles" in changes else "user.update"
        append_event(
            session, actor=actor.name, action=action, records=[f"user:{user.id}"], source=actor.source, detail=changes
        )
        return user.as_dict()
