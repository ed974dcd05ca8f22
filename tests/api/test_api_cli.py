"""``facetrace user ...`` on SQLite and PostgreSQL: bootstrap accounts from the shell."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from apitest import make_settings
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrace.cli.main import app as cli
from facetrace.cli.main import run
from facetrace.errors import ConflictError
from facetrace.server import create_app


def test_user_commands(database_url: str, tmp_path: Path) -> None:
    env = {"FACETRACE_HOME": str(tmp_path / "home"), "FACETRACE_DATABASE_URL": database_url}
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> object:
        return runner.invoke(cli, list(args), env=env, input=stdin)

    added = invoke(
        "user",
        "add",
        "Grace",
        "--role",
        "examiner",
        "--role",
        "reviewer",
        "--password-stdin",
        "--json",
        stdin="a long enough password\n",
    )
    assert added.exit_code == 0, added.output  # type: ignore[attr-defined]
    assert json.loads(added.output)["roles"] == ["examiner", "reviewer"]  # type: ignore[attr-defined]
    dup = invoke("user", "add", "grace", "--role", "admin", "--password-stdin", stdin="another long password\n")
    assert isinstance(dup.exception, ConflictError)  # type: ignore[attr-defined]
    listed = json.loads(invoke("user", "list", "--json").output)  # type: ignore[attr-defined]
    assert [(u["username"], u["disabled"]) for u in listed] == [("grace", False)]
    token_out = invoke("user", "token", "grace", "--name", "ci", "--days", "1", "--json")
    token = json.loads(token_out.output)["token"]  # type: ignore[attr-defined]
    roles = invoke("user", "roles", "grace", "--role", "examiner", "--json")
    assert json.loads(roles.output)["roles"] == ["examiner"]  # type: ignore[attr-defined]
    # Taking a role away revoked the token issued under the wider authority: a new one is needed.
    renewed = json.loads(invoke("user", "token", "grace", "--name", "ci2", "--days", "1", "--json").output)  # type: ignore[attr-defined]

    server = create_app(make_settings(tmp_path / "home", database_url))
    with TestClient(server, base_url="https://testserver") as client:
        assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        headers = {"Authorization": f"Bearer {renewed['token']}"}
        me = client.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200 and me.json()["user"]["roles"] == ["examiner"]
        login = client.post("/api/v1/auth/login", json={"username": "grace", "password": "a long enough password"})
        assert login.status_code == 200
        assert invoke("user", "disable", "grace").exit_code == 0  # type: ignore[attr-defined]
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 401  # token dead at once
        assert client.get("/api/v1/auth/me").status_code == 401  # and the login session too
        actions = [(e["action"], e["actor"][:4]) for e in _events(server)]
    assert actions[:5] == [
        ("user.create", "cli:"),
        ("token.create", "cli:"),
        ("user.roles", "cli:"),
        ("token.create", "cli:"),
        ("login", "grac"),
    ]
    assert actions[-1] == ("user.update", "cli:")


def _events(server: object) -> list[dict[str, object]]:
    from facetrace.store.audit import list_events

    with server.state.service.db.sessions() as session:  # type: ignore[attr-defined]
        rows, _ = list_events(session, limit=100, newest_first=False)
        return [e.as_dict() for e in rows]


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    """Run the ``facetrace`` entry point in this process; return its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["facetrace", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        run()
        code = 0
    except SystemExit as stopped:
        code = int(stopped.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_add_errors_are_one_line(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(
        monkeypatch, capsys, "user", "add", "hal", "--role", "admin", "--password-stdin", stdin="short\n"
    )
    assert code == 1 and err.strip() == "error: the password must have at least 10 characters"
    code, _, err = run_main(monkeypatch, capsys, "user", "add", "hal", "--role", "root", "--password-stdin")
    assert code == 1 and "unknown role(s) root" in err and "Traceback" not in err
    code, _, err = run_main(monkeypatch, capsys, "user", "token", "nobody")
    assert code == 1 and err.strip() == "error: no user 'nobody'"
