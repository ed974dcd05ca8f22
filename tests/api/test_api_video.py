"""Video search through the API: upload, job progress, result, cancellation, bad files, audit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from apitest import Api, face_images

from facetrace.evaluation.synthetic_video import Appearance, Shot, write_video

P = "/api/v1"
FORM = {"case_reference": "CASE-9", "purpose": "identify the people in the intake interview"}


def _video(path: Path, seconds: float = 4.0) -> Path:
    a, b = face_images("Aaron_Peirsol")[2], face_images("Bill_Paxton")[2]  # enrolled: images 0-1 only
    stranger = sorted((face_images("Aaron_Peirsol")[0].parents[1] / "Naoto_Kan").glob("*.jpg"))[0]
    shots = [
        Shot(
            0.0,
            seconds / 2,
            1,
            (
                Appearance(a, 0.0, seconds / 2, (0.25, 0.5), (0.3, 0.5)),
                Appearance(b, 0.4, seconds / 2, (0.75, 0.5), (0.75, 0.5)),
            ),
        ),
        Shot(seconds / 2, seconds, 2, (Appearance(stranger, seconds / 2, seconds, (0.5, 0.5), (0.5, 0.5)),)),
    ]
    return write_video(path, shots, duration_s=seconds, codec="MJPG")


def _wait(api: Api, job_id: int, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.client.get(f"{P}/search/video/{job_id}", headers=api.as_("examiner")).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def _post(api: Api, path: Path, identity: str = "examiner", **form: Any) -> Any:
    files = {"video": (path.name, path.read_bytes(), "video/x-msvideo")}
    return api.client.post(f"{P}/search/video", headers=api.as_(identity), files=files, data={**FORM, **form})


def test_video_search_job(gallery_api: Api, tmp_path: Path) -> None:
    api = gallery_api
    response = _post(api, _video(tmp_path / "interview.avi"), top=3)
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["kind"] == "video_search" and started["state"] in ("queued", "running")
    job = _wait(api, started["id"])
    assert job["state"] == "done", job
    assert job["progress"] == {"done": 100, "total": 100}
    result = job["result"]
    assert result["video"]["name"] == "interview.avi" and result["video"]["frame_count"] == 100
    spans = [(t["first_seen_s"], t["last_seen_s"], t["match"]) for t in result["tracks"]]
    assert len(spans) == 3, spans
    assert {m for _, _, m in spans} == {"Aaron_Peirsol", "Bill_Paxton", None}
    assert all(len(t["candidates"]) <= 3 and t["thumbnail_jpeg_base64"] for t in result["tracks"])
    events = api.audit("search.video")
    assert events[-1]["actor"] == "examiner" and f"job:{job['id']}" in events[-1]["records"]
    assert events[-1]["detail"]["case_reference"] == "CASE-9"
    assert sorted(events[-1]["detail"]["matches"]) == ["Aaron_Peirsol", "Bill_Paxton"]
    assert api.audit("search.video.start")[-1]["detail"]["video_sha256"]
    # A colleague (any examiner or reviewer) opens the result, audited as theirs; an unknown job is 404.
    colleague = api.client.get(f"{P}/search/video/{job['id']}", headers=api.as_("reviewer"))
    assert colleague.status_code == 200, colleague.text
    seen = colleague.json()
    assert seen["result"] == result and (seen["case_reference"], seen["created_by"]) == ("CASE-9", "examiner")
    viewed = api.audit("search.video.view")[-1]
    assert viewed["actor"] == "reviewer" and viewed["records"] == [f"job:{job['id']}"]
    assert api.client.post(f"{P}/search/video/{job['id']}/cancel", headers=api.as_("reviewer")).status_code == 403
    assert api.client.get(f"{P}/search/video/999999", headers=api.as_("examiner")).status_code == 404
    # The history of past searches lists it, for reviewers and auditors too.
    history = api.client.get(f"{P}/searches", headers=api.as_("auditor")).json()["items"]
    video = [s for s in history if s["kind"] == "video" and s["job_id"] == job["id"]]
    assert [(s["user"], s["case_reference"], s["found"]) for s in video] == [("examiner", "CASE-9", 3)]
    assert sorted(video[0]["matches"]) == ["Aaron_Peirsol", "Bill_Paxton"]
    assert not list((api.service.settings.home / "jobs").glob("video-*"))  # the upload is removed once done


def test_video_search_cancel(api: Api, tmp_path: Path) -> None:
    response = _post(api, _video(tmp_path / "long.avi", seconds=20.0))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    cancelled = api.client.post(f"{P}/search/video/{job_id}/cancel", headers=api.as_("examiner"))
    assert cancelled.status_code == 200, cancelled.text
    job = _wait(api, job_id)
    assert job["state"] == "cancelled", job
    assert job["progress"]["done"] < 500
    again = api.client.post(f"{P}/search/video/{job_id}/cancel", headers=api.as_("examiner"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_bad_videos_are_refused_at_once(api: Api, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 10)
    response = _post(api, text)
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"

    mp4 = write_video(tmp_path / "clip.mp4", [Shot(0, 1, 1)], duration_s=1.0, width=160, height=120)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(mp4.read_bytes()[: len(mp4.read_bytes()) // 2])
    response = _post(api, truncated)
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_video"
    assert "truncated" in response.json()["error"]["message"]

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    response = _post(api, empty)
    assert response.status_code == 422 and "empty" in response.json()["error"]["message"]

    assert _post(api, mp4, identity="intake").status_code == 403
    assert not list((api.service.settings.home / "jobs").glob("video-*"))  # refused uploads are not kept
    failures = [e for e in api.audit("search.video.start") if e["outcome"] == "error"]
    assert len(failures) == 3
