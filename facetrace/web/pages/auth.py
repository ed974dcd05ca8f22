"""Sign in and out: the sign-in page (with its own CSRF cookie) and the login session."""

from __future__ import annotations

import secrets

from fastapi import Request
from fastapi.responses import Response

from facetrace.http.cookies import delete_session_cookie, set_session_cookie
from facetrace.http.deps import SESSION_COOKIE, CurrentActor, MaybeActor, ServiceDep, client_address
from facetrace.store.accounts import BadCredentials, LoginThrottled
from facetrace.usecases import sessions
from facetrace.usecases.service import Service
from facetrace.usecases.setup import needs_setup
from facetrace.web.deps import FormDep, text, web_router
from facetrace.web.render import page, redirect, safe_next

router = web_router()
LOGIN_CSRF_COOKIE = "facetrace_login_csrf"


def _login_page(
    request: Request,
    service: Service,
    *,
    status: int = 200,
    error: str = "",
    username: str = "",
    next_path: str = "/",
) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        None,
        "login.html",
        http_status=status,
        title="Sign in",
        first_run=needs_setup(service),
        error=error,
        username=username,
        next=safe_next(next_path),
        login_csrf=token,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/login")
    return response


@router.get("/login")
def login_form(request: Request, actor: MaybeActor, service: ServiceDep) -> Response:
    """The sign-in page (a signed-in user goes on to the dashboard)."""
    next_path = safe_next(request.query_params.get("next"))
    if actor is not None and actor.via == "session":
        return redirect(next_path)
    return _login_page(request, service, next_path=next_path)


@router.post("/login")
def login(request: Request, form: FormDep, service: ServiceDep) -> Response:
    """Check the user name and password (throttled and audited as for the API) and open a
    login session; go on to the page asked for."""
    username, password = text(form, "username"), form.get("password")
    next_path = safe_next(text(form, "next"))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = text(form, "login_csrf")
    if not cookie or not sent or not secrets.compare_digest(cookie, sent):
        return _login_page(
            request, service, status=403, error="The sign-in form expired; please try again.", username=username
        )
    if not username or not isinstance(password, str) or not password:
        return _login_page(request, service, status=422, error="Enter your user name and password.", username=username)
    try:
        opened = sessions.login(
            service,
            username[:200],
            password[:1000],
            source=client_address(request),
            previous_secret=request.cookies.get(SESSION_COOKIE),
        )
    except (BadCredentials, LoginThrottled) as exc:
        response = _login_page(
            request, service, status=exc.status, error=exc.message, username=username, next_path=next_path
        )
        if isinstance(exc, LoginThrottled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    response = redirect(next_path)
    set_session_cookie(response, service, request, opened.secret)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    _form: FormDep,
    actor: CurrentActor,
    service: ServiceDep,
) -> Response:
    """End the login session (audited)."""
    sessions.logout(service, actor)
    response = redirect("/login", "signed_out")
    delete_session_cookie(response, service, request)
    return response
