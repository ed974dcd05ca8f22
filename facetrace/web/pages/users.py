"""User accounts and roles (admins)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Admin
from facetrace.usecases import users as user_admin
from facetrace.usecases.actors import Actor
from facetrace.usecases.service import Service
from facetrace.web.deps import FormDep, text, texts, web_router
from facetrace.web.render import page, redirect

router = web_router()


def _users_page(request: Request, actor: Actor, service: Service, *, status: int = 200, error: str = "", form=None):
    users = user_admin.list_users(service)
    form = form or {"username": "", "display_name": "", "roles": []}
    return page(request, actor, "users.html", http_status=status, title="Users", users=users, error=error, form=form)


@router.get("/admin/users")
def users(request: Request, actor: Admin, service: ServiceDep) -> Response:
    """User accounts and their roles (admin)."""
    return _users_page(request, actor, service)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


@router.post("/admin/users")
def add_user(
    request: Request,
    form: FormDep,
    actor: Admin,
    service: ServiceDep,
) -> Response:
    """Create a user with a password and roles (audited as user.create)."""
    values: dict[str, Any] = {
        "username": text(form, "username"),
        "display_name": text(form, "display_name"),
        "roles": texts(form, "roles"),
    }
    try:
        body = user_admin.NewUser(
            username=values["username"],
            display_name=values["display_name"],
            roles=values["roles"],
            password=str(form.get("password") or ""),
        )
        user_admin.add_user(service, actor, body)
    except ValidationError as exc:
        return _users_page(request, actor, service, status=422, error=_validation_message(exc), form=values)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return _users_page(request, actor, service, status=exc.status, error=exc.message, form=values)
    return redirect("/admin/users", "user_created")


def _user_page(request: Request, actor: Actor, service: Service, username: str, *, status=200, error=""):
    target = user_admin.show_user(service, username)
    form = {"display_name": target["display_name"], "roles": target["roles"], "disabled": target["disabled"]}
    return page(
        request, actor, "user.html", http_status=status, title=f"User {username}", target=target, form=form, error=error
    )


@router.get("/admin/users/{username}")
def user_form(username: str, request: Request, actor: Admin, service: ServiceDep) -> Response:
    """One user's roles, display name, password and account state (admin)."""
    return _user_page(request, actor, service, username)


@router.post("/admin/users/{username}")
def update_user(
    username: str,
    request: Request,
    form: FormDep,
    actor: Admin,
    service: ServiceDep,
) -> Response:
    """Change a user's roles, display name, password or account state (audited)."""
    password = str(form.get("password") or "")
    try:
        body = user_admin.UserUpdate(
            display_name=text(form, "display_name"),
            roles=texts(form, "roles"),
            disabled=text(form, "disabled") == "yes",
            password=password or None,
        )
        user_admin.update_user(service, actor, username, body)
    except ValidationError as exc:
        return _user_page(request, actor, service, username, status=422, error=_validation_message(exc))
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _user_page(request, actor, service, username, status=exc.status, error=exc.message)
    return redirect("/admin/users", "user_updated")
