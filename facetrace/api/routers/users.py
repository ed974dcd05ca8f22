"""User accounts and roles (admin), and the list of roles (anyone signed in)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from facetrace.api.schemas import Items, RoleView, UserView
from facetrace.http.deps import CurrentActor, ServiceDep
from facetrace.http.roles import Admin
from facetrace.usecases import users
from facetrace.usecases.users import NewUser, UserUpdate

router = APIRouter(tags=["users"])


@router.get("/roles", response_model=Items[RoleView])
def roles(_actor: CurrentActor) -> Any:
    """List the roles and what each allows."""
    return {"items": users.roles()}


@router.get("/users", response_model=Items[UserView])
def list_users(_actor: Admin, service: ServiceDep) -> Any:
    """List every user account."""
    return {"items": users.list_users(service)}


@router.post("/users", status_code=201, response_model=UserView)
def add_user(body: NewUser, actor: Admin, service: ServiceDep) -> Any:
    """Create a user with a password (at least 10 characters) and roles."""
    return users.add_user(service, actor, body)


@router.get("/users/{username}", response_model=UserView)
def show_user(username: str, _actor: Admin, service: ServiceDep) -> Any:
    """Show one user account."""
    return users.show_user(service, username)


@router.patch("/users/{username}", response_model=UserView)
def update_user(username: str, body: UserUpdate, actor: Admin, service: ServiceDep) -> Any:
    """Change a user's display name, roles, password, or disable/enable the account.

    Disabling a user or changing their password ends their login sessions. The last enabled
    admin cannot be disabled or lose the admin role.
    """
    return users.update_user(service, actor, username, body)
