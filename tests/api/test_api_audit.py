"""The audit trail over the API and the CLI: paging, filters, and tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apitest import Api, face_images
from sqlalchemy import text
from test_api_cli import run_main

P = "/api/v1"


def _touch_records(api: Api) -> None:
    """Produce a few audit events: failed and successful logins, a denied request, person reads."""
    api.client.post(f"{P}/auth/login", json={"username": "intake", "password": "wrong password"})
    api.client.get(f"{P}/users", headers=api.as_("intake"))  # denied
    api.client.get(f"{P}/persons", headers=api.as_("examiner"))
    api.client.get(f"{P}/persons/nobody", headers=api.as_("reviewer"))  # not found


def test_auditor_pages_and_filters_the_trail(api: Api) -> None:
    _touch_records(api)
    auditor = api.as_("auditor")
    page = api.client.get(f"{P}/audit", params={"limit": 2}, headers=auditor).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert page["items"][0]["id"] > page["items"][1]["id"]  # newest first
    oldest = api.client.get(f"{P}/audit", params={"oldest_first": True, "limit": 1}, headers=auditor).json()
    assert oldest["items"][0]["action"] == "login" and oldest["items"][0]["outcome"] == "denied"
    denied = api.client.get(f"{P}/audit", params={"outcome": "denied"}, headers=auditor).json()
    assert {e["action"] for e in denied["items"]} == {"login", "access.denied"}
    person = api.client.get(f"{P}/audit", params={"action": "person."}, headers=auditor).json()
    assert [(e["action"], e["outcome"]) for e in person["items"]] == [
        ("person.view", "not_found"),
        ("person.list", "ok"),
    ]
    by_actor = api.client.get(f"{P}/audit", params={"actor": "reviewer"}, headers=auditor).json()
    assert [e["action"] for e in by_actor["items"]] == ["person.view"]
    future = api.client.get(f"{P}/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=auditor).json()
    assert future["total"] == 0
    event = page["items"][0]
    assert {"id", "at", "actor", "action", "records", "outcome", "source", "detail", "prev_hash", "hash"} <= set(event)
    # Reading the trail is itself recorded.
    assert api.audit("audit.view")[-1]["actor"] == "auditor"
    bad = api.client.get(f"{P}/audit", params={"since": "last tuesday"}, headers=auditor)
    assert bad.status_code == 422


def test_tampering_is_detected_over_the_api(api: Api) -> None:
    _touch_records(api)
    auditor = api.as_("auditor")
    assert api.client.get(f"{P}/audit/verify", headers=auditor).json() == {"intact": True, "problems": []}
    with api.service.db.session() as session:
        session.execute(text("UPDATE audit_events SET outcome = 'ok' WHERE id = 1"))  # hide the failed login
    report = api.client.get(f"{P}/audit/verify", headers=auditor).json()
    assert report["intact"] is False and report["problems"][0].startswith("event #1:")
    assert "edited" in report["problems"][0]
    with api.service.db.session() as session:
        session.execute(text("DELETE FROM audit_events WHERE id = 3"))
    problems = api.client.get(f"{P}/audit/verify", headers=auditor).json()["problems"]
    assert any(p.startswith("event #4:") and "after event #2" in p for p in problems), problems
    assert api.audit("audit.verify")[-1]["outcome"] == "error"


def test_cli_audit_verify_names_the_edited_and_deleted_events(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _touch_records(api)
    monkeypatch.setenv("FACETRACE_HOME", str(api.service.settings.home))
    monkeypatch.setenv("FACETRACE_DATABASE_URL", api.service.db.url)
    code, out, _ = run_main(monkeypatch, capsys, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["intact"] is True
    with api.service.db.session() as session:
        session.execute(text("UPDATE audit_events SET outcome = 'ok' WHERE id = 4"))  # was not_found
        session.execute(text("DELETE FROM audit_events WHERE id = 2"))
    code, out, _ = run_main(monkeypatch, capsys, "audit", "verify")
    assert code == 1
    assert "TAMPERED: event #4: its content does not match its hash" in out
    assert "TAMPERED: event #3: its link to the previous event is broken" in out
    code, out, _ = run_main(monkeypatch, capsys, "audit", "list", "--json", "--action", "person.")
    assert code == 0 and [e["id"] for e in json.loads(out)["items"]] == [4, 3]


def test_cli_actions_are_audited(api: Api, tmp_path: Path) -> None:
    """The CLI's enroll, search, person show and person delete append events (actor cli:USER, source cli)."""
    from typer.testing import CliRunner

    from facetrace.cli.main import app

    photos = face_images("Cesar_Gaviria")
    folder = tmp_path / "photos" / "Cesar_Gaviria"
    folder.mkdir(parents=True)
    (folder / photos[0].name).write_bytes(photos[0].read_bytes())
    env = {"FACETRACE_HOME": str(api.service.settings.home), "FACETRACE_DATABASE_URL": api.service.db.url}
    runner = CliRunner()
    for args in (
        ["enroll", str(folder.parent), "--source", "ICRC", "--legal-basis", "consent", "--workers", "1", "--json"],
        ["search", str(photos[2]), "--json"],
        ["person", "show", "Cesar_Gaviria", "--json"],
        ["person", "delete", "Cesar_Gaviria", "--yes", "--json"],
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
    events = [e for e in api.audit() if e["source"] == "cli"]
    assert [e["action"] for e in events] == ["person.enroll", "search", "person.view", "person.erase"]
    assert all(e["actor"].startswith("cli:") for e in events)
    assert len({tuple(e["records"]) for e in events}) == 1 and events[0]["records"][0].startswith("person:")
    assert events[0]["detail"]["images_enrolled"] == 1 and events[1]["detail"]["image"] == photos[2].name
