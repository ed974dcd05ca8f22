"""First run: the page that creates the first admin, reached by the one-time link the server prints
when it starts on an install with no user (see :mod:`facetrace.usecases.setup`)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError
from facetrace.http.cookies import set_session_cookie
from facetrace.http.deps import ServiceDep, client_address
from facetrace.usecases import sessions
from facetrace.usecases.service import Service
from facetrace.usecases.setup import create_first_admin, needs_setup, setup_token_valid
from facetrace.web.deps import FormDep, text, web_router
from facetrace.web.render import page, redirect

router = web_router()
DONE = "The first admin exists already: sign in. An admin creates the other accounts under Users."
INVALID_LINK = (
    "This setup link is not valid. The server prints a new one as the last line of its start-up output "
    "each time it starts while no account exists; a link works once."
)


def _setup_page(request: Request, token: str, *, status: int = 200, error: str = "", **values: str) -> Response:
    typed = {"username": "", "display_name": "", **values}
    return page(request, None, "setup.html", http_status=status, title="First run", token=token, error=error, **typed)


@router.get("/setup")
def setup_form(request: Request, service: ServiceDep) -> Response:
    """The form that creates the first admin (with a valid one-time link)."""
    if not needs_setup(service):
        return _setup_page(request, "", status=409, error=DONE)
    token = request.query_params.get("token", "")
    if not setup_token_valid(service, token):
        return _setup_page(request, "", status=403, error=INVALID_LINK)
    return _setup_page(request, token)


@router.post("/setup")
def setup(request: Request, form: FormDep, service: ServiceDep) -> Response:
    """Create the first admin, consume the link and sign them in (audited)."""
    token, username, display_name = text(form, "token"), text(form, "username"), text(form, "display_name")
    password, again = form.get("password"), form.get("password_again")
    if not needs_setup(service):
        return _setup_page(request, "", status=409, error=DONE)
    if not setup_token_valid(service, token):
        return _setup_page(request, "", status=403, error=INVALID_LINK)
    values = {"username": username, "display_name": display_name}
    if not username or not isinstance(password, str) or not password:
        return _setup_page(request, token, status=422, error="Choose a user name and a password.", **values)
    if password != again:
        return _setup_page(request, token, status=422, error="The two passwords differ.", **values)
    source = client_address(request)
    try:
        create_first_admin(
            service, token, username=username, password=password, display_name=display_name, source=source
        )
    except FacetraceError as exc:
        return _setup_page(request, token, status=exc.status, error=exc.message, **values)
    return _signed_in(request, service, username, password, source)


def _signed_in(request: Request, service: Service, username: str, password: str, source: str | None) -> Response:
    opened = sessions.login(service, username, password, source=source, previous_secret=None)
    response = redirect("/", "first_admin")
    set_session_cookie(response, service, request, opened.secret)
    return response
