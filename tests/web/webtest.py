"""Helpers of the web UI tests: the loopback SMTP inbox, the server in a thread, signing in
with a browser or a TestClient, and dropping files onto a drop zone."""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from facetrace.store.db import Database
from facetrace.store.workflow_models import Lead

REPO = Path(__file__).resolve().parents[2]
FACES = REPO / "tests" / "data" / "faces"
SPECIAL = REPO / "tests" / "data" / "special"
SCREENSHOTS = REPO / "docs" / "screenshots"
PASSWORD = "correct-horse-battery"
# name -> roles; every test server has these users.
USERS = {
    "ivan": ["intake"],
    "olena": ["examiner"],
    "petro": ["reviewer"],
    "maria": ["reviewer"],
    "anna": ["auditor"],
    "root": ["admin"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def face_images(name: str) -> list[Path]:
    """The committed images of identity ``name``, sorted."""
    images = sorted((FACES / name).glob("*.jpg"))
    assert images, f"no images for {name}"
    return images


@dataclass
class Inbox:
    """What the loopback SMTP server (aiosmtpd) received."""

    envelopes: list[Any] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [
            message_from_bytes(e.original_content, policy=default_policy)
            for e in self.envelopes
            if address in e.rcpt_tos
        ]


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="facetrace-web-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def client_login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the web form with a TestClient; return the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token, page.text
    response = client.post(
        "/login",
        data={"username": username, "password": password, "login_csrf": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    dashboard = client.get("/")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', dashboard.text)
    assert csrf and csrf.group(1), dashboard.text
    return csrf.group(1)


def browser_login(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in with the browser (the sign-in form, as a person would)."""
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


DROP_SCRIPT = """([selector, files]) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bin = atob(f.data);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    transfer.items.add(new File([bytes], f.name, {type: f.type}));
  }
  const zone = document.querySelector(selector);
  zone.dispatchEvent(new DragEvent('dragenter', {dataTransfer: transfer, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def drop_files(page: Any, selector: str, paths: list[Path]) -> None:
    """Drop files onto the element ``selector`` as a drag and drop from the desktop would."""
    files = [
        {
            "name": p.name,
            "type": "image/png" if p.suffix == ".png" else "image/jpeg",
            "data": base64.b64encode(p.read_bytes()).decode(),
        }
        for p in paths
    ]
    page.evaluate(DROP_SCRIPT, [selector, files])


def wait_until(page: Any, function: str, timeout: float = 30.0) -> None:
    """Wait until the JavaScript ``function`` (an arrow function) returns true in the page.

    Polled from here with ``page.evaluate``: Playwright's ``wait_for_function`` evaluates its
    predicate with ``eval``, which the pages' Content-Security-Policy rightly forbids.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(function):
        assert time.monotonic() < deadline, f"timed out waiting for {function}"
        time.sleep(0.05)


IMAGES_LOADED = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot of the page into docs/screenshots/NAME.png; return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Chromium under heavy load sometimes answers "Unable to capture screenshot" once: the pictures
    # are documentation, so retry, then fall back to the viewport, and only then give up with a warning.
    for attempt, whole in enumerate((full_page, full_page, False)):
        try:
            page.screenshot(path=str(path), full_page=whole)
            return path
        except Exception as exc:  # playwright's Error
            if attempt == 2:
                warnings.warn(f"screenshot {name} not saved: {exc}", stacklevel=2)
            time.sleep(0.5)
    return path


def insert_lead(
    db: Database,
    case_id: int,
    report_id: int,
    *,
    score: float = 0.95,
    fmr: float = 1e-6,
    fpir: float = 1e-5,
    gallery_size: int = 4,
    case_quality: float = 80.0,
) -> int:
    """Insert a lead directly (what a page shows of it is the point, not the matching); return its id."""
    with db.session() as session:
        lead = Lead(
            case_id=case_id,
            report_id=report_id,
            status="open",
            score=score,
            fmr=fmr,
            fpir=fpir,
            threshold=0.9,
            review_fpir=0.1,
            gallery_size=gallery_size,
            model_id="test",
            case_box=[0, 0, 10, 10],
            report_box=[0, 0, 10, 10],
            case_quality=case_quality,
            report_quality=80.0,
        )
        session.add(lead)
        session.flush()
        return int(lead.id)
