"""Settings edited by admins through the API (issue 15, item 2), on SQLite and PostgreSQL: saved and read
back with their origins, values the environment sets shown read-only, bad input refused with a 4xx, every
change audited without the SMTP password (never shown, stored encrypted when a key is set), and the test
message delivered to a real SMTP server on loopback (aiosmtpd), or its failure told."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from apitest import Api, start_api
from sqlalchemy import text

from facetrace.crypto import generate_key, write_key_file
from facetrace.store.crypto import attach_keyring
from facetrace.store.rotation import rotate

P = "/api/v1"
PASSWORD = "s3cret-smtp-Pa55word"


class Inbox:
    """What the loopback SMTP server received."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1; yields (inbox, port)."""
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture()
def env_api(backend: str, database_url: str, tmp_path: Path) -> Iterator[Api]:
    """A server whose deployment sets the SMTP host and the organisation's name."""
    yield from start_api(
        tmp_path / "home", database_url, backend, smtp_host="mail.example.org", organisation_name="Env Org"
    )


@pytest.fixture()
def key_api(backend: str, database_url: str, tmp_path: Path) -> Iterator[Api]:
    """A server with an encryption key."""
    key = tmp_path / "keys" / "facetrace.key"
    key.parent.mkdir()
    write_key_file(key, generate_key())
    yield from start_api(tmp_path / "home", database_url, backend, key_file=key)


def items(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["key"]: i for i in body["items"]}


def test_settings_are_saved_and_read_back_with_their_origins(api: Api) -> None:
    admin = api.as_("admin")
    first = api.client.get(f"{P}/settings", headers=admin)
    assert first.status_code == 200, first.text
    before = items(first.json())
    assert {i["origin"] for i in before.values()} == {"default"}
    assert not first.json()["notifications_ready"] and "smtp_host" in first.json()["missing_for_notifications"]

    change = {
        "organisation_name": "Tracing Service Kyiv",
        "organisation_contact": "tracing@ident.example.org",
        "organisation_address": "Khreshchatyk 1, Kyiv",
        "smtp_host": "127.0.0.1",
        "smtp_port": 2525,
        "smtp_tls": "starttls",
        "smtp_sender": "Tracing <notify@ident.example.org>",
        "notification_languages": "uk, en,ru",
        "review_fpir": 0.05,
        "min_evidence_items": 2,
        "notification_approvers": "examiner_or_reviewer",
    }
    saved = api.client.patch(f"{P}/settings", json=change, headers=admin)
    assert saved.status_code == 200, saved.text
    again = items(api.client.get(f"{P}/settings", headers=admin).json())
    for key in change:
        assert again[key]["origin"] == "saved", key
    assert again["smtp_port"]["value"] == 2525 and again["review_fpir"]["value"] == 0.05
    assert again["notification_languages"]["value"] == "uk,en,ru"
    assert again["policy_fpir"]["origin"] == "default"
    assert api.client.get(f"{P}/settings", headers=admin).json()["notifications_ready"]

    # An emptied value goes back to its default.
    cleared = items(api.client.patch(f"{P}/settings", json={"smtp_port": None, "smtp_tls": ""}, headers=admin).json())
    assert cleared["smtp_port"] == {**cleared["smtp_port"], "origin": "default", "value": 25}
    assert cleared["smtp_tls"]["origin"] == "default" and cleared["smtp_tls"]["value"] == "none"

    events = api.audit("settings.update")
    assert [e["detail"]["changed"] for e in events] == [sorted(change), ["smtp_port", "smtp_tls"]]
    assert all(e["actor"] == "admin" and e["outcome"] == "ok" for e in events)


def test_bad_input_and_other_roles_are_refused(api: Api) -> None:
    admin = api.as_("admin")
    for body in (
        {"smtp_port": 0},
        {"smtp_sender": "not an address"},
        {"smtp_tls": "ssl3"},
        {"review_fpir": 1.5},
        {"notification_languages": "english!"},
        {"no_such_setting": 1},
    ):
        response = api.client.patch(f"{P}/settings", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert set(response.json()) == {"error"}, response.text
    assert api.audit("settings.update") == []
    for role in ("reviewer", "examiner", "auditor"):
        assert api.client.patch(f"{P}/settings", json={"smtp_port": 26}, headers=api.as_(role)).status_code == 403


def test_values_set_by_the_environment_are_read_only(env_api: Api) -> None:
    admin = env_api.as_("admin")
    shown = items(env_api.client.get(f"{P}/settings", headers=admin).json())
    assert shown["smtp_host"] == {
        **shown["smtp_host"],
        "value": "mail.example.org",
        "origin": "environment",
        "read_only": True,
        "env_var": "FACETRACE_SMTP_HOST",
    }
    assert shown["organisation_name"]["origin"] == "environment" and not shown["smtp_port"]["read_only"]
    refused = env_api.client.patch(f"{P}/settings", json={"smtp_host": "other.example.org"}, headers=admin)
    assert refused.status_code == 409 and "FACETRACE_SMTP_HOST" in refused.json()["error"]["message"]
    after = items(env_api.client.get(f"{P}/settings", headers=admin).json())
    assert after["smtp_host"]["value"] == "mail.example.org"
    page = env_api.client.get("/admin/settings", headers=admin)
    assert page.status_code == 200 and "set by the environment (FACETRACE_SMTP_HOST)" in page.text


def test_the_smtp_password_is_never_shown_and_stored_encrypted(key_api: Api, tmp_path: Path) -> None:
    admin = key_api.as_("admin")
    saved = key_api.client.patch(
        f"{P}/settings", json={"smtp_user": "notify", "smtp_password": PASSWORD}, headers=admin
    )
    assert saved.status_code == 200 and PASSWORD not in saved.text
    shown = key_api.client.get(f"{P}/settings", headers=admin)
    password = items(shown.json())["smtp_password"]
    assert password["value"] is None and password["is_set"] and password["origin"] == "saved"
    assert PASSWORD not in shown.text
    page = key_api.client.get("/admin/settings", headers=admin)
    assert page.status_code == 200 and PASSWORD not in page.text
    assert all(PASSWORD not in str(e) for e in key_api.audit())
    assert key_api.audit("settings.update")[-1]["detail"]["changed"] == ["smtp_password", "smtp_user"]
    with key_api.service.db.engine.connect() as conn:
        stored = [str(v) for (v,) in conn.execute(text("SELECT value FROM settings"))]
    assert len(stored) == 2 and all(v.startswith("fte1:") and PASSWORD not in v for v in stored)

    # Key rotation re-seals the saved settings with the rest; they still read back.
    settings, db = key_api.service.settings, key_api.service.db
    write_key_file(tmp_path / "keys" / "new.key", generate_key())
    newer = settings.model_copy(update={"key_file": tmp_path / "keys" / "new.key"})
    outcome = rotate(
        db, newer.keyring.plus(db.keyring), media_dir=settings.media_dir, index_dir=settings.index_dir, actor="test"
    )
    assert outcome.columns["settings.value"]["resealed"] == 2
    attach_keyring(db.engine, newer.keyring)
    assert items(key_api.client.get(f"{P}/settings", headers=admin).json())["smtp_user"]["value"] == "notify"


def test_the_test_message_arrives_or_its_failure_is_told(api: Api, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    admin = api.as_("admin")
    not_yet = api.client.post(f"{P}/settings/smtp-test", json={"to": "root@ident.example.org"}, headers=admin)
    assert not_yet.status_code == 409 and "smtp server" in not_yet.json()["error"]["message"].lower()

    mail = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_sender": "notify@ident.example.org"}
    assert api.client.patch(f"{P}/settings", json=mail, headers=admin).status_code == 200
    sent = api.client.post(f"{P}/settings/smtp-test", json={"to": "root@ident.example.org"}, headers=admin)
    assert sent.status_code == 200, sent.text
    assert sent.json()["outcome"] == "sent" and sent.json()["smtp_code"] == 250
    (envelope,) = handler.envelopes
    assert envelope.rcpt_tos == ["root@ident.example.org"] and b"test message" in envelope.original_content
    view = api.client.get(f"{P}/settings", headers=admin).json()
    assert view["smtp_tested"] and view["smtp_test"]["ok"]

    closed = free_port()
    assert api.client.patch(f"{P}/settings", json={"smtp_port": closed}, headers=admin).status_code == 200
    assert not api.client.get(f"{P}/settings", headers=admin).json()["smtp_tested"]  # tested with other settings
    failed = api.client.post(f"{P}/settings/smtp-test", json={"to": "root@ident.example.org"}, headers=admin)
    assert failed.status_code == 502, failed.text
    error = failed.json()["error"]
    assert error["code"] == "smtp_test_failed" and f"cannot connect to 127.0.0.1:{closed}" in error["message"]
    assert len(handler.envelopes) == 1
    events = api.audit("settings.smtp_test")
    assert [e["outcome"] for e in events] == ["ok", "error"]
    bad = api.client.post(f"{P}/settings/smtp-test", json={"to": "nobody"}, headers=admin)
    assert bad.status_code == 422
    assert (
        api.client.post(f"{P}/settings/smtp-test", json={"to": "a@b.org"}, headers=api.as_("reviewer")).status_code
        == 403
    )
