"""Searching reports, cases and persons by name across scripts and spellings through the API, on
SQLite and PostgreSQL, with encryption at rest off and on: "melnik", "Мельник", "MELNIK" and
"Mel'nyk" all find "Olena Melnyk", exact names first, then close spellings; references still match."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apitest import Api, start_api
from sqlalchemy import text

from facetrace.crypto import encode_key, generate_key

P = "/api/v1"


@pytest.fixture(params=["plain", "encrypted"])
def names_api(request: pytest.FixtureRequest, backend: str, database_url: str, tmp_path: Path) -> Iterator[Api]:
    """A fresh server on ``backend``, with or without a key (encryption at rest)."""
    key = {"key": encode_key(generate_key())} if request.param == "encrypted" else {}
    yield from start_api(tmp_path / "home", database_url, backend, **key)


def _create(api: Api, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "reported_by": "a neighbour", "source": "hotline", "legal_basis": "consent", **extra}
    response = api.client.post(f"{P}/reports", json=body, headers=api.as_("intake"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _search(api: Api, path: str, q: str, **params: Any) -> list[tuple[str, str]]:
    response = api.client.get(f"{P}/{path}", params={"q": q, **params}, headers=api.as_("examiner"))
    assert response.status_code == 200, response.text
    return [(r["reference"], r["name_match"]["tier"]) for r in response.json()["items"]]


def test_report_search_matches_names_across_scripts_and_spellings(names_api: Api) -> None:
    api = names_api
    olena = _create(api, "Olena Melnyk", contacts=[{"name": "Iryna Melnyk", "relation": "sister", "phone": "+380"}])
    petro = _create(api, "Петро Мельник")["report"]["reference"]
    _create(api, "Ivan Melnychenko")
    close = _create(api, "Taras Melnic")["report"]["reference"]
    kovalenko = _create(api, "Oksana Kovalenko")["report"]["reference"]
    ref = olena["report"]["reference"]
    expected = [(petro, "exact"), (ref, "exact"), (close, "close")]  # exact (newest first), then close
    for q in ("melnik", "Мельник", "MELNIK", "Mel'nyk", " Мельнік "):
        assert _search(api, "reports", q) == expected, q
    assert _search(api, "reports", "Олена Мельник") == [(ref, "exact")]
    assert _search(api, "reports", "melnik", limit=1, offset=1) == [(ref, "exact")]
    assert _search(api, "reports", "melnik", status="closed") == []
    assert _search(api, "reports", kovalenko) == [(kovalenko, "contains")]  # a reference, as before
    assert _search(api, "reports", "zzz") == []
    # The duplicate check by name: a new report shows the reports registered before under its name.
    again = _create(api, "MELNYK Olena")
    assert [(s["reference"], s["name_match"]["tier"]) for s in again["similar_names"]] == [(ref, "exact")]
    shown = api.client.get(f"{P}/reports/{ref}", headers=api.as_("examiner")).json()
    assert [s["reference"] for s in shown["similar_names"]] == [again["report"]["reference"]]
    # Names are stored in clear (so are their keys); contact names stay encrypted when a key is set.
    with api.service.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT name_key FROM reports WHERE reference = :r"), {"r": ref}).scalar()
        contact = conn.execute(text("SELECT name FROM contacts")).scalar()
    assert stored == "olena melnik"
    assert (contact == "Iryna Melnyk") is (not api.service.settings.encrypted)


def test_a_renamed_report_is_found_by_its_new_name_only(names_api: Api) -> None:
    api = names_api
    ref = _create(api, "Olena Melnyk")["report"]["reference"]
    response = api.client.patch(f"{P}/reports/{ref}", json={"name": "Олена Шевченко"}, headers=api.as_("intake"))
    assert response.status_code == 200, response.text
    assert _search(api, "reports", "Schewtschenko") == [(ref, "exact")]
    assert _search(api, "reports", "melnyk") == []


def test_case_and_person_lists_search_by_name(names_api: Api) -> None:
    api = names_api
    case = api.client.post(f"{P}/cases", json={"condition": "alive"}, headers=api.as_("intake")).json()["case"]
    assert _search(api, "cases", case["reference"]) == [(case["reference"], "contains")]
    assert _search(api, "cases", "melnik") == []  # no lead names the case
    response = api.client.get(f"{P}/cases", params={"q": "x" * 201}, headers=api.as_("examiner"))
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_gallery_persons_are_searched_by_name_in_any_script(gallery_api: Api) -> None:
    def persons(q: str) -> list[tuple[str, str]]:
        response = gallery_api.client.get(f"{P}/persons", params={"q": q}, headers=gallery_api.as_("examiner"))
        assert response.status_code == 200, response.text
        return [(p["external_id"], p["name_match"]["tier"]) for p in response.json()["items"]]

    assert persons("Аарон Пейрсол") == [("Aaron_Peirsol", "exact")]
    assert persons("PEIRSOLL") == [("Aaron_Peirsol", "exact")]
    assert persons("Persol") == [("Aaron_Peirsol", "close")]
    assert persons("Elton_J") == [("Elton_John", "contains")]  # part of an external id, as before
    assert persons("Мельник") == []
