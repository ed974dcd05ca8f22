"""Hostile image files on every route that takes images: each gets the documented 4xx (413
``image_too_large`` for a decompression bomb or a forged giant header, 422 ``bad_image`` for a
truncated file), names the file once, quotes facetrace's pixel limit (not Pillow's), and a request
that stores nothing never answers 201."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from apitest import Api

P = "/api/v1"
WHY = {"case_reference": "CASE-2024-017", "purpose": "check a hostile upload"}


def _forged_giant_png() -> bytes:
    """A PNG header claiming 100,000 x 100,000 pixels (over Pillow's own limit) with no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile(bomb_png: Callable[[int, int], bytes], face_subset: Any) -> dict[str, tuple[bytes, int, str]]:
    """name -> (file bytes, expected status, expected error code)."""
    photo = face_subset.images(face_subset.other_identities[0])[0].read_bytes()
    return {
        "bomb.png": (bomb_png(12_000, 12_000), 413, "image_too_large"),
        "forged.png": (_forged_giant_png(), 413, "image_too_large"),
        "truncated.jpg": (photo[: len(photo) // 2], 422, "bad_image"),
    }


def _check(response: Any, name: str, status: int, code: str, max_pixels: int) -> None:
    assert response.status_code == status, (name, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code, (name, error)
    assert error["message"].count(name) == 1, error["message"]  # the file named once
    if code == "image_too_large":
        assert f"{max_pixels:,}" in error["message"] and "178" not in error["message"], error["message"]


def test_every_image_route_refuses_hostile_files(
    module_api: Api, face_subset: Any, hostile: dict[str, tuple[bytes, int, str]]
) -> None:
    api = module_api
    intake, examiner = api.as_("intake"), api.as_("examiner")
    max_pixels = api.service.settings.max_pixels
    good = face_subset.images(face_subset.other_identities[1])[0]
    fields = {"name": "Hostile Upload", "source": "test", "legal_basis": "test"}
    person = api.client.post(
        f"{P}/persons",
        data={**fields, "external_id": "HOSTILE-1"},
        files=[("images", (good.name, good.read_bytes(), "image/jpeg"))],
        headers=intake,
    )
    assert person.status_code == 201, person.text
    report = api.client.post(f"{P}/reports", json={**fields, "reported_by": "test"}, headers=intake)
    case = api.client.post(f"{P}/cases", json={"condition": "deceased"}, headers=intake)
    assert report.status_code == case.status_code == 201
    report_ref, case_ref = report.json()["report"]["reference"], case.json()["case"]["reference"]

    def images_of(path: str) -> int:
        body = api.client.get(f"{P}/{path}", headers=intake).json()
        return len(body.get("photos", body.get("images", [])))

    before = {p: images_of(p) for p in ("persons/HOSTILE-1", f"reports/{report_ref}", f"cases/{case_ref}")}
    for name, (data, status, code) in hostile.items():
        image = (name, data, "image/png" if name.endswith(".png") else "image/jpeg")
        calls = {
            "new person": (f"{P}/persons", {**fields, "external_id": f"HOSTILE-{name}"}, [("images", image)], intake),
            "person images": (f"{P}/persons/HOSTILE-1/images", None, [("images", image)], intake),
            "report photos": (f"{P}/reports/{report_ref}/photos", None, [("photos", image)], intake),
            "case photos": (f"{P}/cases/{case_ref}/photos", None, [("photos", image)], intake),
            "detect": (f"{P}/detect", None, [("image", image)], examiner),
            "search": (f"{P}/search", WHY, [("image", image)], examiner),
            "compare": (
                f"{P}/compare",
                None,
                [("a", image), ("b", (good.name, good.read_bytes(), "image/jpeg"))],
                examiner,
            ),
        }
        for route, (path, data_fields, files, headers) in calls.items():
            response = api.client.post(path, data=data_fields, files=files, headers=headers)
            assert response.status_code != 201, route
            _check(response, name, status, code, max_pixels)
        assert api.client.get(f"{P}/persons/HOSTILE-{name}", headers=intake).status_code == 404
    assert before == {p: images_of(p) for p in before}  # nothing stored anywhere


def test_a_request_that_stores_some_photos_lists_the_refused_ones(
    module_api: Api, face_subset: Any, hostile: dict[str, tuple[bytes, int, str]]
) -> None:
    api = module_api
    intake = api.as_("intake")
    report = api.client.post(
        f"{P}/reports",
        json={"name": "Partly Good", "reported_by": "t", "source": "t", "legal_basis": "t"},
        headers=intake,
    )
    reference = report.json()["report"]["reference"]
    good = face_subset.images(face_subset.other_identities[2])[0]
    bomb = hostile["bomb.png"][0]
    response = api.client.post(
        f"{P}/reports/{reference}/photos",
        files=[("photos", (good.name, good.read_bytes(), "image/jpeg")), ("photos", ("bomb.png", bomb, "image/png"))],
        headers=intake,
    )
    assert response.status_code == 201, response.text
    photos = response.json()["photos"]
    assert photos["enrolled"] == 1
    assert photos["errors"] == [
        {"file": "bomb.png", "error": photos["errors"][0]["error"], "code": "image_too_large"}
    ] and not photos["errors"][0]["error"].startswith("bomb.png")
