"""The organisation's settings, edited by admins (API ``/api/v1/settings``, page ``/admin/settings``):
organisation name and contact, SMTP, notification languages, review policy; and the SMTP test message.

Each value shows its origin (``environment``, ``saved`` or ``default``, see
:mod:`facetrace.store.settings_store`); a value the deployment fixed cannot be changed here. Every change is
an audit event (``settings.update``) listing the keys changed, never a value: the SMTP password is never
shown, logged or audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from facetrace.config import Settings
from facetrace.errors import ConflictError, FacetraceError, PermissionDenied
from facetrace.store import settings_store as store
from facetrace.store.audit import append_event
from facetrace.usecases.actors import Actor
from facetrace.usecases.service import Service
from facetrace.workflow.common import EMAIL_RE, LANGUAGE_RE, InvalidInput
from facetrace.workflow.smtp import deliver

TLS_MODES = ("none", "starttls", "tls")
APPROVERS = ("reviewer", "examiner_or_reviewer")
NOTIFY_LEVELS = ("confirmed", "preliminary")
EXCLUSION_RULES = ("sex", "age", "height")
SECTIONS = (
    ("organisation", "Organisation"),
    ("smtp", "Mail server (SMTP)"),
    ("notifications", "Notifications"),
    ("review", "Review policy"),
    ("reconciliation", "Reconciliation beyond the face"),
)


class SmtpTestFailed(FacetraceError):
    """The test message did not reach the mail server's acceptance (its reply says why)."""

    code = "smtp_test_failed"
    status = 502


class SettingsPatch(BaseModel):
    """The settings to change. A key left out stays as it is; ``null`` or ``""`` removes the saved
    value, so the default applies again."""

    model_config = ConfigDict(extra="forbid")

    organisation_name: str | None = Field(default=None, max_length=300)
    organisation_contact: str | None = Field(default=None, max_length=300)
    organisation_address: str | None = Field(default=None, max_length=500)
    smtp_host: str | None = Field(default=None, max_length=255)
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "tls", ""] | None = None
    smtp_user: str | None = Field(default=None, max_length=320)
    smtp_password: str | None = Field(default=None, max_length=1000)
    smtp_sender: str | None = Field(default=None, max_length=320)
    notification_languages: str | None = Field(default=None, max_length=200)
    review_fpir: float | None = Field(default=None, gt=0, lt=1)
    policy_fpir: float | None = Field(default=None, gt=0, lt=1)
    min_evidence_items: int | None = Field(default=None, ge=0, le=20)
    notification_approvers: Literal["reviewer", "examiner_or_reviewer", ""] | None = None
    notify_level: Literal["confirmed", "preliminary", ""] | None = None
    exclusion_rules: str | None = Field(default=None, max_length=100)
    exclusion_age_tolerance_years: float | None = Field(default=None, ge=0, le=50)
    exclusion_height_tolerance_cm: float | None = Field(default=None, ge=0, le=100)


class SmtpTestIn(BaseModel):
    """Where to send the test message."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=3, max_length=320, description="The address that should receive the test message.")


def _require_admin(actor: Actor, doing: str) -> None:
    if not actor.user.has_role("admin"):
        raise PermissionDenied(f"{doing} needs the role admin; {actor.name} has not")


def _checked(key: str, value: Any) -> Any:
    """Return ``value`` as stored for ``key`` (text stripped, languages normalised).
    Raises InvalidInput when it is not acceptable."""
    if isinstance(value, str):
        value = value.strip()
    if key == "smtp_sender" and not EMAIL_RE.match(parseaddr(value)[1] or ""):
        raise InvalidInput(f"smtp_sender: {value!r} is not an e-mail address (e.g. notify@example.org)")
    if key == "smtp_host" and any(c.isspace() for c in value):
        raise InvalidInput(f"smtp_host: {value!r} is not a host name")
    if key == "exclusion_rules":
        rules = [r.strip().lower() for r in value.split(",") if r.strip() and r.strip().lower() != "none"]
        bad = [r for r in rules if r not in EXCLUSION_RULES]
        if bad:
            raise InvalidInput(
                f"exclusion_rules: {', '.join(bad)}: the rules are {', '.join(EXCLUSION_RULES)} (or none)"
            )
        value = ",".join(dict.fromkeys(rules)) or "none"
    if key == "notification_languages":
        codes = [c.strip() for c in value.split(",") if c.strip()]
        bad = [c for c in codes if not LANGUAGE_RE.match(c)]
        if bad or not codes:
            raise InvalidInput(f"notification_languages: {', '.join(bad) or 'none'}: language codes like en, uk, ru")
        value = ",".join(dict.fromkeys(codes))
    try:
        return store.parse_value(key, value)
    except ValueError as exc:
        raise InvalidInput(f"{key}: {exc}") from None


def settings_view(service: Service) -> dict[str, Any]:
    """Return every editable setting with its value and origin, by section, and what notifications lack.

    The SMTP password is never returned: only whether one is set."""
    base = service.settings
    with service.db.sessions() as session:
        saved = store.saved_values(session)
        test = store.read_record(session, store.SMTP_TEST_KEY)
    current = store.merge(base, saved)
    fixed = store.fixed_keys(base)
    items = []
    for spec in store.SPECS:
        value = getattr(current, spec.key)
        items.append(
            {
                "key": spec.key,
                "section": spec.section,
                "label": spec.label,
                "value": None if spec.secret else value,
                "is_set": value not in (None, ""),
                "secret": spec.secret,
                "origin": store.origin_of(base, saved, spec.key),
                "read_only": spec.key in fixed,
                "env_var": store.env_name(spec.key),
            }
        )
    missing = store.missing_for_notifications(base, saved)
    return {
        "items": items,
        "sections": [{"key": k, "title": t} for k, t in SECTIONS],
        "notifications_ready": not missing,
        "missing_for_notifications": missing,
        "missing_message": store.missing_message(missing) if missing else None,
        "smtp_test": test,
        "smtp_tested": smtp_tested(current, test),
        "encrypted_at_rest": base.encrypted,
    }


def update_settings(service: Service, actor: Actor, patch: SettingsPatch) -> dict[str, Any]:
    """Save the settings given in ``patch`` (admin); return :func:`settings_view`. Audited as
    ``settings.update`` with the keys changed (never a value).

    Raises:
        PermissionDenied: not an admin.
        ConflictError: a key the deployment's environment sets (it wins; change it there).
        InvalidInput: a value out of range or malformed.
    """
    _require_admin(actor, "changing settings")
    given = {k: getattr(patch, k) for k in patch.model_fields_set}
    fixed = sorted(set(given) & store.fixed_keys(service.settings))
    if fixed:
        names = ", ".join(f"{k} ({store.env_name(k)})" for k in fixed)
        raise ConflictError(f"set by the deployment's environment, so read-only here: {names}")
    changes = {k: (None if v is None or v == "" else _checked(k, v)) for k, v in given.items()}
    with service.db.session() as session:
        changed = store.save_values(session, changes, actor.name)
        if changed:
            append_event(
                session,
                actor=actor.name,
                action="settings.update",
                records=["settings"],
                source=actor.source,
                detail={"changed": changed},
            )
    return settings_view(service)


def smtp_fingerprint(settings: Settings) -> str:
    """Return what identifies a mail set-up (server, port, TLS, user, sender): a test is valid for it only."""
    return "|".join(
        str(v)
        for v in (settings.smtp_host, settings.smtp_port, settings.smtp_tls, settings.smtp_user, settings.smtp_sender)
    )


def smtp_tested(current: Settings, test: dict[str, Any] | None) -> bool:
    """Return whether a test message went out with the mail set-up in force now."""
    return bool(test and test.get("ok") and test.get("fingerprint") == smtp_fingerprint(current))


def _test_message(settings: Settings, to: str) -> EmailMessage:
    msg = EmailMessage()
    sender = settings.smtp_sender
    msg["From"] = sender if "<" in sender else formataddr((settings.organisation_name, sender))
    msg["To"] = to
    msg["Subject"] = f"facetrace test message from {settings.organisation_name}"
    msg["Date"] = formatdate(usegmt=True)
    domain = (parseaddr(sender)[1].rsplit("@", 1)[-1] or "localhost").strip("<> ")
    msg["Message-ID"] = make_msgid("facetrace-test", domain=domain)
    msg.set_content(
        f"This is a test message from facetrace for {settings.organisation_name}.\n\n"
        f"It was sent through {settings.smtp_host}:{settings.smtp_port} (encryption: {settings.smtp_tls}) "
        "to check that notifications to families can be delivered. No reply is needed.\n"
    )
    return msg


def send_test_message(service: Service, actor: Actor, body: SmtpTestIn) -> dict[str, Any]:
    """Send a test message with the SMTP settings in force now (admin); record the outcome (shown by the
    readiness checklist) and audit it as ``settings.smtp_test``. Returns ``{"outcome": "sent", "to",
    "smtp_code", "detail"}``.

    Raises:
        PermissionDenied: not an admin. InvalidInput: not an e-mail address.
        ConflictError: the mail server or sender is not set yet.
        SmtpTestFailed: the server could not be reached or did not accept the message (the reason is given).
    """
    _require_admin(actor, "sending a test message")
    to = body.to.strip()
    if not EMAIL_RE.match(to):
        raise InvalidInput(f"to: {to!r} is not an e-mail address")
    base = service.settings
    with service.db.sessions() as session:
        saved = store.saved_values(session)
    missing = [k for k in store.missing_for_notifications(base, saved) if k.startswith("smtp_")]
    if missing:
        raise ConflictError(store.missing_message(missing))
    current = store.merge(base, saved)
    delivery = deliver(current, _test_message(current, to), to)
    ok = delivery.outcome == "accepted"
    record = {
        "at": datetime.now(UTC).isoformat(),
        "ok": ok,
        "outcome": delivery.outcome,
        "smtp_code": delivery.code,
        "detail": delivery.detail[:500],
        "fingerprint": smtp_fingerprint(current),
    }
    with service.db.session() as session:
        store.write_record(session, store.SMTP_TEST_KEY, record, actor.name)
        append_event(
            session,
            actor=actor.name,
            action="settings.smtp_test",
            records=["settings"],
            source=actor.source,
            outcome="ok" if ok else "error",
            detail={"to": to, "outcome": delivery.outcome, "smtp_code": delivery.code},
        )
    if not ok:
        raise SmtpTestFailed(f"the test message was not sent: {delivery.detail}")
    return {"outcome": "sent", "to": to, "smtp_code": delivery.code, "detail": delivery.detail}
