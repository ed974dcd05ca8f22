"""A full disk over the API: HTTP 507 with the usual JSON error body (code ``disk_full``), nothing
half-stored, and the same upload succeeds once there is space again."""

from __future__ import annotations

import errno

import pytest
from apitest import Api, face_images, upload

from facetrace.store.media import MediaStore

P = "/api/v1"
FIELDS = {"external_id": "R-full", "name": "Aaron Peirsol", "source": "family album", "legal_basis": "consent"}


def test_upload_on_a_full_disk_is_507_and_stores_nothing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(self: MediaStore, data: bytes, suffix: str) -> tuple[str, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    images = [upload(p, "images") for p in face_images("Aaron_Peirsol")[:2]]
    intake = api.as_("intake")
    with monkeypatch.context() as patch:
        patch.setattr(MediaStore, "put", no_space)
        full = api.client.post(f"{P}/persons", data=FIELDS, files=images, headers=intake)
    assert full.status_code == 507, full.text
    error = full.json()["error"]
    assert error["code"] == "disk_full" and "the disk is full" in error["message"]
    assert api.client.get(f"{P}/persons/R-full", headers=intake).status_code == 404  # nothing half-stored

    again = api.client.post(f"{P}/persons", data=FIELDS, files=images, headers=intake)
    assert again.status_code == 201, again.text
    assert again.json()["enrolled"]["images_enrolled"] == 2
