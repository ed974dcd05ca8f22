"""Correct and merge in the browser (SQLite): a report's, a case's and a contact's fields and statuses
corrected from their pages, with the change in the history (before and after where the audit trail
keeps them); possible duplicate reports side by side, merged or dismissed with a rationale; links
instead of raw ids. And the review page: errors at the top with the typed input kept, the lead's,
the case's and the report's statuses each named, a warning when the case is already identified,
every reference face with both records' descriptions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape
from webtest import browser_login, client_login, face_images, insert_lead

from facetrace.gallery.quality_bands import quality_band
from facetrace.store.accounts import User, get_user
from facetrace.store.audit import list_events
from facetrace.store.workflow_models import DuplicateFlag, Report
from facetrace.workflow import PhotoInput, Workflow

PROVENANCE = {"reported_by": "family, by phone", "source": "tracing form", "legal_basis": "consent"}


def _workflow(app: FastAPI) -> Workflow:
    return Workflow(app.state.service.gallery, source="test")


def _user(app: FastAPI, name: str) -> User:
    with app.state.service.db.sessions() as session:
        user: User = get_user(session, name)
        return user


def _report(app: FastAPI, name: str, **fields: Any) -> dict[str, Any]:
    """A report registered through the workflow (no photos unless given), with one contact."""
    contacts = [{"name": f"Mother of {name}", "relation": "mother", "email": "mother@family.example", "language": "uk"}]
    return _workflow(app).reports.create_report(
        _user(app, "ivan"), name=name, contacts=contacts, **{**PROVENANCE, **fields}
    )


def _signed_in(app: FastAPI, name: str) -> tuple[TestClient, str]:
    client = TestClient(app, base_url="http://127.0.0.1")
    return client, client_login(client, name)


def _before(page: str, first: str, second: str) -> bool:
    """Whether ``first`` appears in the page, above ``second``."""
    return -1 < page.find(first) < page.find(second)


@pytest.fixture(scope="module")
def peirsol(web_app: FastAPI) -> dict[str, Any]:
    """Real faces through the real matching: a case, a report with two reference photos (a lead),
    and a second report of the same person (another lead, and a duplicate flag)."""
    wf, ivan, olena = _workflow(web_app), _user(web_app, "ivan"), _user(web_app, "olena")
    images = face_images("Aaron_Peirsol")
    photo = lambda p: PhotoInput(p.name, p.read_bytes())  # noqa: E731
    case = wf.cases.create_case(
        ivan,
        condition="alive",
        found_place="Irpin",
        description="CASE-DESCRIPTION: blue jacket",
        photos=[photo(images[3])],
    )
    first = wf.reports.create_report(
        ivan,
        name="Aaron Peirsol",
        description="REPORT-DESCRIPTION: swimmer, tall",
        photos=[photo(p) for p in images[:2]],
        contacts=[{"name": "Mother Peirsol", "relation": "mother", "email": "mum@family.example"}],
        **PROVENANCE,
    )
    second = wf.reports.create_report(
        olena,
        name="A. Peirsol",
        description="SECOND-DESCRIPTION: reported by a friend",
        photos=[photo(images[2])],
        contacts=[{"name": "Friend Peirsol", "relation": "friend", "email": "friend@family.example"}],
        **PROVENANCE,
    )
    (lead_id,) = first["matching"]["leads"]["created"]
    (flag_id,) = second["matching"]["duplicates_flagged"]
    return {
        "case": case["case"],
        "first": first["report"],
        "second": second["report"],
        "lead": lead_id,
        "flag": flag_id,
    }


# -- corrections ---------------------------------------------------------------------------------
def test_a_report_is_corrected_from_its_page_and_the_history_shows_the_change(web_app: FastAPI) -> None:
    report = _report(web_app, "Hanna Korrekt", consent=True, consent_date="2024-03-02")["report"]
    url = f"/reports/{report['reference']}"
    ivan, csrf = _signed_in(web_app, "ivan")
    page = ivan.get(url).text
    assert 'action="/reports/' + report["reference"] + '/edit"' in page and 'value="Hanna Korrekt"' in page
    # Only what differs from the record is changed; fields not sent are left as they are.
    response = ivan.post(
        f"{url}/edit",
        data={"csrf_token": csrf, "name": "Hanna Korrektova", "status": "closed", "source": PROVENANCE["source"]},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"].endswith("msg=report_updated")
    page = ivan.get(response.headers["location"]).text
    assert 'Report <span class="mono">' in page and "Hanna Korrektova" in page
    history = page[page.index('id="hist-h"') :]
    assert "report changed" in history
    assert re.search(r"status</span>: <del>missing</del> → <ins>closed</ins>", history), history[:3000]
    assert re.search(r"name</span> changed", history)  # a name is personal: the trail keeps only that it changed
    with web_app.state.service.db.sessions() as session:
        (event,), _ = list_events(session, action="report.update", record=f"report:{report['id']}")
    assert event.actor == "ivan" and event.detail["changed"] == ["name", "status"]
    assert "Hanna" not in json.dumps(event.detail)
    # The same form again: nothing to change, nothing audited.
    response = ivan.post(f"{url}/edit", data={"csrf_token": csrf, "name": "Hanna Korrektova"}, follow_redirects=False)
    assert response.headers["location"].endswith("msg=nothing_changed")
    # Refused: the reason at the top of the page, the form open with what was typed.
    response = ivan.post(
        f"{url}/edit",
        data={"csrf_token": csrf, "name": "Hanna K", "date_of_birth": "31/12/1980", "description": "TYPED-KEPT"},
    )
    assert response.status_code == 422
    assert _before(response.text, 'id="correction-error"', 'id="person-h"')
    assert "date of birth &#39;31/12/1980&#39; must be YYYY" in response.text
    assert 'value="31/12/1980"' in response.text and ">TYPED-KEPT</textarea>" in response.text
    assert 'value="Hanna K"' in response.text and '<details class="add" id="edit" open>' in response.text
    # A reviewer reads the report but may not correct it; the form is not even shown.
    petro, petro_csrf = _signed_in(web_app, "petro")
    assert f"{url}/edit" not in petro.get(url).text
    assert petro.post(f"{url}/edit", data={"csrf_token": petro_csrf, "name": "X"}).status_code == 403


def test_a_contact_is_corrected_without_its_details_in_the_trail(web_app: FastAPI) -> None:
    created = _report(web_app, "Contact Korrekt")
    report, (contact,) = created["report"], created["contacts"]
    url = f"/reports/{report['reference']}"
    ivan, csrf = _signed_in(web_app, "ivan")
    form = {"csrf_token": csrf, "name": contact["name"], "relation": "aunt", "email": "new.address@family.example"}
    response = ivan.post(f"{url}/contacts/{contact['id']}", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("msg=contact_updated")
    page = ivan.get(url).text
    assert "new.address@family.example" in page and "mother@family.example" not in page
    history = page[page.index('id="hist-h"') :]
    assert "contact changed" in history
    assert re.search(r"relation</span>: <del>mother</del> → <ins>aunt</ins>", history)
    assert re.search(r"email</span> changed", history)
    with web_app.state.service.db.sessions() as session:
        (event,), _ = list_events(session, action="contact.update", record=f"contact:{contact['id']}")
    assert "family.example" not in json.dumps(event.detail)  # encrypted at rest: never in clear in the trail
    # A bad address: the reason at the top, that contact's form open with the typed address.
    response = ivan.post(f"{url}/contacts/{contact['id']}", data={**form, "email": "not-an-address"})
    assert response.status_code == 422 and _before(response.text, 'id="correction-error"', 'id="person-h"')
    assert f'href="#contact-{contact["id"]}"' in response.text and 'value="not-an-address"' in response.text
    # A contact of another report is not reachable through this report.
    other = _report(web_app, "Other Family")["contacts"][0]
    assert ivan.post(f"{url}/contacts/{other['id']}", data=form).status_code == 404


def test_a_case_is_corrected_from_its_page(web_app: FastAPI) -> None:
    ivan = _user(web_app, "ivan")
    case = _workflow(web_app).cases.create_case(ivan, condition="deceased", found_place="Bucha")["case"]
    url = f"/cases/{case['reference']}"
    olena, csrf = _signed_in(web_app, "olena")
    assert f'action="{url}/edit"' in olena.get(url).text
    form = {"csrf_token": csrf, "found_place": "Irpin", "found_at": "2024-04-11", "status": "closed"}
    response = olena.post(f"{url}/edit", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("msg=case_updated")
    page = olena.get(url).text
    history = page[page.index('id="hist-h"') :]
    assert re.search(r"found place</span>: <del>Bucha</del> → <ins>Irpin</ins>", history)
    assert re.search(r"found at</span>: <del>\(empty\)</del> → <ins>2024-04-11</ins>", history)
    assert re.search(r"status</span>: <del>open</del> → <ins>closed</ins>", history)
    response = olena.post(f"{url}/edit", data={"csrf_token": csrf, "found_at": "yesterday", "found_place": "KEPT"})
    assert response.status_code == 422 and _before(response.text, 'id="correction-error"', 'id="facts-h"')
    assert 'value="yesterday"' in response.text and 'value="KEPT"' in response.text


# -- duplicates side by side ---------------------------------------------------------------------
def test_duplicate_reports_side_by_side_then_merged(web_app: FastAPI, peirsol: dict[str, Any]) -> None:
    first, second, flag = peirsol["first"], peirsol["second"], peirsol["flag"]
    olena, csrf = _signed_in(web_app, "olena")
    page = olena.get(f"/reports/{second['reference']}").text
    assert f'<a href="/reports/{first["reference"]}">{first["reference"]}</a> Aaron Peirsol' in page
    assert f'href="/duplicates/{flag}"' in page and "score 0." in page
    assert not re.search(r"reports \d+ and \d+", page)
    listed = olena.get("/duplicates").text  # the flags still to decide, both reports linked
    assert f'href="/duplicates/{flag}"' in listed and f'href="/reports/{second["reference"]}"' in listed
    assert olena.get("/duplicates?status=nonsense").status_code == 422
    page = olena.get(f"/duplicates/{flag}").text
    for text in ("Aaron Peirsol", "A. Peirsol", "REPORT-DESCRIPTION", "SECOND-DESCRIPTION"):
        assert text in page
    assert "mum@family.example" in page and "friend@family.example" in page
    assert len(re.findall(r'src="/media/faces/\d+', page)) == 3 and 'action="/duplicates/' in page
    # Without a rationale: refused at the top, the choice kept.
    response = olena.post(f"/duplicates/{flag}/merge", data={"csrf_token": csrf, "into": first["reference"]})
    assert response.status_code == 422 and _before(response.text, 'id="duplicate-error"', 'id="cmp-h"')
    assert "rationale is required" in response.text
    assert re.search(rf'value="{re.escape(first["reference"])}" checked', response.text)
    # An intake officer reads the comparison but may not merge.
    ivan, ivan_csrf = _signed_in(web_app, "ivan")
    assert 'action="/duplicates/' not in ivan.get(f"/duplicates/{flag}").text
    refused = ivan.post(f"/duplicates/{flag}/merge", data={"csrf_token": ivan_csrf, "into": first["reference"]})
    assert refused.status_code == 403
    response = olena.post(
        f"/duplicates/{flag}/merge",
        data={"csrf_token": csrf, "into": first["reference"], "rationale": "Same face, same swimmer"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/reports/{first['reference']}?msg=reports_merged"
    with web_app.state.service.db.sessions() as session:
        assert session.get(Report, second["id"]).status == "merged"
        assert session.get(DuplicateFlag, flag).status == "merged"
    page = olena.get(f"/reports/{second['reference']}").text
    assert f'merged into report <a href="/reports/{first["reference"]}">' in page
    assert f"/reports/{second['reference']}/edit" not in page  # a merged report is corrected through the other
    assert f'href="/duplicates/{flag}"' not in olena.get("/duplicates").text
    assert f'href="/duplicates/{flag}"' in olena.get("/duplicates?status=merged").text
    decided = olena.get(f"/duplicates/{flag}").text
    assert "Same face, same swimmer" in decided and 'action="/duplicates/' not in decided


def test_a_duplicate_flag_is_dismissed_from_the_side_by_side_page(web_app: FastAPI) -> None:
    one, two = _report(web_app, "Dismiss One")["report"], _report(web_app, "Dismiss Two")["report"]
    with web_app.state.service.db.session() as session:
        row = DuplicateFlag(report_id=one["id"], other_report_id=two["id"], score=0.91, fpir=0.02, status="open")
        session.add(row)
        session.flush()
        flag = int(row.id)
    petro, csrf = _signed_in(web_app, "petro")
    response = petro.post(f"/duplicates/{flag}/dismiss", data={"csrf_token": csrf, "rationale": "  "})
    assert response.status_code == 422 and _before(response.text, 'id="duplicate-error"', 'id="cmp-h"')
    response = petro.post(
        f"/duplicates/{flag}/dismiss",
        data={"csrf_token": csrf, "rationale": "Different birth years"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = petro.get(response.headers["location"]).text
    assert "different people" in page and "Different birth years" in page and 'action="/duplicates/' not in page
    assert "duplicate flag dismissed" in petro.get(f"/reports/{one['reference']}").text


# -- the review page -----------------------------------------------------------------------------
def test_lead_page_names_each_status_shows_every_reference_face_and_both_descriptions(
    web_app: FastAPI, peirsol: dict[str, Any]
) -> None:
    olena, _ = _signed_in(web_app, "olena")
    case_page = olena.get(f"/cases/{peirsol['case']['reference']}").text
    badge = re.search(r'<h1>Case .*?</h1>\s*<span class="badge status-(\w+)">([^<]+)</span>', case_page, re.S)
    assert badge and badge.groups() == ("under_review", "under review")
    page = olena.get(f"/leads/{peirsol['lead']}").text
    status_line = re.search(r'<p class="statusline">(.*?)</p>', page, re.S)
    assert status_line
    assert '<span id="case-status"><span class="badge status-under_review">under review</span>' in status_line.group(1)
    assert 'id="lead-status">new<' in status_line.group(1) and ">open<" not in status_line.group(1)
    # Every reference face of the report (two photos), the best one included and marked, beside the case face.
    refs = page[page.index('id="reference-faces"') : page.index("</section>", page.index('id="reference-faces"'))]
    assert len(re.findall(r'src="/media/faces/\d+', refs)) == 2
    assert "best match: reference" in refs
    assert "CASE-DESCRIPTION: blue jacket" in page and "REPORT-DESCRIPTION: swimmer, tall" in page
    # The case face (the probe) shows its quality band and what it means, in plain words; the reference faces not.
    service = web_app.state.service
    lead = _workflow(web_app).reviews.get_lead(_user(web_app, "olena"), peirsol["lead"], audited=False)
    probe_side = page[page.index("<h3>Probe:") : page.index("<h3>Candidate:")]
    band = quality_band(lead["case_face"]["quality"], min_quality=service.settings.min_quality)
    assert f'<span class="badge band-{band.name}"' in probe_side and f">{band.label}</span>" in probe_side
    assert f'<p class="band-advice">{escape(band.advice)}</p>' in probe_side
    assert "band-advice" not in page[page.index("<h3>Candidate:") :]
    # The report's leads table links the case by its reference.
    report_page = olena.get(f"/reports/{peirsol['first']['reference']}").text
    case_ref = peirsol["case"]["reference"]
    assert f'<a href="/cases/{case_ref}">{case_ref}</a>' in report_page and "the review threshold" in report_page


def test_review_errors_appear_at_the_top_with_the_rationale_kept(web_app: FastAPI) -> None:
    report = _report(web_app, "Review Errors")["report"]
    case = _workflow(web_app).cases.create_case(_user(web_app, "ivan"), condition="deceased")["case"]
    lead = insert_lead(web_app.state.service.db, case["id"], report["id"])
    olena, csrf = _signed_in(web_app, "olena")
    response = olena.post(
        f"/leads/{lead}/review",
        data={"csrf_token": csrf, "decision": "confirm", "rationale": "Same scar"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    # Blank rationale: refused, the reason above the faces, the decision kept.
    response = olena.post(f"/leads/{lead}/review", data={"csrf_token": csrf, "decision": "reject", "rationale": " "})
    assert response.status_code == 422 and _before(response.text, 'id="review-error"', 'id="cmp-h"')
    assert "rationale is required" in response.text and 'value="reject" checked' in response.text
    # The same user confirming twice: refused at the top, the typed rationale kept.
    typed = "Checked the ear shape again: RATIONALE-KEPT"
    response = olena.post(f"/leads/{lead}/review", data={"csrf_token": csrf, "decision": "confirm", "rationale": typed})
    assert response.status_code == 409 and _before(response.text, 'id="review-error"', 'id="cmp-h"')
    assert "has already confirmed" in response.text
    assert f">{typed}</textarea>" in response.text and 'value="confirm" required checked' in response.text
    # Evidence refused: also at the top, with what was typed.
    response = olena.post(
        f"/leads/{lead}/evidence", data={"csrf_token": csrf, "kind": "dental", "description": "", "reference": "D-77"}
    )
    assert response.status_code == 422 and _before(response.text, 'id="evidence-error"', 'id="cmp-h"')
    assert 'value="D-77"' in response.text and '<option value="dental" selected>' in response.text


def test_a_lead_of_an_identified_case_warns(web_app: FastAPI) -> None:
    wf = _workflow(web_app)
    ivan, olena, petro = (_user(web_app, n) for n in ("ivan", "olena", "petro"))
    found, other = _report(web_app, "Identified One")["report"], _report(web_app, "Other Candidate")["report"]
    case = wf.cases.create_case(ivan, condition="deceased")["case"]
    lead_found = insert_lead(web_app.state.service.db, case["id"], found["id"])
    lead_other = insert_lead(web_app.state.service.db, case["id"], other["id"])
    wf.reviews.add_evidence(olena, lead_found, kind="documents", description="Passport")
    wf.reviews.review_lead(olena, lead_found, decision="confirm", rationale="Same person")
    ident = wf.reviews.review_lead(petro, lead_found, decision="confirm", rationale="Agree")["identification"]
    client, _ = _signed_in(web_app, "maria")
    page = client.get(f"/leads/{lead_other}").text
    warning = re.search(r'<div class="warning" role="note" id="identified-warning">(.*?)</div>', page, re.S)
    assert warning and f'href="/identifications/{ident["id"]}"' in warning.group(1)
    assert f'<a href="/reports/{found["reference"]}">{found["reference"]}</a>' in warning.group(1)
    assert 'id="identified-warning"' not in client.get(f"/leads/{lead_found}").text


# -- in a real browser ---------------------------------------------------------------------------
def test_a_report_field_corrected_in_the_browser_shows_in_the_history(
    web_app: FastAPI, web_server: str, page: Any
) -> None:
    report = _report(web_app, "Browser Korrekt")["report"]
    browser_login(page, web_server, "ivan")
    page.goto(f"{web_server}/reports/{report['reference']}")
    page.click("#edit summary")
    page.fill("#e_legal_basis", "court order 12/2024")
    page.select_option("#e_status", "located_alive")
    page.click("#edit-form button[type=submit]")
    page.wait_for_url(re.compile(r".*msg=report_updated$"))
    assert "The report is corrected" in page.inner_text("[role=status]")
    history = page.inner_text("#hist-h + table")
    assert "report changed" in history
    assert "legal basis: consent → court order 12/2024" in history
    assert "status: missing → located alive" in history
