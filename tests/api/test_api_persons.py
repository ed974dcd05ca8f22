"""Persons and their reference images over the API: create, list, show, update, add, export, erase."""

from __future__ import annotations

from pathlib import Path

from apitest import Api, face_images, upload

P = "/api/v1"
FIELDS = {"external_id": "R-1", "name": "Aaron Peirsol", "source": "family album", "legal_basis": "consent"}


def _create(api: Api, fields: dict[str, str], images: list[Path]) -> dict[str, object]:
    response = api.client.post(
        f"{P}/persons", data=fields, files=[upload(p, "images") for p in images], headers=api.as_("intake")
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_person_lifecycle(api: Api, tmp_path: Path) -> None:
    intake, examiner = api.as_("intake"), api.as_("examiner")
    aaron = face_images("Aaron_Peirsol")
    created = _create(api, {**FIELDS, "metadata": '{"age": 30}', "collected_at": "2024-05-01"}, aaron[:2])
    person = created["person"]
    assert isinstance(person, dict)
    assert person["external_id"] == "R-1" and person["metadata"] == {"age": 30} and len(person["images"]) == 2
    assert created["enrolled"] == {
        "persons_created": 1,
        "images_enrolled": 2,
        "images_skipped": 0,
        "errors": [],
        "error_count": 0,
    }
    again = api.client.post(f"{P}/persons", data=FIELDS, files=[upload(aaron[0], "images")], headers=api.as_("intake"))
    assert again.status_code == 409
    _create(
        api,
        {**FIELDS, "external_id": "R-2", "name": "Bill Paxton", "source": "archive"},
        face_images("Bill_Paxton")[:1],
    )

    # List: paging and filters.
    page = api.client.get(f"{P}/persons", params={"limit": 1}, headers=examiner).json()
    assert [p["external_id"] for p in page["items"]] == ["R-1"] and page["next_offset"] == 1
    page = api.client.get(f"{P}/persons", params={"limit": 1, "offset": 1}, headers=examiner).json()
    assert [p["external_id"] for p in page["items"]] == ["R-2"] and page["next_offset"] is None
    by_source = api.client.get(f"{P}/persons", params={"source": "archive"}, headers=examiner).json()
    assert [p["external_id"] for p in by_source["items"]] == ["R-2"]
    by_name = api.client.get(f"{P}/persons", params={"q": "peirsol"}, headers=examiner).json()
    assert [(p["external_id"], p["faces"]) for p in by_name["items"]] == [("R-1", 2)]

    # Show, add images (idempotent), update metadata.
    shown = api.client.get(f"{P}/persons/R-1", headers=api.as_("reviewer")).json()
    assert shown["images"][0]["faces"][0]["quality"] > 20
    added = api.client.post(f"{P}/persons/R-1/images", files=[upload(aaron[2], "images")], headers=intake).json()
    assert added["enrolled"]["images_enrolled"] == 1 and len(added["person"]["images"]) == 3
    repeat = api.client.post(f"{P}/persons/R-1/images", files=[upload(aaron[2], "images")], headers=intake).json()
    assert repeat["enrolled"]["images_skipped"] == 1 and len(repeat["person"]["images"]) == 3
    updated = api.client.patch(f"{P}/persons/R-1", json={"name": "A. Peirsol", "metadata": {"age": 31}}, headers=intake)
    assert updated.status_code == 200 and updated.json()["name"] == "A. Peirsol"
    assert updated.json()["metadata"] == {"age": 31} and updated.json()["source"] == "family album"
    assert api.client.patch(f"{P}/persons/R-1", json={"name": None}, headers=intake).status_code == 422
    assert api.client.patch(f"{P}/persons/R-9", json={"name": "x"}, headers=intake).status_code == 404

    # Export the stored original.
    image = shown["images"][0]
    exported = api.client.get(f"{P}/persons/R-1/images/{image['id']}/file", headers=examiner)
    assert exported.status_code == 200 and exported.headers["content-type"] == "image/jpeg"
    assert exported.content == aaron[0].read_bytes()
    assert api.client.get(f"{P}/persons/R-2/images/{image['id']}/file", headers=examiner).status_code == 404

    # Erase: database, index and media.
    erased = api.client.delete(f"{P}/persons/R-1", headers=intake)
    assert erased.status_code == 200 and erased.json()["faces_removed"] == 3
    assert erased.json()["media_files_removed"] == 3
    assert api.client.get(f"{P}/persons/R-1", headers=examiner).status_code == 404
    assert api.client.delete(f"{P}/persons/R-1", headers=intake).status_code == 404
    found = api.client.post(
        f"{P}/search", data={"case_reference": "C-1", "purpose": "test"}, files=[upload(aaron[3])], headers=examiner
    ).json()
    assert all(c["person"]["external_id"] != "R-1" for f in found["faces"] for c in f["candidates"])
    stored = [p for p in api.service.settings.media_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1  # only R-2's photo is left

    # Every read and write of a record is in the audit trail, with the record and the actor.
    pid = person["id"]
    trail = [(e["action"], e["actor"], e["outcome"]) for e in api.audit() if f"person:{pid}" in e["records"]]
    assert ("person.enroll", "intake", "ok") in trail
    assert ("person.view", "reviewer", "ok") in trail
    assert ("person.list", "examiner", "ok") in trail
    assert ("person.update", "intake", "ok") in trail
    assert ("image.export", "examiner", "ok") in trail
    assert ("person.erase", "intake", "ok") in trail
    enroll = next(e for e in api.audit("person.enroll") if e["records"] == [f"person:{pid}"])
    assert len(enroll["detail"]["images"]) == 2 and enroll["source"] == "testclient"


def test_create_refuses_bad_input(api: Api, special_dir: Path) -> None:
    intake = api.as_("intake")
    no_face = special_dir / "no_face.png"
    refused = api.client.post(f"{P}/persons", data=FIELDS, files=[upload(no_face, "images")], headers=intake)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_face"
    assert "no face found" in refused.json()["error"]["message"]
    assert api.client.get(f"{P}/persons/R-1", headers=intake).status_code == 404  # nothing half-created
    text_file = ("images", ("photo.jpg", b"this is not a photo", "image/jpeg"))
    refused = api.client.post(f"{P}/persons", data=FIELDS, files=[text_file], headers=intake)
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
    missing = api.client.post(f"{P}/persons", data={"external_id": "R-1"}, files=[text_file], headers=intake)
    assert missing.status_code == 422 and "legal_basis" in missing.json()["error"]["message"]
    bad_json = api.client.post(
        f"{P}/persons", data={**FIELDS, "metadata": "[1"}, files=[upload(no_face, "images")], headers=intake
    )
    assert bad_json.status_code == 422 and "metadata" in bad_json.json()["error"]["message"]
    bad_date = api.client.post(
        f"{P}/persons", data={**FIELDS, "collected_at": "yesterday"}, files=[upload(no_face, "images")], headers=intake
    )
    assert bad_date.status_code == 422
    errors = [e for e in api.audit("person.enroll") if e["outcome"] == "error"]
    assert len(errors) == 4 and errors[0]["detail"]["error"] == "no_face"
