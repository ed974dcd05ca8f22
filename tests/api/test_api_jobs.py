"""Background jobs: bulk import of an archive, re-indexing, progress, errors, cancel, restart and resume."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from apitest import Api, add_users, face_images, make_settings, make_zip, wait_job
from fastapi.testclient import TestClient

from facetrace.server import create_app
from facetrace.store.jobs import Job, create_job
from facetrace.usecases import jobs as job_module

P = "/api/v1"


def manifest_zip() -> bytes:
    """Two persons, three photos, and one row naming a photo that is not in the archive."""
    aaron, bill = face_images("Aaron_Peirsol"), face_images("Bill_Paxton")
    manifest = (
        "external_id,name,image,source,legal_basis,contact_email\n"
        "M-1,Aaron Peirsol,photos/a1.jpg;photos/a2.jpg,Red Cross tracing,consent,family@example.org\n"
        "M-2,Bill Paxton,photos/b1.jpg,Red Cross tracing,consent,\n"
        "M-3,Nobody,photos/missing.jpg,Red Cross tracing,consent,\n"
        "M-4,,photos/b1.jpg,Red Cross tracing,consent,\n"
    )
    return make_zip(
        {
            "manifest.csv": manifest.encode(),
            "photos/a1.jpg": aaron[0].read_bytes(),
            "photos/a2.jpg": aaron[1].read_bytes(),
            "photos/b1.jpg": bill[0].read_bytes(),
        }
    )


def post_import(api: Api, archive: bytes, **fields: str) -> Any:
    return api.client.post(
        f"{P}/jobs/import",
        files={"archive": ("batch.zip", archive, "application/zip")},
        data=fields,
        headers=api.as_("intake"),
    )


def test_manifest_import_job(api: Api) -> None:
    intake = api.as_("intake")
    response = post_import(api, manifest_zip())
    assert response.status_code == 202, response.text
    job = wait_job(api, response.json()["id"], intake)
    assert job["state"] == "done", job
    assert job["progress"] == {"done": 4, "total": 4}
    assert job["result"]["persons_created"] == 2 and job["result"]["images_enrolled"] == 3
    assert job["error_count"] == 2 and len(job["errors"]) == 2
    assert any(e["file"] == "photos/missing.jpg" and "cannot read" in e["error"] for e in job["errors"]), job["errors"]
    assert any("manifest.csv line 5" in e["file"] for e in job["errors"])
    person = api.client.get(f"{P}/persons/M-1", headers=intake).json()
    assert len(person["images"]) == 2 and person["metadata"]["contacts"] == [{"email": "family@example.org"}]
    event = api.audit("person.import")[-1]
    assert event["actor"] == "intake" and f"job:{job['id']}" in event["records"]
    assert sum(r.startswith("person:") for r in event["records"]) == 2
    assert not any((api.service.settings.home / "jobs").iterdir())  # the unpacked upload is gone
    # The job list shows a user their own jobs; an admin sees all.
    assert [j["id"] for j in api.client.get(f"{P}/jobs", headers=intake).json()["items"]] == [job["id"]]
    assert api.client.get(f"{P}/jobs", headers=api.as_("admin")).json()["items"][0]["id"] == job["id"]
    # Importing the same archive again skips what is enrolled.
    again = wait_job(api, post_import(api, manifest_zip()).json()["id"], intake)
    assert again["result"]["images_skipped"] == 3 and again["result"]["images_enrolled"] == 0


def test_folder_archive_needs_provenance(api: Api) -> None:
    photos = face_images("Cesar_Gaviria")[:2]
    archive = make_zip({f"batch/Cesar_Gaviria/{p.name}": p.read_bytes() for p in photos})
    refused = post_import(api, archive)
    assert refused.status_code == 422 and "legal_basis" in refused.json()["error"]["message"]
    response = post_import(api, archive, source="ICRC", legal_basis="vital interest")
    assert response.status_code == 202
    job = wait_job(api, response.json()["id"], api.as_("intake"))
    assert job["state"] == "done" and job["result"]["images_enrolled"] == 2
    person = api.client.get(f"{P}/persons/Cesar_Gaviria", headers=api.as_("intake")).json()
    assert person["source"] == "ICRC" and person["legal_basis"] == "vital interest"


@pytest.mark.parametrize(
    ("archive", "status", "message"),
    [
        (b"not a zip at all", 415, "zip"),
        (make_zip({"../evil.jpg": b"x"}), 422, "leaves the archive"),
        (make_zip({"/etc/evil.jpg": b"x"}), 422, "leaves the archive"),
        (make_zip({"a.csv": b"x", "b.csv": b"y"}), 422, "several CSV"),
        (make_zip({"manifest.csv": b"name,image\nx,y\n"}), 422, "missing column"),
        (b"PK\x03\x04 truncated", 422, "not a readable zip"),
    ],
)
def test_bad_archives_are_refused(module_api: Api, archive: bytes, status: int, message: str) -> None:
    response = post_import(module_api, archive)
    assert response.status_code == status and message in response.json()["error"]["message"], response.text
    assert not any((module_api.service.settings.home / "jobs").glob("upload-*"))  # nothing left behind


def test_reindex_job(module_api: Api) -> None:
    admin = module_api.as_("admin")
    response = module_api.client.post(f"{P}/jobs/reindex", headers=admin)
    assert response.status_code == 202
    job = wait_job(module_api, response.json()["id"], admin)
    assert job["state"] == "done" and job["progress"] == {"done": 1, "total": 1} and "faces" in job["result"]
    assert module_api.audit("index.rebuild")[-1]["actor"] == "admin"
    # Another intake user's job is invisible to this intake user.
    assert module_api.client.get(f"{P}/jobs/{job['id']}", headers=module_api.as_("intake")).status_code == 404


def test_cancel_a_running_job(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(service: Any, ctx: job_module.JobContext, job: Job) -> dict[str, Any]:
        for step in range(1000):
            ctx.progress(step, 1000)
            if step >= 2:
                started.set()
            release.wait(0.02)
        return {}

    monkeypatch.setitem(job_module.JOB_KINDS, "slow", slow)
    job = api.service.jobs.submit("slow", created_by="admin", params={})
    assert started.wait(10)
    admin = api.as_("admin")
    response = api.client.post(f"{P}/jobs/{job.id}/cancel", headers=admin)
    assert response.status_code == 200
    finished = wait_job(api, job.id, admin)
    assert finished["state"] == "cancelled" and finished["resumable"] is True
    assert 2 <= finished["progress"]["done"] < 1000
    again = api.client.post(f"{P}/jobs/{job.id}/cancel", headers=admin)
    assert again.status_code == 409
    assert api.client.post(f"{P}/jobs/999999/cancel", headers=admin).status_code == 404


def test_job_interrupted_by_a_restart_is_run_again(database_url: str, tmp_path: Path) -> None:
    """A server stops mid-job: the job stays in the queue and the next start runs it to the end (on
    SQLite at once, the only process; on PostgreSQL once its heartbeat is a lease old)."""
    home = tmp_path / "home"
    folder = home / "jobs" / "upload-crashed"  # the unpacked upload of the job that was running
    (folder / "Elton_John").mkdir(parents=True)
    for photo in face_images("Elton_John")[:2]:
        (folder / "Elton_John" / photo.name).write_bytes(photo.read_bytes())
    first = create_app(make_settings(home, database_url))
    headers = add_users(first.state.service)[0]["intake"]
    with first.state.service.db.session() as session:
        params = {"folder": str(folder), "source": "ICRC", "legal_basis": "consent"}
        job = create_job(session, "import", created_by="intake", params=params)
        job.state, job.worker, job.attempts = "running", "a-dead-server:1:abc", 1  # ... when the server died

    second = create_app(make_settings(home, database_url, job_lease_seconds=2.0))
    with TestClient(second, base_url="https://testserver") as client:
        deadline = time.monotonic() + 120
        while (shown := client.get(f"{P}/jobs/{job.id}", headers=headers).json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        assert shown["state"] == "done" and shown["result"]["images_enrolled"] == 2, shown
        assert shown["attempts"] == 2  # the interrupted start, then this one
        assert client.post(f"{P}/jobs/{job.id}/resume", headers=headers).status_code == 409
        assert len(client.get(f"{P}/persons/Elton_John", headers=headers).json()["images"]) == 2
