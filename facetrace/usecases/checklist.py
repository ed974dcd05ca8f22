"""The readiness checklist an admin sees on the dashboard: what a team needs before its first
notification goes out, each item with a link to where it is fixed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from facetrace.store import settings_store as store
from facetrace.store.accounts import User, as_utc
from facetrace.store.audit import list_events
from facetrace.usecases.org_settings import smtp_tested
from facetrace.usecases.service import Service

BACKUP_MAX_AGE = timedelta(days=7)  # an older last backup is flagged


@dataclass(frozen=True)
class ChecklistItem:
    """One item: whether it is done, what is true now, and the link that fixes it."""

    key: str
    label: str
    ok: bool
    detail: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        """Return the item as a dict."""
        return asdict(self)


def last_backup(service: Service) -> datetime | None:
    """Return when the last backup was written (``facetrace backup`` audits ``backup.create``), or None."""
    with service.db.sessions() as session:
        rows, _ = list_events(session, action="backup.create", outcome="ok", limit=1)
    return as_utc(rows[0].at) if rows else None


def readiness_checklist(service: Service) -> list[ChecklistItem]:
    """Return the checklist: encryption key, SMTP tested, organisation set, at least two reviewers, last backup."""
    base = service.settings
    with service.db.sessions() as session:
        saved = store.saved_values(session)
        test = store.read_record(session, store.SMTP_TEST_KEY)
        users = list(session.execute(select(User)).scalars())
    current = store.merge(base, saved)
    missing = store.missing_for_notifications(base, saved)
    organisation_missing = [k for k in missing if k.startswith("organisation_")]
    reviewers = sorted(u.username for u in users if not u.disabled and u.has_role("reviewer"))
    backup = last_backup(service)
    now = datetime.now(UTC)
    tested = smtp_tested(current, test)
    if tested:
        smtp_detail = f"a test message went out through {current.smtp_host}:{current.smtp_port}"
    elif [k for k in missing if k.startswith("smtp_")]:
        smtp_detail = "the mail server is not set"
    elif test and not test.get("ok"):
        smtp_detail = f"the last test message failed: {test.get('detail', '')}"
    else:
        smtp_detail = "no test message sent with the mail settings in force now"
    return [
        ChecklistItem(
            "encryption",
            "Encryption key set",
            base.encrypted,
            "data is encrypted at rest" if base.encrypted else "no key: data is stored unencrypted",
            "/admin/settings#encryption",
        ),
        ChecklistItem("smtp", "Mail server tested", tested, smtp_detail, "/admin/settings#smtp-test"),
        ChecklistItem(
            "organisation",
            "Organisation name and contact set",
            not organisation_missing,
            f"{current.organisation_name}, {current.organisation_contact}"
            if not organisation_missing
            else "not set: " + ", ".join(store.SPEC[k].label.lower() for k in organisation_missing),
            "/admin/settings#organisation",
        ),
        ChecklistItem(
            "reviewers",
            "At least two reviewers",
            len(reviewers) >= 2,
            f"{len(reviewers)} enabled reviewer(s){': ' + ', '.join(reviewers) if reviewers else ''}; whoever drafts a "
            "notification cannot approve it",
            "/admin/users",
        ),
        ChecklistItem(
            "backup",
            "Recent backup",
            backup is not None and now - backup <= BACKUP_MAX_AGE,
            f"last backup {backup:%Y-%m-%d %H:%M} UTC" if backup else "no backup recorded",
            "/admin/settings#backup",
        ),
    ]
