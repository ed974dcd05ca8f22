"""User accounts and roles (admin), and the list of roles (anyone signed in)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from facetrace.api.deps import Actor, authenticated, get_service, require_roles
from facetrace.api.schemas import Items, RoleView, UserView
from facetrace.api.service import Service
from facetrace.errors import ConflictError
from facetrace.store.accounts import (
    ROLE_DESCRIPTIONS,
    ROLES,
    User,
    check_roles,
    create_user,
    get_user,
    revoke_sessions,
    set_password,
)
from facetrace.store.audit import append_event

router = APIRouter(tags=["users"])
admin = require_roles("admin")


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


@router.get("/roles", response_model=Items[RoleView])
def roles(_actor: Actor = Depends(authenticated)) -> Any:
    """List the roles and what each allows."""
    return {"items": [{"role": r, "description": ROLE_DESCRIPTIONS[r]} for r in ROLES]}


@router.get("/users", response_model=Items[UserView])
def list_users(_actor: Actor = Depends(admin), service: Service = Depends(get_service)) -> Any:
    """List every user account."""
    with service.db.sessions() as session:
        users = session.execute(select(User).order_by(User.username)).scalars()
        return {"items": [u.as_dict() for u in users]}


@router.post("/users", status_code=201, response_model=UserView)
def add_user(body: NewUser, actor: Actor = Depends(admin), service: Service = Depends(get_service)) -> Any:
    """Create a user with a password (at least 10 characters) and roles."""
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


@router.get("/users/{username}", response_model=UserView)
def show_user(username: str, _actor: Actor = Depends(admin), service: Service = Depends(get_service)) -> Any:
    """Show one user account."""
    with service.db.sessions() as session:
        return get_user(session, username).as_dict()


def _enabled_admins(session: Any) -> int:
    return sum(1 for u in session.execute(select(User)).scalars() if u.has_role("admin"))


@router.patch("/users/{username}", response_model=UserView)
def update_user(
    username: str, body: UserUpdate, actor: Actor = Depends(admin), service: Service = Depends(get_service)
) -> Any:
    """Change a user's display name, roles, password, or disable/enable the account.

    Disabling a user or changing their password ends their login sessions. The last enabled
    admin cannot be disabled or lose the admin role.
    """
    with service.db.session() as session:
        user = get_user(session, username)
        changes: dict[str, Any] = {}
        if body.display_name is not None:
            user.display_name = body.display_name.strip() or user.username
            changes["display_name"] = user.display_name
        if body.roles is not None:
            new_roles = check_roles(body.roles)
            if new_roles != user.roles:
                changes["roles"] = {"before": list(user.roles), "after": new_roles}
                user.roles = new_roles
        if body.disabled is not None and body.disabled != user.disabled:
            user.disabled = body.disabled
            changes["disabled"] = body.disabled
            if body.disabled:
                revoke_sessions(session, user.id)
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
