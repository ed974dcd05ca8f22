"""First run in the browser: a real ``facetrace serve`` on an install with no account prints a one-time
setup link as the last line of its start-up output; the sign-in page says where to find it; the link
creates the first admin, signs them in, and works once."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from facetrace.config import get_settings
from facetrace.errors import ConflictError, PermissionDenied
from facetrace.server import open_service
from facetrace.store.audit import list_events
from facetrace.usecases.setup import create_first_admin, needs_setup, open_setup, setup_token_valid

REPO = Path(__file__).parents[2]
PASSWORD = "a long first password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def fresh_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real server over an empty data home: (its base URL, its stderr lines so far, growing)."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FACETRACE_")},
        "FACETRACE_HOME": str(tmp_path / "home"),
        "FACETRACE_ANALYSIS_PROCESSES": "1",
    }
    command = [sys.executable, "-m", "facetrace.cli.main", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []

    def read() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}", lines
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def _setup_line(lines: list[str]) -> str:
    deadline = time.monotonic() + 90
    while not any("/setup?token=" in line for line in lines):
        assert time.monotonic() < deadline, "no setup link printed:\n" + "\n".join(lines)
        time.sleep(0.1)
    time.sleep(0.5)  # anything printed right after it would show now
    return lines[-1]


def test_first_run_creates_the_first_admin_in_the_browser(fresh_server: tuple[str, list[str]]) -> None:
    base, lines = fresh_server
    last = _setup_line(lines)
    assert "/setup?token=" in last, "the setup link is the last line of the start-up output:\n" + "\n".join(lines)
    assert any("Uvicorn running" in line or "startup complete" in line for line in lines[:-1])
    link = re.search(r"(http://\S+/setup\?token=\S+)", last)
    assert link and link.group(1).startswith(base)
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as browser:
        login = browser.get("/login")
        assert "First run: no account exists yet" in login.text and "last line of its start-up output" in login.text
        assert browser.get("/setup?token=not-the-token").status_code == 403
        form = browser.get(link.group(1))
        assert form.status_code == 200 and "create the first admin" in form.text
        token = link.group(1).split("token=", 1)[1]
        fields = {"token": token, "username": "Amina", "display_name": "Amina K.", "password": PASSWORD}
        differ = browser.post("/setup", data={**fields, "password_again": "something else entirely"})
        assert differ.status_code == 422 and "The two passwords differ" in differ.text
        assert 'value="Amina"' in differ.text  # what was typed is kept
        weak = browser.post("/setup", data={**fields, "password": "short", "password_again": "short"})
        assert weak.status_code == 422
        created = browser.post("/setup", data={**fields, "password_again": PASSWORD})
        assert created.status_code == 303 and created.headers["location"].startswith("/")
        dashboard = browser.get("/")
        assert dashboard.status_code == 200 and "Amina K." in dashboard.text
        me = browser.get("/api/v1/auth/me").json()
        assert me["user"]["username"] == "amina" and me["user"]["roles"] == ["admin"]
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as stranger:
        again = stranger.post("/setup", data={**fields, "username": "mallory", "password_again": PASSWORD})
        assert again.status_code == 409 and "The first admin exists already" in again.text  # it worked once
        assert "First run" not in stranger.get("/login").text
        refused = stranger.post("/api/v1/auth/login", json={"username": "mallory", "password": PASSWORD})
        assert refused.status_code == 401


def test_setup_token_is_replaced_at_each_start_and_consumed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL"):
        monkeypatch.delenv(name, raising=False)
    service = open_service(get_settings(home=tmp_path / "home", workers=1))
    try:
        assert needs_setup(service)
        first = open_setup(service)
        second = open_setup(service)  # a restart
        assert first and second and first != second
        assert not setup_token_valid(service, first) and setup_token_valid(service, second)
        with pytest.raises(PermissionDenied):
            create_first_admin(service, first, username="old", password=PASSWORD, source="test")
        create_first_admin(service, second, username="admin1", password=PASSWORD, source="test")
        assert not needs_setup(service) and not setup_token_valid(service, second)
        with pytest.raises(PermissionDenied):
            create_first_admin(service, second, username="admin2", password=PASSWORD, source="test")
        assert open_setup(service) is None  # users exist: no link
        with service.db.sessions() as session:
            events, _ = list_events(session, action="user.create")
        assert [(e.actor, e.detail["first_run"], e.detail["roles"]) for e in events] == [("setup", True, ["admin"])]
    finally:
        service.close()


def test_the_first_admin_is_created_once_even_with_a_valid_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user created meanwhile (e.g. ``facetrace user add`` on the server) closes the setup."""
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL"):
        monkeypatch.delenv(name, raising=False)
    service = open_service(get_settings(home=tmp_path / "home", workers=1))
    try:
        token = open_setup(service)
        assert token
        create_first_admin(service, token, username="first", password=PASSWORD, source="test")
        with pytest.raises((ConflictError, PermissionDenied)):
            create_first_admin(service, token, username="second", password=PASSWORD, source="test")
    finally:
        service.close()
