"""PostgreSQL parity: the same requests on a SQLite and a PostgreSQL server give the same answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apitest import face_images, start_api, upload

P = "/api/v1"
PEOPLE = ("Aaron_Peirsol", "Bill_Paxton")


def _session(backend: str, url: str, tmp_path: Path) -> dict[str, Any]:
    """Run one scripted session of requests; return what the server answered and recorded."""
    out: dict[str, Any] = {}
    for api in start_api(tmp_path / backend / "home", url, backend):
        for name in PEOPLE:
            response = api.client.post(
                f"{P}/persons",
                data={"external_id": name, "name": name, "source": "s", "legal_basis": "l"},
                files=[upload(face_images(name)[0], "images")],
                headers=api.as_("intake"),
            )
            assert response.status_code == 201, response.text
        probe = face_images("Bill_Paxton")[2]
        out["search"] = api.client.post(
            f"{P}/search",
            data={"case_reference": "C", "purpose": "p"},
            files=[upload(probe)],
            headers=api.as_("examiner"),
        ).json()
        out["list"] = api.client.get(f"{P}/persons", params={"q": "a"}, headers=api.as_("reviewer")).json()
        out["show"] = api.client.get(f"{P}/persons/Aaron_Peirsol", headers=api.as_("reviewer")).json()
        out["update"] = api.client.patch(
            f"{P}/persons/Aaron_Peirsol", json={"metadata": {"é": [1, 2.5, None]}}, headers=api.as_("intake")
        ).json()
        out["erase"] = api.client.delete(f"{P}/persons/Bill_Paxton", headers=api.as_("intake")).json()
        out["denied"] = api.client.get(f"{P}/audit", headers=api.as_("intake")).json()
        trail = api.client.get(f"{P}/audit", params={"oldest_first": True}, headers=api.as_("auditor")).json()
        out["trail"] = [(e["actor"], e["action"], e["records"], e["outcome"]) for e in trail["items"]]
        out["verify"] = api.client.get(f"{P}/audit/verify", headers=api.as_("auditor")).json()
    return out


@pytest.mark.postgres
def test_sqlite_and_postgresql_answer_alike(
    database_factory: Callable[[str, Path], str], pg_database_url: str, tmp_path: Path
) -> None:
    answers = {b: _session(b, database_factory(b, tmp_path / b), tmp_path) for b in ("sqlite", "postgresql")}
    sqlite, postgresql = answers["sqlite"], answers["postgresql"]
    assert sqlite["verify"] == postgresql["verify"] == {"intact": True, "problems": []}
    for key in ("search", "list", "update", "erase", "denied", "trail"):
        assert sqlite[key] == postgresql[key], key
    assert sqlite["update"]["metadata"] == {"é": [1, 2.5, None]}
    assert len(sqlite["trail"]) >= 8
