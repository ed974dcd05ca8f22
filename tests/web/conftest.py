"""Fixtures of the web UI tests: a server over a fresh data home with one user per role, a
real SMTP server on loopback (aiosmtpd), and headless Chromium (Debian's, through Playwright).

- ``web_smtp`` (module): an :class:`webtest.Inbox` served by aiosmtpd on 127.0.0.1.
- ``web_app`` (module): the application (``create_app``) over a fresh data home (SQLite), with
  the users of :data:`webtest.USERS` (password :data:`webtest.PASSWORD`), mailing to ``web_smtp``.
- ``web_server`` (module): ``web_app`` served by uvicorn in a thread; its base URL.
- ``client``: a TestClient of ``web_app`` on http://127.0.0.1 (cookies are per test).
- ``browser`` (module): headless Chromium; skipped when /usr/bin/chromium or Playwright is missing.
- ``page``: a fresh browser context and page at 1280x800; fails the test if a dialog (such as
  an injected ``alert``) opens without the test expecting it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webtest import PASSWORD, USERS, Inbox, free_port, serve

from facetrace.config import get_settings
from facetrace.server import create_app
from facetrace.store.accounts import create_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def web_smtp() -> Iterator[Inbox]:
    """A real SMTP server on 127.0.0.1 and a free port."""
    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname=inbox.host, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def web_app(tmp_path_factory: pytest.TempPathFactory, web_smtp: Inbox) -> Iterator[FastAPI]:
    """The application over a fresh data home, with one user per role."""
    home = tmp_path_factory.mktemp("web") / "home"
    settings = get_settings(
        home=home,
        database_url=None,
        vector_url=None,
        calibration_path=None,
        workers=1,
        analysis_processes=1,  # analyse in the server process: no worker pool to start in tests
        smtp_host=web_smtp.host,
        smtp_port=web_smtp.port,
        smtp_tls="none",
        smtp_user=None,
        smtp_sender="Identification team <notify@ident.example.org>",
        smtp_timeout=10.0,
        organisation_name="Tracing Service Kyiv",
        organisation_contact="tracing@ident.example.org",
    )
    app = create_app(settings)
    with app.state.service.db.session() as session:
        for name, roles in USERS.items():
            create_user(session, name, PASSWORD, roles, display_name=name.title())
    yield app
    app.state.service.close()


@pytest.fixture(scope="module")
def web_server(web_app: FastAPI) -> Iterator[str]:
    """``web_app`` served by uvicorn on 127.0.0.1 (a thread); its base URL."""
    with serve(web_app) as base:
        yield base


@pytest.fixture()
def client(web_app: FastAPI) -> Iterator[TestClient]:
    """A TestClient of ``web_app`` (plain http on loopback, as in development)."""
    with TestClient(web_app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page at 1280x800."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    page.dialogs = dialogs  # tests that expect a confirm() check and clear this list
    yield page
    context.close()
