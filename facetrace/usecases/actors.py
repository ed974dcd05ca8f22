"""Who acts, and the audit trail of what they do: :class:`Actor` (the signed-in caller of one
request, whether it came through the API or a web page) and :func:`audited`, which appends the
event of an action once it is known how it ended."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from facetrace.errors import FacetraceError
from facetrace.store.accounts import ApiToken, User, WebSession
from facetrace.store.audit import append_event
from facetrace.usecases.service import Service


@dataclass
class Actor:
    """The signed-in caller of one request."""

    user: User
    via: str  # "token" or "session"
    source: str | None  # client address
    session: WebSession | None = None
    token: ApiToken | None = None  # the API token it came with (via "token")

    @property
    def name(self) -> str:
        return self.user.username


@dataclass
class AuditNote:
    """What an audited action fills in as it learns it: records touched, details, outcome."""

    records: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"


def record_event(
    service: Service,
    actor: Actor | None,
    action: str,
    *,
    records: list[str] | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    source: str | None = None,
    username: str | None = None,
) -> None:
    """Append one audit event in its own transaction."""
    with service.db.session() as session:
        append_event(
            session,
            actor=actor.name if actor else username,
            action=action,
            records=records,
            outcome=outcome,
            source=actor.source if actor else source,
            detail=detail,
        )


@contextmanager
def audited(service: Service, actor: Actor, action: str, **detail: Any) -> Iterator[AuditNote]:
    """Run an action and append its audit event afterwards, with outcome ``error`` (or
    ``not_found``) and the error's code when it raised a FacetraceError."""
    note = AuditNote(detail={k: v for k, v in detail.items() if v is not None})
    try:
        yield note
    except FacetraceError as exc:
        note.detail["error"] = exc.code
        outcome = "not_found" if exc.status == 404 else "denied" if exc.status == 403 else "error"
        record_event(service, actor, action, records=note.records, outcome=outcome, detail=note.detail)
        raise
    record_event(service, actor, action, records=note.records, outcome=note.outcome, detail=note.detail)
