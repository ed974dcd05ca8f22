"""``facetrace user ...`` (accounts, roles, API tokens) and ``facetrace audit ...`` (the audit trail),
plus the helpers with which the other commands append audit events (actor ``cli:OSUSER``)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select

from facetrace.cli.output import console, emit_json, fail
from facetrace.config import get_settings
from facetrace.store.accounts import (
    ROLES,
    User,
    check_roles,
    create_token,
    create_user,
    get_user,
    normalise_username,
    set_disabled,
    set_password,
    set_roles,
)
from facetrace.store.audit import append_event, list_events, verify_chain
from facetrace.store.db import Database
from facetrace.store.models import Person

user_app = typer.Typer(help="Manage user accounts, roles and API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="Read and verify the audit trail.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
RolesOpt = Annotated[list[str], typer.Option("--role", help=f"A role ({', '.join(ROLES)}); repeat for several.")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


def cli_actor() -> str:
    """Return the audit actor of the command line: ``cli:`` and the OS user name."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (e.g. a container with an unknown uid)
        return "cli:unknown"


def cli_audit(
    db: Database,
    action: str,
    *,
    records: list[str] | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an audit event for a command-line action (source ``cli``)."""
    with db.session() as session:
        append_event(
            session, actor=cli_actor(), action=action, records=records, outcome=outcome, source="cli", detail=detail
        )


def person_records(db: Database, external_ids: list[str]) -> list[str]:
    """Return ``person:ID`` records for the persons with these external ids (unknown ones are left out)."""
    if not external_ids:
        return []
    with db.sessions() as session:
        ids = session.execute(select(Person.id).where(Person.external_id.in_(external_ids))).scalars()
        return [f"person:{i}" for i in sorted(ids)]


def search_records(result: dict[str, Any]) -> list[str]:
    """Return the ``person:ID`` records of every candidate in a search result."""
    ids = {c["person"]["id"] for face in result.get("faces", []) for c in face.get("candidates", [])}
    return [f"person:{i}" for i in sorted(ids)]


def _db() -> Database:
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return Database(settings.db_url, keyring=settings.keyring)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            fail("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: use --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _print_user(user: User, json_out: bool, extra: dict[str, Any] | None = None) -> None:
    info = {**user.as_dict(), **(extra or {})}
    if json_out:
        emit_json(info)
    else:
        state = "disabled" if user.disabled else "enabled"
        console.print(f"{user.username}: {', '.join(user.roles) or 'no roles'} ({state})", markup=False)


@user_app.command("add")
def user_add(
    username: str,
    role: RolesOpt,
    display_name: Annotated[str, typer.Option(help="The name shown in the UI.")] = "",
    password_stdin: PasswordStdinOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a user with roles; asks for the password (at least 10 characters)."""
    normalise_username(username), check_roles(role)  # refuse a bad name or role before asking for a password
    db = _db()
    password = _read_password(password_stdin)
    with db.session() as session:
        user = create_user(session, username, password, role, display_name)
        append_event(
            session,
            actor=cli_actor(),
            action="user.create",
            records=[f"user:{user.id}"],
            source="cli",
            detail={"username": user.username, "roles": user.roles},
        )
    _print_user(user, json_out)


@user_app.command("list")
def user_list(json_out: JsonOpt = False) -> None:
    """List user accounts."""
    with _db().sessions() as session:
        users = list(session.execute(select(User).order_by(User.username)).scalars())
    if json_out:
        emit_json([u.as_dict() for u in users])
        return
    table = Table("user", "name", "roles", "state", "created")
    for u in users:
        state = "disabled" if u.disabled else "enabled"
        table.add_row(u.username, u.display_name, ", ".join(u.roles), state, u.as_dict()["created_at"][:19])
    console.print(table)


def _set_disabled(username: str, disabled: bool, json_out: bool) -> None:
    with _db().session() as session:
        user = get_user(session, username)
        change = set_disabled(session, user, disabled)
        append_event(
            session,
            actor=cli_actor(),
            action="user.update",
            records=[f"user:{user.id}"],
            source="cli",
            detail=change or {"disabled": disabled},
        )
    _print_user(user, json_out)


@user_app.command("disable")
def user_disable(username: str, json_out: JsonOpt = False) -> None:
    """Disable an account: its sessions end and its tokens stop working at once."""
    _set_disabled(username, True, json_out)


@user_app.command("enable")
def user_enable(username: str, json_out: JsonOpt = False) -> None:
    """Enable a disabled account again (its old sessions and tokens stay ended: sign in, issue new tokens)."""
    _set_disabled(username, False, json_out)


@user_app.command("roles")
def user_roles(username: str, role: RolesOpt, json_out: JsonOpt = False) -> None:
    """Replace a user's roles (taking one away revokes their API tokens)."""
    with _db().session() as session:
        user = get_user(session, username)
        change = set_roles(session, user, role)
        append_event(
            session,
            actor=cli_actor(),
            action="user.roles",
            records=[f"user:{user.id}"],
            source="cli",
            detail=change or {"roles": {"before": user.roles, "after": user.roles}},
        )
    _print_user(user, json_out)


@user_app.command("password")
def user_password(username: str, password_stdin: PasswordStdinOpt = False, json_out: JsonOpt = False) -> None:
    """Set a user's password (their login sessions end and their API tokens are revoked)."""
    db = _db()
    with db.sessions() as session:
        get_user(session, username)  # fail before asking for a password
    password = _read_password(password_stdin)
    with db.session() as session:
        user = get_user(session, username)
        set_password(session, user, password)
        append_event(
            session,
            actor=cli_actor(),
            action="user.update",
            records=[f"user:{user.id}"],
            source="cli",
            detail={"password": "changed"},
        )
    _print_user(user, json_out)


@user_app.command("token")
def user_token(
    username: str,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[float | None, typer.Option(help="Validity in days (default: FACETRACE_TOKEN_DAYS, 90).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Issue an API token for a user and print it (shown once: store it safely)."""
    days = days if days is not None else get_settings().token_days
    with _db().session() as session:
        user = get_user(session, username)
        if user.disabled:
            fail(f"user {user.username!r} is disabled")
        row, secret = create_token(session, user, name, days=days)
        append_event(
            session,
            actor=cli_actor(),
            action="token.create",
            records=[f"user:{user.id}", f"token:{row.id}"],
            source="cli",
            detail={"name": row.name, "expires_at": row.as_dict()["expires_at"]},
        )
    if json_out:
        emit_json({**row.as_dict(), "user": user.username, "token": secret})
    else:
        console.print(f"token for {user.username} (expires {row.as_dict()['expires_at'][:10]}):", markup=False)
        sys.stdout.write(secret + "\n")


@audit_app.command("verify")
def audit_verify(json_out: JsonOpt = False) -> None:
    """Check the hash chain of the audit trail; exits 1 and says which events when one was edited or deleted."""
    db = _db()
    with db.sessions() as session:
        problems = verify_chain(session)
        _, total = list_events(session, limit=1)
    cli_audit(db, "audit.verify", outcome="ok" if not problems else "error", detail={"problems": len(problems)})
    if json_out:
        emit_json({"intact": not problems, "events": total, "problems": problems})
    elif not problems:
        console.print(f"audit trail intact: {total} event(s)")
    else:
        for problem in problems:
            console.print(f"TAMPERED: {problem}", markup=False, highlight=False)
    if problems:
        raise SystemExit(1)


@audit_app.command("list")
def audit_list(
    actor: Annotated[str | None, typer.Option(help="Only this actor (a user name, or cli:NAME).")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, or a prefix ending in '.'.")] = None,
    record: Annotated[str | None, typer.Option(help="Only events naming this record, e.g. person:12.")] = None,
    outcome: Annotated[str | None, typer.Option(help="Only this outcome (ok, denied, error, ...).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_out: JsonOpt = False,
) -> None:
    """List audit events, newest first."""
    db = _db()
    with db.sessions() as session:
        rows, total = list_events(
            session, offset=offset, limit=limit, actor=actor, action=action, record=record, outcome=outcome
        )
        events = [e.as_dict() for e in rows]
    filters = {"actor": actor, "action": action, "record": record, "outcome": outcome}
    cli_audit(db, "audit.view", detail={k: v for k, v in filters.items() if v} | {"count": len(events)})
    if json_out:
        emit_json({"items": events, "total": total})
        return
    table = Table("id", "at", "actor", "action", "records", "outcome", "from")
    for e in events:
        records = ", ".join(e["records"][:5]) + (" ..." if len(e["records"]) > 5 else "")
        table.add_row(
            str(e["id"]), e["at"][:19], e["actor"] or "-", e["action"], records, e["outcome"], e["source"] or "-"
        )
    console.print(table)
    console.print(f"{len(events)} of {total} event(s)")
