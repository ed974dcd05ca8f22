"""The organisation's settings (admins): one form by section, each value with its origin; the SMTP test."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Admin
from facetrace.usecases import org_settings
from facetrace.usecases.actors import Actor
from facetrace.usecases.checklist import last_backup
from facetrace.usecases.org_settings import SettingsPatch, SmtpTestIn
from facetrace.usecases.service import Service
from facetrace.web.deps import FormDep, text, web_router
from facetrace.web.render import page, redirect

router = web_router()
CHOICES = {
    "smtp_tls": org_settings.TLS_MODES,
    "notification_approvers": org_settings.APPROVERS,
    "notify_level": org_settings.NOTIFY_LEVELS,
}
APPROVER_LABELS = {
    "reviewer": "reviewers (not the drafter)",
    "examiner_or_reviewer": "examiners and reviewers (not the drafter)",
    "confirmed": "confirmed only (a primary identifier result)",
    "preliminary": "preliminary too (two examiners and secondary evidence)",
}


def shown(value: Any) -> str:
    """Return a setting's value as text ("" for none)."""
    return "" if value is None else str(value)


def form_value(item: dict[str, Any]) -> str:
    """Return what a setting's field holds: its value, or "" while the default applies (the default is
    the field's placeholder), so that typing the default's own value saves it."""
    return "" if item["origin"] == "default" else shown(item["value"])


def _settings_page(
    request: Request,
    actor: Actor,
    service: Service,
    *,
    status: int = 200,
    error: str = "",
    test_error: str = "",
    entered: dict[str, str] | None = None,
    test_to: str = "",
) -> Response:
    view = org_settings.settings_view(service)
    values = {i["key"]: form_value(i) for i in view["items"]}
    defaults = {i["key"]: shown(i["value"]) for i in view["items"] if i["origin"] == "default"}
    values.update(entered or {})
    return page(
        request,
        actor,
        "admin_settings.html",
        http_status=status,
        title="Settings",
        view=view,
        values=values,
        defaults=defaults,
        choices=CHOICES,
        approver_labels=APPROVER_LABELS,
        error=error,
        test_error=test_error,
        test_to=test_to,
        last_backup=last_backup(service),
    )


@router.get("/admin/settings")
def settings_form(request: Request, actor: Admin, service: ServiceDep) -> Response:
    """Organisation, mail server, notifications and review policy, each value with its origin (admin)."""
    return _settings_page(request, actor, service)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


@router.post("/admin/settings")
def save_settings(request: Request, form: FormDep, actor: Admin, service: ServiceDep) -> Response:
    """Save the values changed in the form (an emptied field goes back to its default; the password only
    when one is typed, or removed when asked). Audited as settings.update."""
    view = org_settings.settings_view(service)
    entered: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for item in view["items"]:
        key = item["key"]
        if item["read_only"] or (key not in form and f"{key}_clear" not in form):
            continue  # fixed by the environment, or not in this form: left as it is
        if item["secret"]:
            typed = str(form.get(key) or "")
            if typed:
                changes[key] = typed
            elif text(form, f"{key}_clear") == "yes":
                changes[key] = None
            continue
        value = text(form, key)
        entered[key] = value
        if value != form_value(item):
            changes[key] = value or None
    try:
        org_settings.update_settings(service, actor, SettingsPatch(**changes))
    except ValidationError as exc:
        return _settings_page(request, actor, service, status=422, error=_validation_message(exc), entered=entered)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return _settings_page(request, actor, service, status=exc.status, error=exc.message, entered=entered)
    return redirect("/admin/settings", "settings_saved")


@router.post("/admin/settings/smtp-test")
def smtp_test(request: Request, form: FormDep, actor: Admin, service: ServiceDep) -> Response:
    """Send a test message with the mail settings in force now; say whether it went out, and why not."""
    to = text(form, "to")
    try:
        org_settings.send_test_message(service, actor, SmtpTestIn(to=to))
    except ValidationError as exc:
        return _settings_page(request, actor, service, status=422, test_error=_validation_message(exc), test_to=to)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        # The test ran and failed: the page answers (200) with the reason at the top, not as a server error.
        status = 200 if isinstance(exc, org_settings.SmtpTestFailed) else exc.status
        return _settings_page(request, actor, service, status=status, test_error=exc.message, test_to=to)
    return redirect("/admin/settings", "smtp_test_sent")
