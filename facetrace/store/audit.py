"""The audit trail: an append-only, hash-chained list of audit events.

Each event's ``hash`` is the sha256 of the canonical JSON of its fields and ``prev_hash`` (the
previous event's hash), so editing an event breaks its own hash and deleting one breaks the next
event's link. The newest event's id and hash are also kept in the ``meta`` table (the trail's
head), so that deleting the newest events is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, distinct, false, func, or_, select, text, update
from sqlalchemy.orm import Session

from facetrace.logs import current_request_id
from facetrace.store.accounts import AuditEvent, as_utc
from facetrace.store.models import Meta, utcnow

GENESIS = "0" * 64
HEAD_KEY = "audit_head"
# Arbitrary constant naming the advisory lock that serialises appends on PostgreSQL.
_PG_LOCK_KEY = 0x6674_6175_6469_74  # "ftaudit"


def _jsonable(value: Any) -> Any:
    # Round-trip through JSON so that what is hashed is exactly what the database gives back.
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def _timestamp(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(event: AuditEvent) -> str:
    """Return the sha256 hex digest over the event's fields and its ``prev_hash``."""
    payload = {
        "id": event.id,
        "at": _timestamp(event.at),
        "actor": event.actor,
        "action": event.action,
        "records": list(event.records or []),
        "outcome": event.outcome,
        "source": event.source,
        "detail": event.detail or {},
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock_trail(session: Session) -> None:
    """Serialise appends across connections and processes until the caller's transaction ends."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    else:
        # A write as the transaction's first statement takes SQLite's write lock (waiting on
        # busy_timeout); reading the head first could race with another appender.
        session.execute(update(Meta).where(Meta.key == HEAD_KEY).values(value=Meta.value))


def append_event(
    session: Session,
    *,
    actor: str | None,
    action: str,
    records: list[str] | None = None,
    outcome: str = "ok",
    source: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit event in the caller's transaction; return it (flushed, hashed).

    ``actor`` is the user name (``cli:OSUSER`` from the command line, None for the system),
    ``action`` a dotted name such as ``person.enroll``, ``records`` the records touched
    (``["person:12", "case:3"]``), ``source`` the client address or ``cli``. Within an API request,
    ``detail`` also gets the request's ``request_id`` (hashed with the rest of the detail: the chain
    format is unchanged), which ties the event to the server's log lines of that request.
    """
    request_id = current_request_id()
    if request_id and "request_id" not in (detail or {}):
        detail = {**(detail or {}), "request_id": request_id}
    _lock_trail(session)
    last = session.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    event = AuditEvent(
        at=utcnow(),
        actor=actor[:200] if actor else None,
        action=action[:100],
        records=[str(r)[:200] for r in (records or [])],
        outcome=outcome[:20],
        source=source[:200] if source else None,
        detail=_jsonable(detail or {}),
        prev_hash=last or GENESIS,
        hash="",
    )
    session.add(event)
    session.flush()  # assigns the id, which the hash covers
    event.hash = event_hash(event)
    head = session.get(Meta, HEAD_KEY)
    value = json.dumps({"id": event.id, "hash": event.hash})
    if head is None:
        session.add(Meta(key=HEAD_KEY, value=value))
    else:
        head.value = value
    session.flush()
    return event


def _read_head(session: Session) -> tuple[int, str] | None | str:
    row = session.get(Meta, HEAD_KEY)
    if row is None:
        return None
    try:
        head = json.loads(row.value)
        return int(head["id"]), str(head["hash"])
    except (ValueError, KeyError, TypeError):
        return "unreadable"


def verify_chain(session: Session, *, batch: int = 2000) -> list[str]:
    """Check the whole trail; return the problems found (an empty list means intact).

    Reports each event whose content no longer matches its hash (edited), each broken link
    (an event before it deleted or altered), and newest events missing according to the head.
    """
    problems: list[str] = []
    # The head is read first: events appended while the check runs come after it and are fine.
    head = _read_head(session)
    if head == "unreadable":
        problems.append("the trail's head record is unreadable: it was altered")
    prev_hash, prev_id = GENESIS, None
    head_seen_hash: str | None = None
    last_id = 0
    while True:
        rows = list(
            session.execute(
                select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
            ).scalars()
        )
        for event in rows:
            if event.prev_hash != prev_hash:
                where = f"after event #{prev_id}" if prev_id is not None else "at the start of the trail"
                problems.append(
                    f"event #{event.id}: its link to the previous event is broken: "
                    f"an event {where} was deleted, or that event was altered"
                )
            if event_hash(event) != event.hash:
                problems.append(f"event #{event.id}: its content does not match its hash: the event was edited")
            if isinstance(head, tuple) and event.id == head[0]:
                head_seen_hash = event.hash
            prev_hash, prev_id = event.hash, event.id
        if len(rows) < batch:
            break
        last_id = rows[-1].id
        session.expunge_all()  # keep memory flat on long trails
    if isinstance(head, tuple):
        head_id, head_hash = head
        if prev_id is None or head_id > prev_id:
            left = f"#{prev_id}" if prev_id is not None else "none"
            problems.append(
                f"the newest event(s) up to #{head_id} are missing: deleted (the last event left is {left})"
            )
        elif head_seen_hash is None:
            problems.append(f"event #{head_id}, the newest when the check began, is missing: deleted")
        elif head_seen_hash != head_hash:
            problems.append(f"event #{head_id}: differs from the trail's head record: altered")
    elif head is None and prev_id is not None:
        problems.append("the trail's head record is missing: it was deleted")
    return problems


VIEW_SUFFIX = ".view"  # every read of a record or a photo is audited as ``KIND.view``


def is_view(action: str) -> bool:
    """Return whether ``action`` records a read (a page, a record or a photo viewed)."""
    return action.endswith(VIEW_SUFFIX)


def _record_condition(record: str) -> Any:
    return cast(AuditEvent.records, Text).contains(json.dumps(record), autoescape=True)


def _conditions(
    *,
    actor: str | None = None,
    action: str | None = None,
    record: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    records: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    views: bool | None = None,
    skip_ok_views: bool = False,
) -> list[Any]:
    conditions: list[Any] = []
    if actor:
        conditions.append(AuditEvent.actor == actor)
    if action:
        conditions.append(
            AuditEvent.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEvent.action == action
        )
    if record:
        conditions.append(_record_condition(record))
    if records is not None:
        conditions.append(or_(false(), *(_record_condition(r) for r in records)))
    if actions is not None:
        conditions.append(AuditEvent.action.in_(list(actions)))
    if views is not None:
        viewed = AuditEvent.action.endswith(VIEW_SUFFIX, autoescape=True)
        conditions.append(viewed if views else ~viewed)
    if skip_ok_views:
        conditions.append(~and_(AuditEvent.action.endswith(VIEW_SUFFIX, autoescape=True), AuditEvent.outcome == "ok"))
    if outcome:
        conditions.append(AuditEvent.outcome == outcome)
    if since:
        conditions.append(AuditEvent.at >= as_utc(since))
    if until:
        conditions.append(AuditEvent.at < as_utc(until))
    return conditions


def list_events(
    session: Session,
    *,
    offset: int = 0,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    record: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    records: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    views: bool | None = None,
    skip_ok_views: bool = False,
    newest_first: bool = True,
) -> tuple[list[AuditEvent], int]:
    """Return one page of events matching the filters, and how many match in all.

    ``action`` matches the action or, ending in ``.``, every action under that prefix (``person.``);
    ``record`` matches events naming that record (``person:12``); ``records`` events naming any of
    them; ``actions`` any of these actions; ``views`` True only views (see :func:`is_view`), False
    none; ``skip_ok_views`` leaves out the views that succeeded (a record's history counts them with
    :func:`summarise_views` instead).
    """
    conditions = _conditions(
        actor=actor,
        action=action,
        record=record,
        outcome=outcome,
        since=since,
        until=until,
        records=records,
        actions=actions,
        views=views,
        skip_ok_views=skip_ok_views,
    )
    total = session.execute(select(func.count(AuditEvent.id)).where(*conditions)).scalar() or 0
    order = AuditEvent.id.desc() if newest_first else AuditEvent.id
    rows = session.execute(select(AuditEvent).where(*conditions).order_by(order).offset(offset).limit(limit))
    return list(rows.scalars()), int(total)


def iter_events(session: Session, *, limit: int, batch: int = 1000, **filters: Any) -> Iterator[AuditEvent]:
    """Yield up to ``limit`` events matching ``filters`` (those of :func:`list_events`), newest
    first, read ``batch`` at a time (keyed on the id, so events appended meanwhile are not repeated)."""
    conditions = _conditions(**filters)
    last_id: int | None = None
    left = limit
    while left > 0:
        stmt = select(AuditEvent).where(*conditions)
        if last_id is not None:
            stmt = stmt.where(AuditEvent.id < last_id)
        rows = list(session.execute(stmt.order_by(AuditEvent.id.desc()).limit(min(batch, left))).scalars())
        yield from rows
        if len(rows) < min(batch, left):
            return
        left -= len(rows)
        last_id = rows[-1].id


@dataclass(frozen=True)
class ViewSummary:
    """How often one kind of view (``report.view``, ``media.view``...) was recorded, by how many users."""

    action: str
    count: int
    users: int
    first: datetime
    last: datetime


def summarise_views(session: Session, records: Sequence[str]) -> list[ViewSummary]:
    """Return, per view action, the views naming any of ``records``: their count, distinct users,
    first and last time; the most recently viewed first."""
    conditions = _conditions(records=records, views=True, outcome="ok")
    rows = session.execute(
        select(
            AuditEvent.action,
            func.count(AuditEvent.id),
            func.count(distinct(AuditEvent.actor)),
            func.min(AuditEvent.at),
            func.max(AuditEvent.at),
        )
        .where(*conditions)
        .group_by(AuditEvent.action)
    ).all()
    summaries = [ViewSummary(a, int(n), int(u), as_utc(first), as_utc(last)) for a, n, u, first, last in rows]
    return sorted(summaries, key=lambda s: s.last, reverse=True)


def records_of(kind: str, ids: Sequence[object]) -> list[str]:
    """Return record references such as ``["person:3", "person:7"]``."""
    return [f"{kind}:{i}" for i in ids]
