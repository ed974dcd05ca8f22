"""Search, compare and detect over the API, against a gallery enrolled once per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from apitest import Api, face_images, upload

from facetrace.gallery.quality_bands import quality_band

P = "/api/v1"
WHY = {"case_reference": "CASE-2024-017", "purpose": "identify a person found at the river crossing"}


@contextmanager
def upload_limit(api: Api, limit: int) -> Iterator[None]:
    """Lower the upload limit of the shared server for a moment."""
    before = api.service.settings.max_upload_bytes
    api.service.settings.max_upload_bytes = limit
    try:
        yield
    finally:
        api.service.settings.max_upload_bytes = before


def test_search_returns_the_engines_json_and_is_audited(gallery_api: Api) -> None:
    api = gallery_api
    probe = face_images("Bill_Paxton")[2]
    response = api.client.post(
        f"{P}/search", data={**WHY, "top": "3"}, files=[upload(probe)], headers=api.as_("examiner")
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["faces"][0]["candidates"][0]["person"]["external_id"] == "Bill_Paxton"
    assert len(result["faces"][0]["candidates"]) == 3
    # The very JSON of the engine (``facetrace search --json``) for the same photo, each face with its quality band.
    engine = api.service.gallery.search(probe.read_bytes(), name=probe.name, top_k=3)
    bands = [f.pop("quality_band") for f in result["faces"]]
    assert result == engine.to_dict()
    for band, face in zip(bands, engine.faces, strict=True):
        expected = quality_band(face.face.quality.score, min_quality=api.service.settings.min_quality)
        assert band == expected.as_dict() and band["label"] == f"{band['name']} quality"
        assert band["name"] != "unusable" and face.decision.quality_ok
        assert band["advice"].startswith("Photos of this quality found about ")
    event = api.audit("search")[-1]
    assert event["actor"] == "examiner" and event["outcome"] == "ok" and event["source"] == "testclient"
    assert event["detail"]["case_reference"] == WHY["case_reference"]
    assert event["detail"]["purpose"] == WHY["purpose"]
    assert event["detail"]["matches"] == [f["match"] for f in result["faces"] if f["match"]]
    assert len(event["detail"]["image_sha256"]) == 64
    bill = result["faces"][0]["candidates"][0]["person"]["id"]
    assert f"person:{bill}" in event["records"] and len(event["records"]) == 3


def test_search_needs_a_case_reference_and_a_purpose(gallery_api: Api) -> None:
    api = gallery_api
    probe = face_images("Bill_Paxton")[2]
    examiner = api.as_("examiner")
    for data in ({"purpose": "x"}, {"case_reference": "x"}, {}):
        response = api.client.post(f"{P}/search", data=data, files=[upload(probe)], headers=examiner)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    blank = api.client.post(f"{P}/search", data={**WHY, "purpose": "  "}, files=[upload(probe)], headers=examiner)
    assert blank.status_code == 422 and "blank" in blank.json()["error"]["message"]
    bad_top = api.client.post(f"{P}/search", data={**WHY, "top": "0"}, files=[upload(probe)], headers=examiner)
    assert bad_top.status_code == 422 and "top" in bad_top.json()["error"]["message"]
    no_file = api.client.post(f"{P}/search", data=WHY, headers=examiner)
    assert no_file.status_code == 422 and "image" in no_file.json()["error"]["message"]


def test_uploads_are_sniffed_and_limited(gallery_api: Api, bomb_png: Callable[[int, int], bytes]) -> None:
    api = gallery_api
    examiner = api.as_("examiner")
    # A PNG named .jpg is fine (the bytes decide); text named .jpg is not an image.
    renamed = ("image", ("probe.gif", face_images("Bill_Paxton")[2].read_bytes(), "image/gif"))
    ok = api.client.post(f"{P}/search", data=WHY, files=[renamed], headers=examiner)
    assert ok.status_code == 200 and ok.json()["image"] == "probe.jpg"
    fake = ("image", ("probe.jpg", b"<html>not an image</html>", "image/jpeg"))
    response = api.client.post(f"{P}/search", data=WHY, files=[fake], headers=examiner)
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    empty = ("image", ("probe.jpg", b"", "image/jpeg"))
    assert api.client.post(f"{P}/search", data=WHY, files=[empty], headers=examiner).status_code == 422
    bomb = ("image", ("bomb.png", bomb_png(12000, 12000), "image/png"))
    response = api.client.post(f"{P}/detect", files=[bomb], headers=examiner)
    assert response.status_code == 413 and response.json()["error"]["code"] == "image_too_large"
    truncated = ("image", ("cut.jpg", face_images("Bill_Paxton")[2].read_bytes()[:3000], "image/jpeg"))
    response = api.client.post(f"{P}/detect", files=[truncated], headers=examiner)
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_image"
    with upload_limit(api, 5000):
        big = upload(face_images("Bill_Paxton")[2])
        response = api.client.post(f"{P}/search", data=WHY, files=[big], headers=examiner)
        assert response.status_code == 413 and "upload limit" in response.json()["error"]["message"]
    outcomes = [e["detail"].get("error") for e in api.audit("search") if e["outcome"] == "error"]
    assert {"unsupported_media_type", "bad_image", "image_too_large"} <= set(outcomes)


def test_compare(gallery_api: Api, special_dir: Path) -> None:
    api = gallery_api
    cesar, elton = face_images("Cesar_Gaviria"), face_images("Elton_John")
    same = api.client.post(
        f"{P}/compare", files=[upload(cesar[0], "a"), upload(cesar[2], "b")], headers=api.as_("reviewer")
    )
    assert same.status_code == 200
    assert (
        same.json()
        == api.service.gallery.compare(
            cesar[0].read_bytes(), cesar[2].read_bytes(), names=(cesar[0].name, cesar[2].name)
        ).to_dict()
    )
    other = api.client.post(
        f"{P}/compare", files=[upload(cesar[0], "a"), upload(elton[2], "b")], headers=api.as_("examiner")
    )
    assert other.status_code == 200 and other.json()["score"] < same.json()["score"]
    no_face = api.client.post(
        f"{P}/compare",
        files=[upload(cesar[0], "a"), upload(special_dir / "no_face.png", "b")],
        headers=api.as_("examiner"),
    )
    assert no_face.status_code == 422 and no_face.json()["error"]["code"] == "no_face"
    events = api.audit("compare")
    assert [e["outcome"] for e in events[-3:]] == ["ok", "ok", "error"]
    assert events[-3]["detail"]["match"] == same.json()["match"] and len(events[-3]["detail"]["images"]) == 2


def test_detect(gallery_api: Api, special_dir: Path) -> None:
    api = gallery_api
    group = api.client.post(
        f"{P}/detect", files=[upload(special_dir / "group_of_three.jpg")], headers=api.as_("intake")
    )
    assert group.status_code == 200
    faces = group.json()["faces"]
    assert len(faces) == 3 and all(f["quality_ok"] for f in faces)
    assert {"box", "landmarks", "quality", "model_id"} <= set(faces[0]) and "embedding" not in faces[0]
    none = api.client.post(f"{P}/detect", files=[upload(special_dir / "no_face.png")], headers=api.as_("examiner"))
    assert none.status_code == 200 and none.json()["faces"] == []
    assert api.audit("detect")[-1]["detail"]["faces"] == 0
