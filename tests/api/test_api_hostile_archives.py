"""Damaged import archives found by fuzzing (``fuzz/corpus/manifest/regress-zip-*.zip``) through
``POST /jobs/import``: each is a 422 ``bad_manifest`` with a one-line message, never a 500, and
leaves no upload folder behind. Each once made ``zipfile`` raise something the endpoint let
through (``zlib.error``, ``NotImplementedError``, ``IndexError``, ``UnicodeDecodeError``...)."""

from __future__ import annotations

from pathlib import Path

import pytest
from apitest import Api

P = "/api/v1"
CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "manifest"
CRASHERS = sorted(p.name for p in CORPUS.glob("regress-zip-*.zip"))


def test_there_are_crashers_to_replay() -> None:
    assert len(CRASHERS) >= 8, CRASHERS


@pytest.mark.parametrize("name", CRASHERS)
def test_damaged_archive_is_a_clear_422(module_api: Api, name: str) -> None:
    response = module_api.client.post(
        f"{P}/jobs/import",
        files={"archive": ("batch.zip", (CORPUS / name).read_bytes(), "application/zip")},
        headers=module_api.as_("intake"),
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_manifest" and error["message"] and "\n" not in error["message"], error
    assert not any((module_api.service.settings.home / "jobs").glob("upload-*"))  # nothing left behind
