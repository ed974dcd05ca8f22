"""Rendering of the web pages: the Jinja2 environment (autoescaped) and a route class that turns
errors into HTML pages (or a sign-in redirect) instead of JSON.

Every page is sent with a Content-Security-Policy that allows only this server's own scripts,
styles and images (``data:`` and ``blob:`` images for upload previews): no inline script can
run, so user content that slipped through escaping still could not execute. The headers are set
for every response in one place, :mod:`facetrace.http.security`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from facetrace import __version__
from facetrace.errors import FacetraceError
from facetrace.http.deps import SESSION_COOKIE, current_actor, get_service
from facetrace.http.security import PAGE_CSP, PAGE_HEADERS
from facetrace.store.accounts import ROLE_DESCRIPTIONS, ROLES
from facetrace.usecases.actors import Actor
from facetrace.usecases.errors import Unauthorized, value_out_of_range
from facetrace.usecases.search_history import HISTORY_ROLES
from facetrace.web.services import can_read, can_review, fmr_words, fpir_words, one_in, rarity

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("facetrace.web") / "static"))
# The page headers (CSP without inline script, frame denial, no-store...) are set for every
# response by facetrace.http.security.SecurityHeadersMiddleware; named here for the docs and tests.
CSP = PAGE_CSP
SECURITY_HEADERS = PAGE_HEADERS
# Messages shown after a redirect, by key: the query string names one, never carries text.
# Notices in WARNING_NOTICES report that something did not go as asked, and are shown as warnings.
WARNING_NOTICES = frozenset(
    {
        "approved_failed",
        "approved_refused",
        "approved_unknown",
        "identification_confirmed_not_drafted",
        "identification_preliminary_held",
    }
)
NOTICES = {
    "signed_out": "You are signed out.",
    "report_created": "The report is registered and was matched against the open cases.",
    "case_created": "The case is open and was searched against all reports.",
    "photos_added": "The photos were added and the record was matched again.",
    "contact_added": "The contact is registered.",
    "contact_updated": "The contact is corrected. Notifications already drafted keep the address they were "
    "drafted for.",
    "report_updated": "The report is corrected and was matched again; the history below shows the change.",
    "case_updated": "The case is corrected and was matched again; the history below shows the change.",
    "nothing_changed": "Nothing was changed: the form had the values already recorded.",
    "reports_merged": "The reports are merged: this report now also has the other's photos and contacts; "
    "the other report's page keeps its history.",
    "duplicate_dismissed": "The flag is dismissed: the two reports are recorded as different people.",
    "review_recorded": "Your review is recorded.",
    "identification_confirmed": "Two examiners confirmed: the identification is established and "
    "notifications to the family contacts were drafted for approval.",
    "identification_confirmed_not_drafted": "Two examiners confirmed: the identification is established, but "
    "notifications could NOT be drafted (see the notifications below: usually the organisation or mail settings "
    "are missing; an admin sets them under Settings). Draft them once that is fixed.",
    "identification_preliminary_held": "Two examiners confirmed: the identification is established as "
    "PRELIMINARY, and notifications to the family are held: the policy notifies families of confirmed "
    "identifications only (a DNA, dental or fingerprint result recorded as evidence, or an admin's recorded "
    "exception).",
    "evidence_added": "The evidence is recorded.",
    "described": "The description is saved and the record was matched again.",
    "case_kind_set": "The kind of case is saved.",
    "mark_added": "The mark is recorded and the record was matched again.",
    "mark_removed": "The mark is removed; the history below keeps the reason.",
    "effect_added": "The personal effect is recorded.",
    "primary_reference_added": "The reference is recorded.",
    "primary_reference_updated": "The status of the reference is changed.",
    "widened_found": "All reports were searched, exclusions ignored: the leads found are listed under Leads "
    "(the widening is recorded in the history).",
    "widened_nothing": "All reports were searched, exclusions ignored: no new lead was found.",
    "lead_reopened": "The lead is reopened and waits for examiners again; the earlier rejections stay in its history.",
    "confirmed_by_exception": "The identification is confirmed by exception, with your rationale; the "
    "notifications the policy now allows were drafted for approval.",
    "withdrawn": "The identification is withdrawn; corrections were drafted for everyone notified.",
    "drafted": "The notification is drafted; a second reviewer must approve it.",
    "approved": "The notification is approved.",
    "approved_sent": "The notification is approved and sent: the mail server accepted it.",
    "approved_queued": "The notification is approved and waits in the outbox: a reviewer or an admin sends it.",
    "approved_failed": "The notification is approved, but it was NOT sent: the mail server could not be reached "
    "or refused it for now (the error is under Status). Check the mail settings, then press Send now.",
    "approved_refused": "The notification is approved, but the mail server REFUSED it (the reason is under "
    "Status): it will not be retried. Resolve or cancel it.",
    "approved_unknown": "The notification is approved, but whether it was delivered is unknown (the connection "
    "broke): check the mail server's log for its Message-ID before resolving it.",
    "settings_saved": "The settings are saved; they apply from now on.",
    "smtp_test_sent": "The test message was accepted by the mail server.",
    "cancelled": "The notification is cancelled.",
    "edited": "Your changes to the draft are saved; the approver sees what you changed.",
    "sent": "The outbox ran; see the delivery status below.",
    "resolved": "The notification is resolved.",
    "user_created": "The user account is created.",
    "user_updated": "The user account is changed.",
    "first_admin": "Your admin account is created and you are signed in. Next: create your colleagues' "
    "accounts under Users.",
}


def _dt(value: str | datetime | None, *, date_only: bool = False) -> str:
    """Format an ISO time (or datetime) as ``YYYY-MM-DD HH:MM UTC``."""
    if not value:
        return "—"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d") if date_only else moment.strftime("%Y-%m-%d %H:%M UTC")


def _label(value: str | None) -> str:
    return (value or "").replace("_", " ")


def build_environment() -> Environment:
    """Return the Jinja2 environment of the pages (autoescaping on for every template)."""
    env = Environment(
        loader=PackageLoader("facetrace.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["dt"] = _dt
    env.filters["date"] = lambda v: _dt(v, date_only=True)
    env.filters["label"] = _label
    env.filters["one_in"] = one_in
    env.filters["rarity"] = rarity
    env.filters["pct"] = lambda v: f"{float(v) * 100:g}%"
    env.globals.update(
        fpir_words=fpir_words,
        fmr_words=fmr_words,
        ROLES=ROLES,
        ROLE_DESCRIPTIONS=ROLE_DESCRIPTIONS,
        version=__version__,
        quote=quote,
    )
    return env


ENV = build_environment()


def nav_items(actor: Actor | None) -> list[tuple[str, str]]:
    """Return the navigation links (path, label) that the user's roles make useful."""
    if actor is None:
        return []
    user = actor.user
    items = [("/", "Dashboard")]
    if can_read(user):
        items += [("/reports", "Reports"), ("/cases", "Cases"), ("/leads", "Leads")]
        items += [("/identifications", "Identifications"), ("/notifications", "Notifications")]
    if user.has_role("examiner"):
        items.append(("/search", "Search"))
    if can_read(user):
        items.append(("/search/marks", "Search by marks"))
    if any(user.has_role(r) for r in HISTORY_ROLES):
        items.append(("/search/history", "Past searches"))
    if user.has_role("auditor"):
        items.append(("/audit", "Audit trail"))
    if user.has_role("admin"):
        items.append(("/admin/users", "Users"))
        items.append(("/admin/settings", "Settings"))
    return items


def page(
    request: Request, actor: Actor | None, template: str, *, http_status: int = 200, title: str = "", **context: Any
) -> HTMLResponse:
    """Render ``template`` into a full HTML page for ``actor`` (None on the sign-in page)."""
    notice_key = request.query_params.get("msg", "")
    html = ENV.get_template(template).render(
        request_path=request.url.path,
        actor=actor,
        user=actor.user if actor else None,
        csrf_token=actor.session.csrf_token if actor and actor.session else "",
        nav=nav_items(actor),
        notice=NOTICES.get(notice_key, ""),
        notice_is_warning=notice_key in WARNING_NOTICES,
        can_review=can_review(actor.user) if actor else False,
        can_read=can_read(actor.user) if actor else False,
        title=title,
        **context,
    )
    return HTMLResponse(html, status_code=http_status)


def redirect(path: str, notice: str | None = None) -> RedirectResponse:
    """Return a 303 redirect to a local ``path``, optionally with a notice key."""
    if notice:
        path += ("&" if "?" in path else "?") + f"msg={notice}"
    return RedirectResponse(path, status_code=303)


def safe_next(value: str | None) -> str:
    """Return ``value`` when it is a local path (no scheme, no host), else ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def error_page(request: Request, actor: Actor | None, status: int, code: str, message: str) -> HTMLResponse:
    """Return the HTML error page."""
    titles = {
        400: "Bad request",
        403: "Not allowed",
        404: "Not found",
        409: "Not possible now",
        413: "Too large",
        415: "Unsupported file",
        422: "Please check the input",
        429: "Too many attempts",
        500: "Something went wrong",
        503: "Temporarily unavailable",
    }
    return page(
        request,
        actor,
        "error.html",
        http_status=status,
        title=titles.get(status, "Error"),
        code=code,
        message=message,
        status_code=status,
    )


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") or request.url.path.startswith("/intake/check")


class WebRoute(APIRoute):
    """A route of the web pages: errors become HTML pages (or JSON for the page scripts' own
    requests), and a missing sign-in becomes a redirect to the sign-in page. (The security
    headers are added to every response by the server's middleware.)"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except Unauthorized as exc:
                if _wants_json(request):
                    response = JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=401)
                else:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    next_path = target if request.method == "GET" else "/"
                    response = redirect(f"/login?next={quote(next_path, safe='/')}")
            except FacetraceError as exc:
                response = _error_response(request, exc.status, exc.code, exc.message)
                retry = getattr(exc, "retry_after", None)
                if retry is not None:
                    response.headers["Retry-After"] = str(retry)
            except RequestValidationError as exc:
                parts = []
                for err in exc.errors()[:10]:
                    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form")]
                    parts.append(f"{'.'.join(loc) or 'input'}: {err.get('msg', 'invalid')}")
                response = _error_response(request, 422, "invalid_request", "; ".join(parts) or "invalid input")
            except StarletteHTTPException as exc:
                message = exc.detail if isinstance(exc.detail, str) else "request refused"
                response = _error_response(request, exc.status_code, "error", message)
            except Exception as exc:  # never a traceback in a page
                refused = value_out_of_range(exc)
                if refused is not None:
                    return _error_response(request, refused.status, refused.code, refused.message)
                log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
                response = _error_response(request, 500, "internal", "internal error; the server log has the details")
            return response

        return handler


def _error_response(request: Request, status: int, code: str, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
    return error_page(request, _actor_of(request), status, code, message)


def _actor_of(request: Request) -> Actor | None:
    """Return the signed-in user of a request that failed, for the error page's navigation."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    try:
        return current_actor(request, get_service(request), None, secret)
    except Exception:  # the error page must render whatever went wrong
        return None
