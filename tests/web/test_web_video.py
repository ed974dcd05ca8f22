"""Video search through the browser (headless Chromium): a short video made from committed real
faces is uploaded on the video search page, the job page shows its progress, then each track
with its time span, thumbnail and candidates; bad uploads are refused on the form with the reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from webtest import IMAGES_LOADED, browser_login, client_login, face_images, wait_until

from facetrace.evaluation.synthetic_video import Appearance, Shot, write_video
from facetrace.gallery.sources import EnrollItem
from facetrace.store.audit import list_events

SOUGHT, OTHER = "Aaron_Peirsol", "Bill_Paxton"
FORM = {"case_reference": "CASE-V1", "purpose": "identify the people in the intake interview"}


def _enroll(app: FastAPI) -> None:
    """Enroll both people from their first two images (the video shows a third, never enrolled)."""
    gallery = app.state.service.gallery
    items = [
        EnrollItem(name, name.replace("_", " "), face_images(name)[:2], source="test", legal_basis="test")
        for name in (SOUGHT, OTHER)
    ]
    outcome = gallery.enroll(items)
    assert not outcome.errors, outcome.errors


def _video(path: Path) -> Path:
    """Two seconds: the sought person alone, moving (MJPG in AVI: quick to write and decode)."""
    shot = Shot(0.0, 2.0, 1, (Appearance(face_images(SOUGHT)[2], 0.2, 2.0, (0.4, 0.5), (0.6, 0.5)),))
    return write_video(path, [shot], duration_s=2.0, codec="MJPG")


def test_video_search_page_shows_the_right_person(web_app: FastAPI, web_server: str, page: Any, tmp_path: Path) -> None:
    base = web_server
    _enroll(web_app)
    video = _video(tmp_path / "interview.avi")

    browser_login(page, base, "olena")
    page.goto(f"{base}/search")
    page.click("a[href='/search/video']")
    page.wait_for_url(f"{base}/search/video")
    page.fill("#case_reference", FORM["case_reference"])
    page.fill("#purpose", FORM["purpose"])
    page.set_input_files("#video-input", str(video))
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/search/video/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    # While the job runs the page refreshes itself (meta refresh, no script) until the result shows.
    page.wait_for_selector("article[data-track]", timeout=60_000)
    assert page.locator("meta[http-equiv=refresh]").count() == 0  # done: no more refreshing
    tracks = page.locator("article[data-track]")
    assert tracks.count() == 1, page.content()[-3000:]
    track = tracks.first
    heading = track.locator("h3").inner_text()
    assert re.search(r"seen \d+\.\d s to \d+\.\d s", heading), heading
    assert track.locator("img.crop").first.get_attribute("src").startswith("data:image/jpeg;base64,")
    first_candidate = track.locator("tbody tr").first.inner_text()
    assert SOUGHT.replace("_", " ") in first_candidate, first_candidate
    # The score's FPIR in plain words, as on the ad-hoc search page (two persons enrolled here).
    assert "A false match this strong happens in" in first_candidate, first_candidate
    assert "of a gallery this size (2 persons)" in first_candidate, first_candidate
    wait_until(page, IMAGES_LOADED)

    with web_app.state.service.db.sessions() as session:
        started, _ = list_events(session, action="search.video.start", actor="olena")
        done, _ = list_events(session, action="search.video", actor="olena")
        viewed, _ = list_events(session, action="search.video.view", actor="olena")
    assert started and started[-1].detail["case_reference"] == FORM["case_reference"]
    assert done and f"job:{job_id}" in done[-1].records
    assert viewed and f"job:{job_id}" in viewed[-1].records

    # A colleague (a reviewer) opens the same result with what it was for, but cannot cancel it;
    # the opening is audited as theirs. The past searches list it with a link to it.
    browser_login(page, base, "petro")
    assert page.goto(f"{base}/search/video/{job_id}").status == 200
    assert page.locator("article[data-track]").count() == 1
    assert FORM["case_reference"] in page.locator("#video-search-for").inner_text()
    assert page.locator("#cancel-video").count() == 0
    with web_app.state.service.db.sessions() as session:
        seen, _ = list_events(session, action="search.video.view", actor="petro")
    assert [e.records for e in seen] == [[f"job:{job_id}"]]
    page.goto(f"{base}/search/history")
    row = page.locator("#past-searches tr[data-search=video]").first
    assert FORM["case_reference"] in row.inner_text() and "1 track" in row.inner_text()
    assert row.locator(f"a[href='/search/video/{job_id}']").count() == 1
    # An intake officer may not open it (role check, audited as access.denied).
    browser_login(page, base, "ivan")
    assert page.goto(f"{base}/search/video/{job_id}").status == 403


def test_bad_uploads_are_refused_with_the_reason(
    web_app: FastAPI, web_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No lifespan of its own (no ``with``): the server thread's job runner must keep running.
    client = TestClient(web_app, base_url="http://127.0.0.1")
    csrf = client_login(client, "olena")
    data = {**FORM, "csrf_token": csrf}
    text = client.post(
        "/search/video", data=data, files={"video": ("notes.mp4", b"this is not a video\n" * 20, "video/mp4")}
    )
    assert text.status_code == 415 and "not a supported video" in text.text
    assert 'value="CASE-V1"' in text.text  # the form keeps what was typed
    empty = client.post("/search/video", data=data, files={"video": ("empty.mp4", b"", "video/mp4")})
    assert empty.status_code == 422 and "empty file" in empty.text
    none = client.post("/search/video", data=data)
    assert none.status_code == 422 and "Choose one video" in none.text
    # Too big: the service's limit (lowered here) refuses the upload before anything is decoded.
    monkeypatch.setattr(web_app.state.service.settings, "video_max_bytes", 1000)
    video = _video(tmp_path / "big.avi")
    big = client.post("/search/video", data=data, files={"video": ("big.avi", video.read_bytes(), "video/x-msvideo")})
    assert big.status_code == 413 and "larger than the video limit of 1,000 bytes" in big.text, big.text[-2000:]
    blank = client.post(
        "/search/video",
        data={**data, "purpose": " "},
        files={"video": ("notes.mp4", b"x", "video/mp4")},
    )
    assert blank.status_code == 422 and "purpose are required" in blank.text
    assert client.get("/search/video/999999").status_code == 404


def test_running_video_search_refreshes_and_can_be_cancelled(web_server: str, page: Any, tmp_path: Path) -> None:
    base = web_server
    shot = Shot(0.0, 12.0, 2, (Appearance(face_images(OTHER)[2], 0.0, 12.0, (0.3, 0.5), (0.7, 0.5)),))
    video = write_video(tmp_path / "long.avi", [shot], duration_s=12.0, codec="MJPG")
    browser_login(page, base, "olena")
    page.goto(f"{base}/search/video")
    page.fill("#case_reference", FORM["case_reference"])
    page.fill("#purpose", FORM["purpose"])
    page.set_input_files("#video-input", str(video))
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/search/video/\d+$"))
    assert page.locator("meta[http-equiv=refresh]").get_attribute("content") == "2"
    assert page.locator("progress#video-progress").count() == 1
    page.click("#cancel-video")
    page.wait_for_selector("text=The video search is cancelled", timeout=30_000)
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    assert page.locator("article[data-track]").count() == 0
