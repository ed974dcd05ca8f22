"""The workflow over HTTP (/api/v1): the flow from report to e-mail with bearer tokens, and the
JSON errors for missing credentials, wrong roles, policy refusals and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from wftest import Inbox, face_images

from facetrace.config import Settings
from facetrace.server import create_app
from facetrace.store.accounts import User, create_token
from facetrace.store.models import Image

P = "/api/v1"
ROLES = {"ivan": ["intake"], "olena": ["examiner"], "petro": ["reviewer"], "maria": ["reviewer"], "anna": ["auditor"]}


@pytest.fixture()
def api(wf_settings: Settings) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """A server over the test database, and a bearer-token header per user."""
    settings = wf_settings.model_copy(update={"analysis_processes": 1, "job_workers": 1})
    app = create_app(settings)
    headers = {}
    with app.state.service.db.session() as session:
        for name, roles in ROLES.items():
            user = User(username=name, display_name=name, password_hash="!", roles=roles, disabled=False)
            session.add(user)
            session.flush()
            _, secret = create_token(session, user, "tests", days=1)
            headers[name] = {"Authorization": f"Bearer {secret}"}
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield client, headers


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_identification_flow_over_http(api: tuple[TestClient, dict[str, dict[str, str]]], smtp: Inbox) -> None:
    client, h = api
    kelly = face_images("Kelly_Clarkson")
    report = _ok(
        client.post(
            f"{P}/reports",
            headers=h["ivan"],
            json={
                "name": "Kelly Clarkson",
                "reported_by": "her mother",
                "source": "tracing form",
                "legal_basis": "consent",
                "consent": True,
                "consent_date": "2024-01-02",
                "contacts": [{"name": "Jeanne", "relation": "mother", "email": "jeanne@x.example", "language": "ru"}],
            },
        ),
        201,
    )
    ref = report["report"]["reference"]
    files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in kelly[:2]]
    added = _ok(client.post(f"{P}/reports/{ref}/photos", headers=h["ivan"], files=files), 201)
    assert added["photos"]["enrolled"] == 2
    case = _ok(client.post(f"{P}/cases", headers=h["ivan"], json={"condition": "deceased"}), 201)
    cref = case["case"]["reference"]
    probe = [("photos", (kelly[-1].name, kelly[-1].read_bytes(), "image/jpeg"))]
    found = _ok(client.post(f"{P}/cases/{cref}/photos", headers=h["ivan"], files=probe), 201)
    (lead_id,) = found["matching"]["leads"]["created"]
    queue = _ok(client.get(f"{P}/leads", headers=h["olena"]))
    assert [x["id"] for x in queue["items"]] == [lead_id] and queue["next_offset"] is None

    review = {"decision": "confirm", "rationale": "Same face"}
    _ok(
        client.post(f"{P}/leads/{lead_id}/evidence", headers=h["olena"], json={"kind": "dna", "description": "Match"}),
        201,
    )
    _ok(client.post(f"{P}/leads/{lead_id}/reviews", headers=h["olena"], json=review), 201)
    message = _error(client.post(f"{P}/leads/{lead_id}/reviews", headers=h["olena"], json=review), 409, "policy")
    assert "two-person rule" in message
    done = _ok(client.post(f"{P}/leads/{lead_id}/reviews", headers=h["petro"], json=review), 201)
    (nid,) = done["notifications"]["drafted"]
    _error(client.post(f"{P}/notifications/{nid}/approve", headers=h["petro"], json={}), 409, "policy")
    _ok(client.post(f"{P}/notifications/{nid}/approve", headers=h["maria"], json={}))
    sent = _ok(client.post(f"{P}/notifications/send", headers=h["maria"], json={}))
    assert sent["sent"] == 1
    assert [e.rcpt_tos for e in smtp.envelopes] == [["jeanne@x.example"]]
    assert smtp.messages[0]["Content-Language"] == "ru"
    shown = _ok(client.get(f"{P}/identifications/{done['identification']['id']}", headers=h["olena"]))
    assert shown["notifications"][0]["status"] == "sent"


def test_http_errors(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, h = api
    _error(client.get(f"{P}/reports"), 401, "unauthorized")
    _error(client.get(f"{P}/reports", headers=h["anna"]), 403, "forbidden")
    _error(client.post(f"{P}/cases", headers=h["petro"], json={"condition": "alive"}), 403, "forbidden")
    assert "condition" in _error(client.post(f"{P}/cases", headers=h["ivan"], json={"condition": "x"}), 422, "invalid")
    _error(client.get(f"{P}/leads/5", headers=h["olena"]), 404, "not_found")
    _error(
        client.post(f"{P}/leads/5/reviews", headers=h["olena"], json={"decision": "confirm"}), 422, "invalid_request"
    )
    bad = {"name": "A", "reported_by": "B", "source": "C", "legal_basis": " "}
    assert "legal basis" in _error(client.post(f"{P}/reports", headers=h["ivan"], json=bad), 422, "invalid")
    case = _ok(client.post(f"{P}/cases", headers=h["ivan"], json={"condition": "alive"}), 201)
    not_image = [("photos", ("x.jpg", b"definitely not an image", "image/jpeg"))]
    response = client.post(f"{P}/cases/{case['case']['reference']}/photos", headers=h["ivan"], files=not_image)
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"


def test_reconciliation_over_http(api: tuple[TestClient, dict[str, dict[str, str]]], smtp: Inbox) -> None:
    """Beyond the face, end to end over HTTP with real faces: an exclusion by sex keeps a report from
    a case's leads and says why; a rejected lead is not re-created after new photos; a preliminary
    identification cannot notify until a DNA result confirms it; erasure removes a mark's photos."""
    client, h = api
    kelly = face_images("Kelly_Clarkson")
    contact = {"name": "Jeanne", "relation": "mother", "email": "jeanne@x.example", "language": "en"}
    report = _ok(
        client.post(
            f"{P}/reports",
            headers=h["ivan"],
            json={
                "name": "Kelly Clarkson",
                "reported_by": "her mother",
                "source": "tracing form",
                "legal_basis": "consent",
                "date_of_birth": "1982-04-24",
                "descriptors": {"sex": "female", "height": 158},
                "contacts": [contact],
            },
        ),
        201,
    )
    ref = report["report"]["reference"]
    assert report["report"]["descriptors"] == {"sex": "female", "height_min": 158, "height_max": 158}
    files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in kelly[:2]]
    _ok(client.post(f"{P}/reports/{ref}/photos", headers=h["ivan"], files=files), 201)

    # A male case never gets a lead to her report, and the case says why.
    male = _ok(
        client.post(f"{P}/cases", headers=h["ivan"], json={"kind": "deceased", "descriptors": {"sex": "male"}}), 201
    )
    mref = male["case"]["reference"]
    probe = [("photos", (kelly[-1].name, kelly[-1].read_bytes(), "image/jpeg"))]
    found = _ok(client.post(f"{P}/cases/{mref}/photos", headers=h["ivan"], files=probe), 201)
    assert found["matching"]["leads"]["created"] == []
    facts = _ok(client.get(f"{P}/cases/{mref}/facts", headers=h["olena"]))
    assert facts["exclusions"] == [
        {
            "report": ref,
            "report_id": report["report"]["id"],
            "reasons": ["sex: the report says female, the case says male"],
        }
    ]
    assert _ok(client.get(f"{P}/leads", headers=h["olena"]))["items"] == []

    # A case with no recorded sex: a lead; rejected by two; new photos do not bring it back.
    case = _ok(client.post(f"{P}/cases", headers=h["ivan"], json={"kind": "living"}), 201)
    cref = case["case"]["reference"]
    (lead_id,) = _ok(client.post(f"{P}/cases/{cref}/photos", headers=h["ivan"], files=probe), 201)["matching"]["leads"][
        "created"
    ]
    for who in ("olena", "petro"):
        reject = {"decision": "reject", "rationale": f"{who}: the ears differ"}
        _ok(client.post(f"{P}/leads/{lead_id}/reviews", headers=h[who], json=reject), 201)
    again = [("photos", (kelly[2].name, kelly[2].read_bytes(), "image/jpeg"))]
    more = _ok(client.post(f"{P}/cases/{cref}/photos", headers=h["ivan"], files=again), 201)
    assert more["matching"]["leads"]["created"] == [] and more["matching"]["leads"]["updated"] == []
    assert _ok(client.get(f"{P}/leads/{lead_id}", headers=h["olena"]))["status"] == "rejected"
    (rejected,) = _ok(client.get(f"{P}/reports/{ref}/facts", headers=h["olena"]))["rejected_leads"]
    assert {r["by"] for r in rejected["rejections"]} == {"olena", "petro"}

    # Reopened; confirmed by two with a passport only: preliminary, nothing drafted, drafting refused.
    _ok(client.post(f"{P}/leads/{lead_id}/reopen", headers=h["maria"], json={"rationale": "Ear photo was blurred"}))
    passport = {"kind": "documents", "description": "Passport in her bag"}
    _ok(client.post(f"{P}/leads/{lead_id}/evidence", headers=h["olena"], json=passport), 201)
    review = {"decision": "confirm", "rationale": "Same face; passport"}
    _ok(client.post(f"{P}/leads/{lead_id}/reviews", headers=h["olena"], json=review), 201)
    done = _ok(client.post(f"{P}/leads/{lead_id}/reviews", headers=h["maria"], json=review), 201)
    ident = done["identification"]
    assert ident["level"] == "preliminary" and done["notifications"]["drafted"] == []
    assert "preliminary" in done["notifications"]["held"]
    contact_id = _ok(client.get(f"{P}/reports/{ref}", headers=h["olena"]))["contacts"][0]["id"]
    draft = {"contact_id": contact_id}
    message = _error(
        client.post(f"{P}/identifications/{ident['id']}/notifications", headers=h["olena"], json=draft), 409, "policy"
    )
    assert "preliminary" in message
    dna = {"kind": "dna", "description": "DNA match report", "reference": "LAB-9"}
    raised = _ok(client.post(f"{P}/leads/{lead_id}/evidence", headers=h["olena"], json=dna), 201)["identification"]
    assert raised["level"] == "confirmed" and len(raised["notifications"]["drafted"]) == 1
    shown = _ok(client.get(f"{P}/identifications/{ident['id']}", headers=h["olena"]))
    assert shown["level"] == "confirmed" and "LAB-9" in shown["level_basis"]

    # A mark with a photo on the report; erasing the report erases the photo.
    mark = _ok(
        client.post(f"{P}/reports/{ref}/marks", headers=h["ivan"], json={"type": "scar", "region": "chin"}), 201
    )["mark"]
    photo = [("photos", (kelly[0].name, kelly[0].read_bytes(), "image/jpeg"))]
    (image_id,) = _ok(client.post(f"{P}/marks/{mark['id']}/photos", headers=h["ivan"], files=photo), 201)[
        "photo_image_ids"
    ]
    service = client.app.state.service  # type: ignore[attr-defined]
    with service.db.sessions() as session:
        media = session.get(Image, image_id).media_path
    erased = _ok(
        client.post(f"{P}/reports/{ref}/erase", headers=h["ivan"], json={"reason": "consent withdrawn", "force": True})
    )
    assert erased["mark_photos"] == 1 and erased["marks"] == 1
    with service.db.sessions() as session:
        assert session.get(Image, image_id) is None
    assert not (service.gallery.media.root / media).exists()
