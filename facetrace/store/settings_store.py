"""Settings an admin edits in the product (organisation, SMTP, notifications, review policy), saved in
the ``settings`` table, and the *effective* settings the workflow reads where it uses them.

A value's origin decides it, in this order:

1. ``environment``: the deployment set it (a ``FACETRACE_*`` variable, or the settings the server was
   started with); it wins and cannot be changed in the product;
2. ``saved``: an admin saved it (``PATCH /api/v1/settings``, the page ``/admin/settings``);
3. ``default``: neither did.

Values are stored as JSON text in an encrypted column, so the SMTP password (and every other saved
value) is sealed at rest when a key is set, and key rotation picks the column up (:mod:`facetrace.store.schema`).
Readers call :func:`effective` each time they need a value, so a saved change applies to the next
notification, search or review without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from facetrace.config import Settings
from facetrace.store.crypto import EncryptedText
from facetrace.store.db import Database
from facetrace.store.models import Base, utcnow

ENVIRONMENT, SAVED, DEFAULT = "environment", "saved", "default"
SMTP_TEST_KEY = "smtp_test"  # the last test message (internal: not an editable setting)


@dataclass(frozen=True)
class SettingSpec:
    """One editable setting: the :class:`facetrace.config.Settings` field it sets, its section and label."""

    key: str
    section: str
    label: str
    secret: bool = False


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("organisation_name", "organisation", "Organisation name"),
    SettingSpec("organisation_contact", "organisation", "Contact for families (e-mail or phone)"),
    SettingSpec("organisation_address", "organisation", "Address line"),
    SettingSpec("smtp_host", "smtp", "SMTP server"),
    SettingSpec("smtp_port", "smtp", "SMTP port"),
    SettingSpec("smtp_tls", "smtp", "Encryption (none, starttls, tls)"),
    SettingSpec("smtp_user", "smtp", "SMTP user name"),
    SettingSpec("smtp_password", "smtp", "SMTP password", secret=True),
    SettingSpec("smtp_sender", "smtp", "Sender address"),
    SettingSpec("notification_languages", "notifications", "Languages offered for contacts (codes, comma-separated)"),
    SettingSpec("review_fpir", "review", "Lead threshold: false positive identification rate (FPIR)"),
    SettingSpec("policy_fpir", "review", "Match threshold of searches: FPIR"),
    SettingSpec("min_evidence_items", "review", "Evidence items required before confirming"),
    SettingSpec("notification_approvers", "review", "Who may approve notifications"),
    SettingSpec("notify_level", "review", "Identification level that may notify a family"),
    SettingSpec("exclusion_rules", "reconciliation", "Exclusion rules that apply (sex, age, height; comma-separated)"),
    SettingSpec("exclusion_age_tolerance_years", "reconciliation", "Age tolerance of the exclusion (years)"),
    SettingSpec("exclusion_height_tolerance_cm", "reconciliation", "Height tolerance of the exclusion (cm)"),
)
KEYS = tuple(s.key for s in SPECS)
SPEC = {s.key: s for s in SPECS}
# What a notification needs before it can be drafted or approved (the organisation and the mail server).
REQUIRED_FOR_NOTIFICATIONS = ("organisation_name", "organisation_contact", "smtp_host", "smtp_sender")


class SavedSetting(Base):
    """One saved setting: its key and its value as JSON text (encrypted when a key is set)."""

    __tablename__ = "settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    value: Mapped[str] = mapped_column(EncryptedText("settings.value"))
    updated_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def env_name(key: str) -> str:
    """Return the environment variable that sets ``key`` (``FACETRACE_SMTP_HOST``)."""
    return f"FACETRACE_{key.upper()}"


def fixed_keys(base: Settings) -> set[str]:
    """Return the editable keys the deployment set (environment variables or the server's own settings)."""
    return set(KEYS) & set(base.model_fields_set)


def parse_value(key: str, value: Any) -> Any:
    """Return ``value`` converted to the type of the setting ``key``.

    Raises:
        ValueError: ``value`` does not fit that type (the message says why).
    """
    annotation = Settings.model_fields[key].annotation
    assert annotation is not None  # every field of Settings is annotated
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid value") if exc.errors() else "invalid value"
        raise ValueError(reason) from None


def saved_values(session: Session) -> dict[str, Any]:
    """Return the saved editable settings (key -> value); a stored value that no longer parses is left out."""
    out: dict[str, Any] = {}
    for row in session.execute(select(SavedSetting).where(SavedSetting.key.in_(KEYS))).scalars():
        try:
            out[row.key] = parse_value(row.key, json.loads(row.value))
        except ValueError:
            continue
    return out


def save_values(session: Session, changes: dict[str, Any], actor: str | None) -> list[str]:
    """Save ``changes`` (key -> value; None removes the saved value, so the default applies again).
    Returns the keys whose saved value changed, sorted. Never commits."""
    rows = {
        r.key: r for r in session.execute(select(SavedSetting).where(SavedSetting.key.in_(list(changes)))).scalars()
    }
    changed = []
    for key, value in changes.items():
        row = rows.get(key)
        if value is None:
            if row is not None:
                session.delete(row)
                changed.append(key)
            continue
        text = json.dumps(value)
        if row is None:
            session.add(SavedSetting(key=key, value=text, updated_by=actor))
            changed.append(key)
        elif row.value != text:
            row.value, row.updated_by = text, actor
            changed.append(key)
    session.flush()
    return sorted(changed)


def read_record(session: Session, key: str) -> dict[str, Any] | None:
    """Return an internal record saved under ``key`` (e.g. :data:`SMTP_TEST_KEY`), or None."""
    row = session.execute(select(SavedSetting).where(SavedSetting.key == key)).scalar()
    if row is None:
        return None
    record = json.loads(row.value)
    return record if isinstance(record, dict) else None


def write_record(session: Session, key: str, record: dict[str, Any], actor: str | None) -> None:
    """Save an internal record (a JSON object) under ``key``, replacing the previous one. Never commits."""
    if key in KEYS:
        raise ValueError(f"{key} is an editable setting, not a record")
    row = session.execute(select(SavedSetting).where(SavedSetting.key == key)).scalar()
    if row is None:
        session.add(SavedSetting(key=key, value=json.dumps(record), updated_by=actor))
    else:
        row.value, row.updated_by = json.dumps(record), actor
    session.flush()


def merge(base: Settings, saved: dict[str, Any]) -> Settings:
    """Return ``base`` with the saved values applied where the deployment did not set the key."""
    fixed = fixed_keys(base)
    update = {k: v for k, v in saved.items() if k in SPEC and k not in fixed}
    return base.model_copy(update=update) if update else base


def effective(db: Database, base: Settings) -> Settings:
    """Return the settings in force now: ``base`` (the deployment's), with the saved values applied
    where the deployment did not set the key."""
    with db.sessions() as session:
        return merge(base, saved_values(session))


def origin_of(base: Settings, saved: dict[str, Any], key: str) -> str:
    """Return where the value of ``key`` comes from: ``environment``, ``saved`` or ``default``."""
    if key in fixed_keys(base):
        return ENVIRONMENT
    return SAVED if key in saved else DEFAULT


def missing_for_notifications(base: Settings, saved: dict[str, Any]) -> list[str]:
    """Return the keys a notification needs that neither the deployment nor an admin set (their
    defaults are placeholders such as ``facetrace@localhost``); empty when notifications can go."""
    fixed = fixed_keys(base)
    current = merge(base, saved)
    return [
        key
        for key in REQUIRED_FOR_NOTIFICATIONS
        if (key not in fixed and key not in saved) or not str(getattr(current, key) or "").strip()
    ]


def missing_message(missing: list[str]) -> str:
    """Return the sentence that says what to set, and where, before notifications can be drafted or approved."""
    labels = ", ".join(SPEC[k].label.lower() for k in missing)
    variables = ", ".join(env_name(k) for k in missing)
    return (
        f"notifications need the organisation and mail settings first; not set yet: {labels}. "
        f"An admin sets them under Settings (/admin/settings, or PATCH /api/v1/settings), "
        f"or the deployment sets {variables}"
    )
