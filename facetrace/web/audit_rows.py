"""Audit events as the web pages show them: each action with its plain-words label, each record
it names as a link to that record's page, and a record's history with its views counted rather
than listed ("viewed 12 times by 3 users")."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from facetrace.store.accounts import AuditEvent, User
from facetrace.store.audit import list_events, summarise_views
from facetrace.store.db import Database
from facetrace.store.jobs import Job
from facetrace.store.workflow_models import Case, Report
from facetrace.usecases.audit_labels import action_label
from facetrace.usecases.video import VIDEO_JOB
from facetrace.web.services import HIDDEN_DETAIL_ACTIONS

# Records whose page is found by their id alone.
PAGES_BY_ID = {"lead": "/leads/{}", "identification": "/identifications/{}", "notification": "/notifications/{}"}


def _split(record: str) -> tuple[str, int | None]:
    kind, _, rid = record.partition(":")
    return kind, int(rid) if rid.isdigit() else None


def _names(db: Database, ids: dict[str, set[int]]) -> dict[tuple[str, int], tuple[str, str | None]]:
    """Return (text, page) of the records that need a look-up: reports and cases by reference,
    persons through the report standing for them, users by name, video search jobs."""
    out: dict[tuple[str, int], tuple[str, str | None]] = {}
    with db.sessions() as session:
        if ids["report"]:
            for rid, ref in session.execute(select(Report.id, Report.reference).where(Report.id.in_(ids["report"]))):
                out["report", rid] = (f"report {ref}", f"/reports/{rid}")
        if ids["case"]:
            for cid, ref in session.execute(select(Case.id, Case.reference).where(Case.id.in_(ids["case"]))):
                out["case", cid] = (f"case {ref}", f"/cases/{cid}")
        if ids["person"]:
            persons = session.execute(
                select(Report.person_id, Report.id, Report.reference).where(Report.person_id.in_(ids["person"]))
            )
            for pid, rid, ref in persons:
                if pid is not None:
                    out["person", pid] = (f"person {pid} (report {ref})", f"/reports/{rid}")
        if ids["user"]:
            for uid, name in session.execute(select(User.id, User.username).where(User.id.in_(ids["user"]))):
                out["user", uid] = (f"user {name}", f"/admin/users/{quote(name, safe='')}")
        if ids["job"]:
            jobs = session.execute(select(Job.id).where(Job.id.in_(ids["job"]), Job.kind == VIDEO_JOB))
            for jid in jobs.scalars():
                out["job", jid] = (f"video search {jid}", f"/search/video/{jid}")
    return out


def add_links(
    db: Database, rows: list[dict[str, Any]], *, record_pages: bool = True, admin: bool = False
) -> list[dict[str, Any]]:
    """Give each event row (``as_dict()`` form) its ``label`` and ``links``: one ``{"text",
    "href"}`` per record it names. With ``record_pages`` (a reader of case files) a record links to
    its page (``href`` None where it has none, or is gone); without (an auditor, who reads the trail
    rather than the files) to the audit trail of that record. A user links to their account page
    for an ``admin``."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        for record in row.get("records") or []:
            kind, rid = _split(record)
            if rid is not None:
                wanted[kind].add(rid)
    names = _names(db, wanted)
    for row in rows:
        row["label"] = action_label(row["action"])
        links = []
        for record in row.get("records") or []:
            kind, rid = _split(record)
            text, href = record.replace(":", " ", 1), None
            if rid is not None and (kind, rid) in names:
                text, href = names[kind, rid]
            elif rid is not None and kind in PAGES_BY_ID:
                text, href = f"{kind} {rid}", PAGES_BY_ID[kind].format(rid)
            account = kind == "user" and admin  # an admin opens the account itself
            if not record_pages and not account:
                href = f"/audit?record={quote(record, safe='')}"
            elif kind == "user" and not admin:
                href = None  # only admins open accounts
            links.append({"text": text, "href": href})
        row["links"] = links
    return rows


def _event_row(event: AuditEvent) -> dict[str, Any]:
    row = event.as_dict()
    row["kind"] = "event"
    if event.action in HIDDEN_DETAIL_ACTIONS:
        row["detail"] = {}
    return row


def history_rows(db: Database, records: list[str], limit: int = 100) -> list[dict[str, Any]]:
    """Return the history of a record (the audit events naming any of ``records``, e.g.
    ``["case:3", "lead:7"]``), newest first: one row per action (at most ``limit``; review
    decisions left out for blind review), but the views that succeeded counted in one row per kind
    of view (``kind`` "views": ``count``, ``users``, ``first``, ``at`` its last time)."""
    with db.sessions() as session:
        events, _ = list_events(session, records=records, skip_ok_views=True, limit=limit)
        summaries = summarise_views(session, records)
    rows = add_links(db, [_event_row(e) for e in events])
    for summary in summaries:
        rows.append(
            {
                "kind": "views",
                "action": summary.action,
                "label": action_label(summary.action),
                "count": summary.count,
                "users": summary.users,
                "first": summary.first.isoformat(),
                "at": summary.last.isoformat(),
                "links": [],
                "records": [],
                "outcome": "ok",
            }
        )
    return sorted(rows, key=lambda r: datetime.fromisoformat(r["at"]), reverse=True)
