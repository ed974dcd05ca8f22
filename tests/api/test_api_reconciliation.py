"""Reconciliation beyond the face over the API (SQLite and PostgreSQL): descriptors, marks and their
photos, exclusions, leads from marks alone, search without a face, reopening a lead, and the 422s
that name the field. One server per module and backend; each test makes its own records."""

from __future__ import annotations

import uuid
from typing import Any

from apitest import Api, face_images

P = "/api/v1"
TATTOO = {"type": "tattoo", "region": "forearm", "side": "left", "keywords": ["anchor"]}


def _report(api: Api, name: str = "Reconcile Person") -> str:
    response = api.client.post(
        f"{P}/reports",
        json={"name": name, "reported_by": "sister", "source": "form", "legal_basis": "consent"},
        headers=api.as_("intake"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["report"]["reference"])


def _case(api: Api) -> str:
    response = api.client.post(f"{P}/cases", json={"condition": "deceased"}, headers=api.as_("intake"))
    assert response.status_code == 201, response.text
    return str(response.json()["case"]["reference"])


def _error(response: Any, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}, error
    for word in words:
        assert word in error["message"], (word, error)
    return str(error["message"])


def test_descriptors_set_and_read_back(module_api: Api) -> None:
    api, intake = module_api, module_api.as_("intake")
    report = _report(api)
    body = {"sex": "female", "height": 172, "build": "slight", "hair_colour": "brown", "eye_colour": "blue"}
    response = api.client.put(f"{P}/reports/{report}/descriptors", json=body, headers=intake)
    assert response.status_code == 200, response.text
    assert response.json()["descriptors"]["height_min"] == 172
    assert "leads" in response.json()["matching"]
    facts = api.client.get(f"{P}/reports/{report}/facts", headers=api.as_("reviewer"))
    assert facts.status_code == 200, facts.text
    got = facts.json()["descriptors"]
    assert (got["sex"], got["height_min"], got["height_max"], got["build"]) == ("female", 172, 172, "slight")
    assert got["age_min"] is None and facts.json()["marks"] == []

    case = _case(api)
    response = api.client.put(
        f"{P}/cases/{case}/descriptors", json={"sex": "male", "age_min": 30, "age_max": 40}, headers=intake
    )
    assert response.status_code == 200, response.text
    facts = api.client.get(f"{P}/cases/{case}/facts", headers=intake).json()
    assert (facts["descriptors"]["age_min"], facts["descriptors"]["age_max"]) == (30, 40)
    assert facts["kind"] == "deceased"
    exclusion = [e for e in facts["exclusions"] if e["report"] == report]
    assert exclusion, facts["exclusions"]
    reasons = " ".join(exclusion[0]["reasons"])
    assert "female" in reasons and "male" in reasons.replace("female", ""), reasons


def test_case_kind(module_api: Api) -> None:
    api, intake = module_api, module_api.as_("intake")
    body, part = _case(api), _case(api)
    response = api.client.put(f"{P}/cases/{part}/kind", json={"kind": "body_part", "parent_case": body}, headers=intake)
    assert response.status_code == 200, response.text
    assert response.json() == {"kind": "body_part", "condition": "deceased", "parent_case": body}
    _error(api.client.put(f"{P}/cases/{part}/kind", json={"kind": "ghost"}, headers=intake), 422, "case kind")


def test_bad_input_names_the_field(module_api: Api) -> None:
    api, intake = module_api, module_api.as_("intake")
    report, case = _report(api), _case(api)
    bad_region = {"type": "tattoo", "region": "tail", "side": "left"}
    _error(api.client.post(f"{P}/reports/{report}/marks", json=bad_region, headers=intake), 422, "region")
    _error(api.client.put(f"{P}/reports/{report}/descriptors", json={"height": 900}, headers=intake), 422, "height")
    upside_down = {"age_min": 50, "age_max": 20}
    _error(api.client.put(f"{P}/cases/{case}/descriptors", json=upside_down, headers=intake), 422, "age_min")
    _error(
        api.client.put(f"{P}/reports/{report}/descriptors", json={"shoe_size": 44}, headers=intake), 422, "shoe_size"
    )
    # A report's age follows from its date of birth: no age range on a report.
    _error(api.client.put(f"{P}/reports/{report}/descriptors", json={"age_min": 20}, headers=intake), 422, "age_min")
    _error(api.client.put(f"{P}/reports/{report}/descriptors", json={"sex": "other"}, headers=intake), 422, "sex")
    bad_search = {"target": "reports", "marks": [{"type": "tattoo", "region": "tail"}]}
    _error(api.client.post(f"{P}/facts/search", json=bad_search, headers=intake), 422, "region")
    _error(api.client.post(f"{P}/facts/search", json={"target": "reports"}, headers=intake), 422, "search")
    # Records are written only by intake and examiners.
    refused = api.client.put(f"{P}/reports/{report}/descriptors", json={"sex": "male"}, headers=api.as_("reviewer"))
    _error(refused, 403)


def test_marks_lead_search_and_reopen(module_api: Api) -> None:
    api, intake, examiner = module_api, module_api.as_("intake"), module_api.as_("examiner")
    keyword = f"anchor{uuid.uuid4().hex[:6]}"
    mark = {**TATTOO, "keywords": [keyword, "anchor"], "description": f"an anchor, {keyword}"}
    report = _report(api, "Marked Person")
    added = api.client.post(f"{P}/reports/{report}/marks", json=mark, headers=intake)
    assert added.status_code == 201, added.text
    assert added.json()["mark"]["location"] == "left forearm"

    case = _case(api)
    added = api.client.post(f"{P}/cases/{case}/marks", json=mark, headers=intake)
    assert added.status_code == 201, added.text
    matched = api.client.post(f"{P}/cases/{case}/match", headers=examiner)
    assert matched.status_code == 200, matched.text
    assert matched.json()["widened"] is False
    shown = api.client.get(f"{P}/cases/{case}", headers=examiner).json()
    leads = [lead for lead in shown["leads"]]
    assert leads, shown
    lead_id = leads[0]["id"]
    lead = api.client.get(f"{P}/leads/{lead_id}", headers=examiner)
    assert lead.status_code == 200, lead.text
    assert lead.json()["basis"] == "marks" and lead.json()["case_face"] is None
    assert lead.json()["report"]["reference"] == report

    agreement = api.client.get(f"{P}/leads/{lead_id}/agreement", headers=examiner)
    assert agreement.status_code == 200, agreement.text
    assert agreement.json()["basis"] == "marks" and agreement.json()["marks"], agreement.json()

    widened = api.client.post(f"{P}/cases/{case}/match", params={"widen": "true"}, headers=examiner)
    assert widened.status_code == 200, widened.text
    assert widened.json()["widened"] is True

    query = {"target": "reports", "marks": [mark], "limit": 5}
    found = api.client.post(f"{P}/facts/search", json=query, headers=examiner)
    assert found.status_code == 200, found.text
    assert found.json()["results"][0]["reference"] == report, found.json()

    # Reopening needs a rejected lead.
    refused = api.client.post(
        f"{P}/leads/{lead_id}/reopen", json={"rationale": "new facts"}, headers=api.as_("reviewer")
    )
    _error(refused, 409, "not rejected")


def test_mark_photos(module_api: Api) -> None:
    api, intake = module_api, module_api.as_("intake")
    report = _report(api)
    added = api.client.post(f"{P}/reports/{report}/marks", json=TATTOO, headers=intake)
    assert added.status_code == 201, added.text
    mark_id = added.json()["mark"]["id"]

    not_image = api.client.post(
        f"{P}/marks/{mark_id}/photos",
        files=[("photos", ("notes.jpg", b"just some text", "image/jpeg"))],
        headers=intake,
    )
    assert 400 <= not_image.status_code < 500, not_image.text
    assert set(not_image.json()["error"]) >= {"code", "message"}

    photo = face_images("Elton_John")[0]
    stored = api.client.post(
        f"{P}/marks/{mark_id}/photos",
        files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
        headers=intake,
    )
    assert stored.status_code == 201, stored.text
    assert len(stored.json()["photo_image_ids"]) == 1
    facts = api.client.get(f"{P}/reports/{report}/facts", headers=intake).json()
    assert facts["marks"][0]["photo_image_ids"] == stored.json()["photo_image_ids"]

    removed = api.client.delete(f"{P}/marks/{mark_id}", params={"reason": "recorded in error"}, headers=intake)
    assert removed.status_code == 200, removed.text
    assert api.client.get(f"{P}/reports/{report}/facts", headers=intake).json()["marks"] == []


def test_effects_and_primary_references(module_api: Api) -> None:
    api, intake = module_api, module_api.as_("intake")
    case = _case(api)
    effect = api.client.post(
        f"{P}/cases/{case}/effects", json={"kind": "watch", "inscription": "To M. 1999"}, headers=intake
    )
    assert effect.status_code == 201, effect.text
    ref = api.client.post(
        f"{P}/cases/{case}/primary-references", json={"kind": "dna", "status": "requested"}, headers=intake
    )
    assert ref.status_code == 201, ref.text
    moved = api.client.patch(f"{P}/primary-references/{ref.json()['id']}", json={"status": "collected"}, headers=intake)
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "collected"
    bad = api.client.patch(f"{P}/primary-references/{ref.json()['id']}", json={"status": "compared"}, headers=intake)
    _error(bad, 422, "dna status")
    facts = api.client.get(f"{P}/cases/{case}/facts", headers=intake).json()
    assert [e["kind"] for e in facts["effects"]] == ["watch"]
    assert [(r["kind"], r["status"]) for r in facts["primary_references"]] == [("dna", "collected")]


def test_confirm_by_exception_is_for_admins(module_api: Api) -> None:
    api = module_api
    refused = api.client.post(
        f"{P}/identifications/999999/confirm-by-exception", json={"rationale": "x"}, headers=api.as_("reviewer")
    )
    _error(refused, 403)
    missing = api.client.post(
        f"{P}/identifications/999999/confirm-by-exception", json={"rationale": "x"}, headers=api.as_("admin")
    )
    _error(missing, 404)
