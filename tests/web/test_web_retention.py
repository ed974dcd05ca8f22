"""The web forms set a report's and a case's retention date, and their pages show it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from webtest import client_login


def test_forms_set_and_pages_show_the_retention_date(client: TestClient) -> None:
    csrf = client_login(client, "ivan")
    assert 'name="retain_until"' in client.get("/reports/new").text
    assert 'name="retain_until"' in client.get("/cases/new").text
    report = {"name": "Kept Until", "reported_by": "x", "source": "form", "legal_basis": "consent"}
    response = client.post(
        "/reports/new", data={**report, "retain_until": "2031-03-04", "csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert "2031-03-04" in client.get(response.headers["location"]).text
    response = client.post(
        "/cases/new",
        data={"condition": "alive", "retain_until": "2032-05-06", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert "2032-05-06" in client.get(response.headers["location"]).text
    bad = client.post("/cases/new", data={"condition": "alive", "retain_until": "someday", "csrf_token": csrf})
    assert bad.status_code == 422 and "not a date" in bad.text
