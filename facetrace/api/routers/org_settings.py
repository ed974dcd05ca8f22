"""The organisation's settings (admins): organisation, SMTP, notification languages, review policy; the SMTP test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from facetrace.api.schemas import SettingsView, SmtpTestResult
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Admin
from facetrace.usecases import org_settings
from facetrace.usecases.org_settings import SettingsPatch, SmtpTestIn

router = APIRouter(tags=["settings"])


@router.get("/settings", response_model=SettingsView)
def show_settings(_actor: Admin, service: ServiceDep) -> Any:
    """Show every editable setting with its value and origin (``environment``, ``saved``, ``default``),
    and what notifications still need. The SMTP password is never shown."""
    return org_settings.settings_view(service)


@router.patch("/settings", response_model=SettingsView)
def update_settings(body: SettingsPatch, actor: Admin, service: ServiceDep) -> Any:
    """Save settings (a key left out stays; ``null`` or ``""`` goes back to the default). A key the
    deployment's environment sets answers 409; it applies without a restart. Audited (``settings.update``)."""
    return org_settings.update_settings(service, actor, body)


@router.post("/settings/smtp-test", response_model=SmtpTestResult)
def smtp_test(body: SmtpTestIn, actor: Admin, service: ServiceDep) -> Any:
    """Send a test message to ``to`` with the mail settings in force now: 200 when the server accepted it,
    502 ``smtp_test_failed`` with the reason when not, 409 while the mail server is not set. Audited."""
    return org_settings.send_test_message(service, actor, body)
