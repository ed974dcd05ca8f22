"""Reconciliation beyond the face on the pages: describing records with select lists, the
exclusion explained, marks with photos, a marks-only lead without faces, the search by marks,
reopening a rejected lead, a hand-made body location refused in words, and an identification's level
with an admin's confirmation by exception."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webtest import PASSWORD, browser_login, client_login, face_images

from facetrace.store.accounts import User, create_user, get_user
from facetrace.workflow import Workflow

PROVENANCE = {"reported_by": "family", "source": "form", "legal_basis": "consent"}
OVERFLOW = "() => document.documentElement.scrollWidth <= window.innerWidth + 1"


def _wf(app: FastAPI) -> Workflow:
    return Workflow(app.state.service.gallery, source="test")


def _user(app: FastAPI, name: str) -> User:
    with app.state.service.db.sessions() as session:
        user: User = get_user(session, name)
        return user


def _client(app: FastAPI, name: str) -> tuple[TestClient, str]:
    client = TestClient(app, base_url="http://127.0.0.1")
    return client, client_login(client, name)


@pytest.fixture(scope="module")
def marks_world(web_app: FastAPI) -> dict[str, Any]:
    """A report with a tattoo (no face) and a case without a face with the same tattoo: a marks lead."""
    wf, ivan, olena = _wf(web_app), _user(web_app, "ivan"), _user(web_app, "olena")
    report = wf.reports.create_report(ivan, name="Marta Anchor", **PROVENANCE)["report"]
    wf.reconciliation.add_mark(
        ivan, "report", report["reference"], {"type": "tattoo", "region": "forearm", "side": "left", "keywords": "МАМА"}
    )
    case = wf.cases.create_case(ivan, condition="deceased")["case"]
    added = wf.reconciliation.add_mark(
        olena, "case", case["reference"], {"type": "tattoo", "region": "forearm", "side": "left", "keywords": "mama"}
    )
    (lead_id,) = added["matching"]["leads"]["created"]
    return {"report": report, "case": case, "lead_id": lead_id}


def test_describe_records_with_select_lists_and_see_the_exclusion(web_app: FastAPI) -> None:
    wf, ivan = _wf(web_app), _user(web_app, "ivan")
    report = wf.reports.create_report(ivan, name="Olha Described", **PROVENANCE)["report"]
    case = wf.cases.create_case(ivan, condition="deceased")["case"]
    client, csrf = _client(web_app, "olena")
    page = client.get(f"/reports/{report['reference']}").text
    assert '<select id="d_sex" name="sex">' in page and '<option value="female">female</option>' in page
    sent = client.post(
        f"/reports/{report['reference']}/descriptors",
        data={"csrf_token": csrf, "sex": "female", "height": "158", "hair_colour": "brown"},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text[-800:]
    page = client.get(sent.headers["location"]).text
    assert "158 cm" in page and "The description is saved" in page
    sent = client.post(
        f"/cases/{case['reference']}/descriptors",
        data={"csrf_token": csrf, "sex": "male", "age_min": "30", "age_max": "50"},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text[-800:]
    kind = client.post(
        f"/cases/{case['reference']}/kind", data={"csrf_token": csrf, "kind": "detained"}, follow_redirects=False
    )
    assert kind.status_code == 303, kind.text[-800:]
    page = client.get(f"/cases/{case['reference']}").text
    exclusions = page[page.index('id="exclusions-h"') :]
    assert f">{report['reference']}</a>: sex: the report says female, the case says male" in exclusions
    assert "Detained" in page and "30–50 years" in page
    widened = client.post(f"/cases/{case['reference']}/widen", data={"csrf_token": csrf}, follow_redirects=False)
    assert widened.status_code == 303 and "msg=widened_" in widened.headers["location"]
    assert "All reports were searched, exclusions ignored" in client.get(widened.headers["location"]).text


def test_a_mark_with_a_photo_and_a_hand_made_location_refused(web_app: FastAPI) -> None:
    case = _wf(web_app).cases.create_case(_user(web_app, "ivan"), condition="deceased")["case"]
    client, csrf = _client(web_app, "ivan")
    jpeg = face_images("Bill_Paxton")[0]
    sent = client.post(
        f"/cases/{case['reference']}/marks",
        data={"csrf_token": csrf, "type": "tattoo", "region": "upper_arm", "side": "right", "keywords": "rose"},
        files={"mark_photos": (jpeg.name, jpeg.read_bytes(), "image/jpeg")},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text[-800:]
    page = client.get(f"/cases/{case['reference']}").text
    assert "right upper arm" in page and "Keywords: rose" in page
    (image_id,) = re.findall(r'class="mark-photo" src="/media/images/(\d+)"', page)
    photo = client.get(f"/media/images/{image_id}")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    bad = client.post(
        f"/cases/{case['reference']}/marks",
        data={"csrf_token": csrf, "type": "tattoo", "region": "tail", "keywords": "x"},
    )
    assert bad.status_code == 422
    assert "mark region: &#39;tail&#39; is not one of" in bad.text and "Traceback" not in bad.text
    assert 'role="alert"' in bad.text


def test_a_marks_lead_page_has_no_faces_and_says_its_basis(web_app: FastAPI, marks_world: dict[str, Any]) -> None:
    client, _ = _client(web_app, "olena")
    page = client.get(f"/leads/{marks_world['lead_id']}")
    assert page.status_code == 200, page.text[-800:]
    html = page.text
    assert "Marks and description only — not a face match" in html
    assert "data-zoom" not in html and "/media/faces/" not in html
    assert 'id="agreement-table"' in html and "Shared words: МАМА" in html
    listing = client.get("/leads").text
    assert "Marks and description only" in listing
    pdf = client.get(f"/cases/{marks_world['case']['reference']}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_the_marks_search_finds_the_report_first(web_app: FastAPI, marks_world: dict[str, Any]) -> None:
    client, csrf = _client(web_app, "ivan")
    assert 'href="/search/marks"' in client.get("/").text
    found = client.post(
        "/search/marks",
        data={
            "csrf_token": csrf,
            "target": "reports",
            "mark_type": "tattoo",
            "mark_region": "forearm",
            "mark_side": "left",
            "mark_keywords": "mama",
        },
    )
    assert found.status_code == 200, found.text[-800:]
    first = re.search(r'<tr data-rank="1">.*?</tr>', found.text, re.S)
    assert first and f">{marks_world['report']['reference']}</a>" in first.group(0)
    empty = client.post("/search/marks", data={"csrf_token": csrf, "target": "reports"})
    assert empty.status_code == 422 and "at least one descriptor or one mark" in empty.text


def test_reopen_a_rejected_lead(web_app: FastAPI) -> None:
    wf = _wf(web_app)
    ivan, olena, petro = (_user(web_app, n) for n in ("ivan", "olena", "petro"))
    report = wf.reports.create_report(ivan, name="Reopened Person", **PROVENANCE)["report"]
    wf.reconciliation.add_mark(ivan, "report", report["reference"], {"type": "scar", "region": "chin"})
    case = wf.cases.create_case(ivan, condition="deceased")["case"]
    added = wf.reconciliation.add_mark(olena, "case", case["reference"], {"type": "scar", "region": "chin"})
    (lead_id,) = added["matching"]["leads"]["created"] or [None]
    assert lead_id is not None
    wf.reviews.review_lead(olena, lead_id, decision="reject", rationale="Scar too old")
    wf.reviews.review_lead(petro, lead_id, decision="reject", rationale="Agree: different scar")
    client, csrf = _client(web_app, "petro")
    page = client.get(f"/reports/{report['reference']}").text
    rejected = page[page.index('id="rejected-h"') :]
    assert "Scar too old" in rejected and "Rejected by <strong>olena</strong>" in rejected
    sent = client.post(
        f"/leads/{lead_id}/reopen",
        data={"csrf_token": csrf, "rationale": "Dental chart arrived", "next": f"/reports/{report['reference']}"},
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"].startswith(f"/reports/{report['reference']}")
    assert wf.reviews.get_lead(petro, lead_id)["status"] == "open"


def test_a_preliminary_identification_confirmed_by_exception(web_app: FastAPI, marks_world: dict[str, Any]) -> None:
    wf, olena = _wf(web_app), _user(web_app, "olena")
    with web_app.state.service.db.session() as session:
        create_user(session, "ada", PASSWORD, ["admin", "reviewer"], display_name="Ada")
    lead_id = marks_world["lead_id"]
    wf.reviews.add_evidence(olena, lead_id, kind="documents", description="Passport in the pocket")
    wf.reviews.review_lead(olena, lead_id, decision="confirm", rationale="Same tattoo")
    client, csrf = _client(web_app, "petro")
    done = client.post(
        f"/leads/{lead_id}/review",
        data={"csrf_token": csrf, "decision": "confirm", "rationale": "Agree"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "msg=identification_preliminary_held" in done.headers["location"]
    page = client.get(done.headers["location"]).text
    assert "PRELIMINARY" in page and "Preliminary" in page and "Confirm by exception" not in page
    ident_id = int(done.headers["location"].split("/")[2].split("?")[0])
    assert "Preliminary" in client.get("/identifications").text
    admin, admin_csrf = _client(web_app, "ada")
    assert 'id="exception-form"' in admin.get(f"/identifications/{ident_id}").text
    sent = admin.post(
        f"/identifications/{ident_id}/confirm",
        data={"csrf_token": admin_csrf, "rationale": "No relative left to give DNA"},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text[-800:]
    page = admin.get(sent.headers["location"]).text
    assert "Confirmed" in page and "No relative left to give DNA" in page


def test_the_forms_in_a_browser_and_at_phone_width(
    web_server: str, web_app: FastAPI, page: Any, marks_world: dict[str, Any]
) -> None:
    report = _wf(web_app).reports.create_report(_user(web_app, "ivan"), name="Browser Person", **PROVENANCE)["report"]
    browser_login(page, web_server, "ivan")
    page.goto(f"{web_server}/reports/{report['reference']}")
    page.click("#description summary")
    page.select_option("#d_sex", "female")
    page.select_option("#d_eye_colour", "blue")
    page.fill("#d_height", "171")
    page.click("#descriptors-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=described.*"))
    assert "171 cm" in page.inner_text("#descriptors") and "blue" in page.inner_text("#descriptors")
    paths = [
        f"/reports/{report['reference']}",
        f"/cases/{marks_world['case']['reference']}",
        f"/leads/{marks_world['lead_id']}",
        "/search/marks",
    ]
    browser_login(page, web_server, "olena")
    page.set_viewport_size({"width": 390, "height": 844})
    for path in paths:
        page.goto(f"{web_server}{path}")
        assert page.evaluate(OVERFLOW), path
