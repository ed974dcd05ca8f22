"""The report and case lists of the web pages search names across scripts and spellings; a report's
page lists the other reports with its name (the duplicate check by name)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from webtest import client_login


def _report(client: TestClient, csrf: str, name: str) -> str:
    response = client.post(
        "/reports/new",
        data={
            "csrf_token": csrf,
            "name": name,
            "reported_by": "a neighbour",
            "source": "hotline",
            "legal_basis": "consent",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return _reference(response.headers["location"])


def _reference(location: str) -> str:
    """Return the record's reference from the redirect to its page (``/reports/REF?msg=...``)."""
    return location.split("?", 1)[0].rsplit("/", 1)[-1]


def _listed(html: str, kind: str) -> list[str]:
    return re.findall(rf'<td><a href="/{kind}/([^"]+)">', html)


def test_report_and_case_lists_find_names_in_any_script(client: TestClient) -> None:
    csrf = client_login(client, "ivan")
    olena = _report(client, csrf, "Olena Melnyk")
    petro = _report(client, csrf, "Петро Мельник")
    close = _report(client, csrf, "Taras Melnic")
    _report(client, csrf, "Oksana Kovalenko")
    for q in ("melnik", "Мельник", "MELNIK"):
        html = client.get("/reports", params={"q": q}).text
        assert _listed(html, "reports") == [petro, olena, close], q
        assert f'value="{q}"' in html  # the search stays in the box
    assert html.count("(close spelling)") == 1
    assert "No reports match." in client.get("/reports", params={"q": "Шевченко"}).text

    page = client.get(f"/reports/{olena}").text
    assert "Other reports with this name" not in page
    again = _report(client, csrf, "Олена Мельник")
    page = client.get(f"/reports/{olena}").text
    assert "Other reports with this name" in page and f'href="/reports/{again}"' in page

    response = client.post("/cases/new", data={"csrf_token": csrf, "condition": "alive"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    case = _reference(response.headers["location"])
    html = client.get("/cases", params={"q": case}).text
    assert 'id="q"' in html and _listed(html, "cases") == [case]
    assert "No cases match." in client.get("/cases", params={"q": "Мельник"}).text
