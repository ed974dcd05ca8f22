"""Concurrent use: searches keep working while an import job writes, and no request ever sees a
person without a face (a person is committed together with their first image)."""

from __future__ import annotations

import threading
import time

from apitest import Api, face_images, make_zip, upload, wait_job

from facetrace.gallery.sources import EnrollItem

P = "/api/v1"
IMPORTED = ("Fernando_Gonzalez", "George_Robertson", "Guillermo_Canas")


def test_searches_and_listings_during_an_import(api: Api) -> None:
    seed = face_images("Aaron_Peirsol")
    outcome = api.service.gallery.enroll([EnrollItem("Aaron_Peirsol", "Aaron", seed[:1], "s", "l")], workers=1)
    assert outcome.images_enrolled == 1
    archive = make_zip(
        {f"{name}/{photo.name}": photo.read_bytes() for name in IMPORTED for photo in face_images(name)[:2]}
    )
    started = api.client.post(
        f"{P}/jobs/import",
        files={"archive": ("batch.zip", archive, "application/zip")},
        data={"source": "ICRC", "legal_basis": "consent"},
        headers=api.as_("intake"),
    )
    assert started.status_code == 202
    job_id = started.json()["id"]
    stop = threading.Event()
    failures: list[str] = []
    searches: list[float] = []
    listings: list[int] = []

    def search_loop() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            response = api.client.post(
                f"{P}/search",
                data={"case_reference": "C-9", "purpose": "concurrency test"},
                files=[upload(seed[2])],
                headers=api.as_("examiner"),
            )
            top = response.json()["faces"][0]["candidates"][0] if response.status_code == 200 else {}
            if response.status_code != 200 or top["person"]["external_id"] != "Aaron_Peirsol":
                failures.append(f"search: {response.status_code} {response.text[:200]}")
            searches.append(time.perf_counter() - t0)

    def listing_loop() -> None:
        while not stop.is_set():
            response = api.client.get(f"{P}/persons", params={"limit": 500}, headers=api.as_("reviewer"))
            if response.status_code != 200:
                failures.append(f"list: {response.status_code}")
                continue
            items = response.json()["items"]
            failures.extend(f"{p['external_id']} listed without a face" for p in items if p["faces"] < 1)
            listings.append(len(items))
            time.sleep(0.02)

    threads = [threading.Thread(target=search_loop), threading.Thread(target=listing_loop)]
    for thread in threads:
        thread.start()
    try:
        job = wait_job(api, job_id, api.as_("intake"))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:5]
    assert job["state"] == "done" and job["result"]["images_enrolled"] == 6, job
    assert len(searches) >= 2 and listings[0] <= listings[-1] <= 4
    final = api.client.get(f"{P}/persons", headers=api.as_("reviewer")).json()["items"]
    assert sorted(p["external_id"] for p in final) == sorted(("Aaron_Peirsol", *IMPORTED))
    # The index and the database agree after the concurrent writes and reads.
    assert len(api.service.gallery.index()) == 7
    assert api.client.get(f"{P}/audit/verify", headers=api.as_("auditor")).json()["intact"] is True
