"""Video: safe decoding, adaptive sampling, tracking, and search/enroll through Gallery and CLI.

Test videos are made here from the committed real faces (``tests/data/faces``) with
:mod:`facetrace.evaluation.synthetic_video`: 320x240 at 25 fps, a few seconds each.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facetrace.errors import CancelledError, VideoError, VideoTooLargeError
from facetrace.evaluation.synthetic_video import Appearance, Shot, write_video
from facetrace.gallery import Gallery
from facetrace.vision.track import Observation, Tracker, TrackerConfig, iou
from facetrace.vision.video import (
    SamplingConfig,
    VideoLimits,
    VideoStats,
    analyze_video,
    is_video_file,
    open_video,
    probe_video,
    sample_frames,
    sniff_video_format,
)

FPS = 25.0


# ---------------------------------------------------------------------------------------------
# The main scenario: moving, entering and leaving, two people at once, a cut


@dataclass(frozen=True)
class Scenario:
    path: Path
    a: str  # enrolled; on screen 0.5-7.0 s, moving, across the cut at 4.0 s
    b: str  # enrolled; 1.5-4.0 s, beside A
    c: str  # not enrolled; 5.0-6.5 s, after the cut


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, face_subset: Any) -> Scenario:
    a, b = face_subset.gallery_identities[0], face_subset.gallery_identities[1]
    c = face_subset.other_identities[0]
    pa, pb, pc = face_subset.probe(a), face_subset.probe(b), face_subset.probe(c)  # never enrolled photos
    shots = [
        Shot(
            0.0,
            4.0,
            seed=1,
            appearances=(
                Appearance(pa, 0.5, 4.0, (0.2, 0.5), (0.35, 0.45)),
                Appearance(pb, 1.5, 4.0, (0.75, 0.5), (0.75, 0.5)),
            ),
        ),
        Shot(
            4.0,
            7.0,
            seed=2,
            appearances=(
                Appearance(pa, 4.0, 7.0, (0.6, 0.5), (0.5, 0.5), height=0.7),
                Appearance(pc, 5.0, 6.5, (0.2, 0.5), (0.2, 0.5)),
            ),
        ),
    ]
    path = write_video(tmp_path_factory.mktemp("video") / "scenario.mp4", shots, duration_s=7.0, fps=FPS)
    return Scenario(path, a, b, c)


@pytest.fixture(scope="module")
def scenario_result(scenario: Scenario, enrolled_gallery: Gallery) -> dict[str, Any]:
    return enrolled_gallery.search_video(scenario.path, top_k=3, workers=1)


STEP = 1.0 / 5.0 + 1.0 / FPS  # sampling interval plus one frame: how late a sighting may be


def _track_of(result: dict[str, Any], first: float, last: float) -> dict[str, Any]:
    """Return the one track first seen at ``first`` and last seen at ``last`` (to a sampling step)."""
    found = [
        t
        for t in result["tracks"]
        if first <= t["first_seen_s"] <= first + STEP and last - STEP <= t["last_seen_s"] < last
    ]
    assert len(found) == 1, [(t["first_seen_s"], t["last_seen_s"]) for t in result["tracks"]]
    return found[0]


def test_scenario_tracks_and_time_spans(scenario_result: dict[str, Any]) -> None:
    tracks = scenario_result["tracks"]
    # A (moving, then across the cut), B (beside A) and C (enters and leaves after the cut).
    assert len(tracks) == 3, [(t["first_seen_s"], t["last_seen_s"]) for t in tracks]
    a = _track_of(scenario_result, 0.5, 7.0)
    assert a["segments"] == [[a["first_seen_s"], a["last_seen_s"]]]  # never lost, not even at the cut
    _track_of(scenario_result, 1.5, 4.0)
    _track_of(scenario_result, 5.0, 6.5)
    # One face per analysed frame while on screen: about 5 per second.
    assert 5 * 6.0 <= a["faces"] <= 5 * 6.5 + 2
    assert len(a["best_faces"]) == 5
    qualities = [f["quality"]["score"] for f in a["best_faces"]]
    assert qualities == sorted(qualities, reverse=True)


def test_scenario_search_finds_the_right_people(scenario: Scenario, scenario_result: dict[str, Any]) -> None:
    a = _track_of(scenario_result, 0.5, 7.0)
    b = _track_of(scenario_result, 1.5, 4.0)
    c = _track_of(scenario_result, 5.0, 6.5)
    assert a["match"] == scenario.a, a["candidates"][:1]
    assert b["match"] == scenario.b, b["candidates"][:1]
    assert c["match"] is None, c["candidates"][:1]  # C is not in the gallery
    assert a["candidates"][0]["match"] and a["candidates"][0]["score"] >= scenario_result["policy"]["threshold"]
    assert scenario_result["gallery"]["persons"] == 20
    assert all(cand["person"]["external_id"] != scenario.c for cand in c["candidates"])


def test_scenario_thumbnails_and_processing(scenario_result: dict[str, Any]) -> None:
    for track in scenario_result["tracks"]:
        jpeg = base64.b64decode(track["thumbnail_jpeg_base64"])
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and 20 <= max(image.shape[:2]) <= 160
    proc = scenario_result["processing"]
    assert proc["frames_read"] == 175
    assert proc["scene_changes"] == 1
    # 5 frames a second analysed (35, plus at most the cut), scene checks 12.5 a second.
    assert 35 <= proc["frames_analysed"] <= 37
    assert proc["frames_analysed"] < proc["frames_decoded"] < proc["frames_read"]
    assert proc["share_analysed"] == pytest.approx(proc["frames_analysed"] / 175, abs=1e-3)
    assert proc["warnings"] == []
    video = scenario_result["video"]
    assert (video["container"], video["width"], video["height"], video["frame_count"]) == ("mp4", 320, 240, 175)
    assert video["duration_s"] == pytest.approx(7.0)


def test_worker_processes_give_the_same_result(
    scenario: Scenario, scenario_result: dict[str, Any], enrolled_gallery: Gallery
) -> None:
    result = enrolled_gallery.search_video(scenario.path, top_k=3, workers=2)
    assert result["processing"]["workers"] == 2
    keys = ("first_seen_s", "last_seen_s", "faces", "segments", "match")
    assert [[t[k] for k in keys] for t in result["tracks"]] == [[t[k] for k in keys] for t in scenario_result["tracks"]]


def test_search_video_bytes_progress_and_cancel(scenario: Scenario, enrolled_gallery: Gallery) -> None:
    calls: list[tuple[int, int]] = []
    stop = threading.Event()

    def progress(done: int, total: int, errors: int) -> None:
        calls.append((done, total))
        if done >= 50:
            stop.set()

    with pytest.raises(CancelledError):
        enrolled_gallery.search_video(scenario.path.read_bytes(), name="clip.mp4", progress=progress, cancel=stop)
    assert calls and all(total == 175 for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1][0] < 175  # stopped early

    calls.clear()
    result = enrolled_gallery.search_video(
        scenario.path.read_bytes(), name="clip.mp4", progress=lambda d, t, e: calls.append((d, t)), cancel=lambda: False
    )
    assert result["video"]["name"] == "clip.mp4"
    assert len(result["tracks"]) == 3
    assert calls[-1] == (175, 175)


# ---------------------------------------------------------------------------------------------
# Containers, codecs and hostile files


def _still_video(path: Path, codec: str, seconds: float = 1.0, size: tuple[int, int] = (160, 120)) -> Path:
    return write_video(path, [Shot(0.0, seconds, seed=3)], duration_s=seconds, width=size[0], height=size[1], fps=FPS)


@pytest.mark.parametrize(
    ("name", "codec", "container"),
    [
        ("clip.mp4", "mp4v", "mp4"),
        ("clip.mov", "mp4v", "mov"),
        ("clip.webm", "VP80", "webm"),
        ("clip.avi", "MJPG", "avi"),
        ("clip_h264.mp4", "h264", "mp4"),
        ("clip_h264.mkv", "h264", "mkv"),
    ],
)
def test_containers_and_codecs_decode(tmp_path: Path, name: str, codec: str, container: str) -> None:
    path = write_video(tmp_path / name, [Shot(0.0, 1.0, seed=3)], duration_s=1.0, width=160, height=120, codec=codec)
    assert sniff_video_format(path.read_bytes()[:64]) == container
    # The extension does not matter: the content does.
    renamed = path.rename(tmp_path / "renamed.bin")
    assert is_video_file(renamed)
    cap, info = open_video(renamed)
    try:
        stats = VideoStats()
        frames = list(sample_frames(cap, info, stats=stats))
    finally:
        cap.release()
    assert (info.container, info.width, info.height) == (container, 160, 120)
    assert info.fps == pytest.approx(FPS)
    assert stats.frames_read == 25
    assert [f.index for f in frames] == [0, 5, 10, 15, 20]
    assert [round(f.time_s, 2) for f in frames] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert frames[0].image is not None and frames[0].image.shape == (120, 160, 3)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    assert not is_video_file(path)
    with pytest.raises(VideoError, match="not a supported video"):
        probe_video(path)


def test_zero_length_video(tmp_path: Path, gallery: Gallery) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        probe_video(path)
    with pytest.raises(VideoError, match="empty file"):
        gallery.search_video(b"", name="upload.mp4")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="file not found"):
        probe_video(tmp_path / "nope.mp4")


def test_truncated_mp4_is_refused(tmp_path: Path) -> None:
    path = _still_video(tmp_path / "whole.mp4", "mp4v")
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov box) is written last: now missing
    assert is_video_file(cut)
    with pytest.raises(VideoError, match="truncated, corrupt"):
        probe_video(cut)


def test_truncated_stream_is_searched_up_to_the_break_with_a_warning(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "whole.webm", [Shot(0.0, 2.0, seed=3)], duration_s=2.0, width=160, height=120, codec="VP80"
    )
    data = path.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) // 2])
    analysis = analyze_video(cut)
    assert 0 < analysis.stats.frames_read < 50
    assert any("truncated" in w for w in analysis.stats.warnings)


def _avi_with(tmp_path: Path, patch: Callable[[bytearray, int, int], None]) -> Path:
    """Return an MJPG AVI (2 s, 50 frames) whose header ``patch(data, avih, strh)`` rewrote."""
    data = bytearray(
        write_video(
            tmp_path / "src.avi", [Shot(0, 2, 1)], duration_s=2, width=160, height=120, codec="MJPG"
        ).read_bytes()
    )
    avih, strh = data.find(b"avih") + 8, data.find(b"strh") + 8
    patch(data, avih, strh)
    out = tmp_path / "patched.avi"
    out.write_bytes(bytes(data))
    return out


def _set_count(count: int) -> Callable[[bytearray, int, int], None]:
    def patch(data: bytearray, avih: int, strh: int) -> None:
        struct.pack_into("<I", data, avih + 16, count)  # avih.dwTotalFrames
        struct.pack_into("<I", data, strh + 32, count)  # strh.dwLength

    return patch


def test_absurd_frame_count_in_header(tmp_path: Path) -> None:
    with pytest.raises(VideoTooLargeError, match="frames exceeds the limit"):
        probe_video(_avi_with(tmp_path, _set_count(0x7FFFFFFF)))


def test_absurd_frame_rate_in_header(tmp_path: Path) -> None:
    def patch(data: bytearray, avih: int, strh: int) -> None:
        struct.pack_into("<II", data, strh + 20, 1, 1_000_000)  # dwScale, dwRate: a million fps

    with pytest.raises(VideoError, match="impossible frame rate"):
        probe_video(_avi_with(tmp_path, patch))


def test_header_that_lies_is_stopped_while_decoding(tmp_path: Path) -> None:
    path = _avi_with(tmp_path, _set_count(10))  # claims 10 frames, holds 50
    limits = VideoLimits(max_frames=20)
    assert probe_video(path, limits).frame_count == 10
    with pytest.raises(VideoTooLargeError, match="more than 20 frames"):
        analyze_video(path, limits=limits)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (VideoLimits(max_pixels=160 * 120 - 1), "exceed the limit of"),
        (VideoLimits(max_seconds=0.5), "s exceeds the limit"),
        (VideoLimits(max_frames=24), "frames exceeds the limit"),
        (VideoLimits(max_bytes=100), "bytes exceeds the limit"),
    ],
)
def test_limits(tmp_path: Path, limits: VideoLimits, message: str) -> None:
    path = _still_video(tmp_path / "clip.mp4", "mp4v")
    with pytest.raises(VideoTooLargeError, match=message):
        probe_video(path, limits)


def test_limits_come_from_settings(tmp_path: Path, tmp_home: Path) -> None:
    from facetrace.config import get_settings

    path = _still_video(tmp_path / "clip.mp4", "mp4v")
    g = Gallery(get_settings(home=tmp_home, workers=1, video_max_seconds=0.5))
    try:
        with pytest.raises(VideoTooLargeError):
            g.search_video(path)
    finally:
        g.close()


def test_scene_changes_are_sampled(tmp_path: Path) -> None:
    # Cuts at 1.1 s and 2.3 s: between two regular samples, so only scene detection finds them.
    shots = [Shot(0.0, 1.1, seed=1), Shot(1.1, 2.3, seed=2), Shot(2.3, 3.0, seed=3)]
    path = write_video(tmp_path / "cuts.mp4", shots, duration_s=3.0, width=160, height=120, fps=FPS)
    cap, info = open_video(path)
    try:
        stats = VideoStats()
        frames = list(sample_frames(cap, info, stats=stats, sampling=SamplingConfig(sample_fps=1.0)))
    finally:
        cap.release()
    assert stats.scene_changes == 2
    scene = [f for f in frames if f.reason == "scene"]
    assert [f.cut for f in scene] == [True, True]
    assert all(1.1 <= f.time_s < 1.1 + 0.1 for f in scene[:1]) and 2.3 <= scene[1].time_s < 2.4
    assert [f.time_s for f in frames if f.reason == "interval"][:1] == [0.0]
    assert stats.frames_analysed == len(frames) == 3 + 2
    assert stats.frames_decoded < stats.frames_read == 75


# ---------------------------------------------------------------------------------------------
# The tracker on its own (made-up embeddings)


def _unit(seed: int, dim: int = 128) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _near(v: np.ndarray, seed: int, noise: float = 0.05) -> np.ndarray:
    w = v + noise * _unit(seed)
    return (w / np.linalg.norm(w)).astype(np.float32)


def _obs(t: float, box: tuple[int, int, int, int], emb: np.ndarray, quality: float = 50.0) -> Observation:
    return Observation(time_s=t, frame=int(t * 25), box=box, embedding=emb, quality=quality)


CONFIG = TrackerConfig(continuity_score=0.5, relink_score=0.9, max_gap_s=1.0, relink_gap_s=2.0)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_tracker_follows_a_moving_face_and_keeps_the_best() -> None:
    person = _unit(1)
    tracker = Tracker(TrackerConfig(keep_best=3))
    for step in range(30):
        t = step * 0.2
        x = 10 + 8 * step  # moves 40 px a second
        tracker.update(t, int(t * 25), [_obs(t, (x, 50, x + 60, 110), _near(person, step), quality=float(step % 7))])
    (track,) = tracker.finish()
    assert track.observations == 30 and len(track.best) == 3
    assert [o.quality for o in track.best] == [6.0, 6.0, 6.0]
    assert (track.first_time, track.last_time) == (0.0, pytest.approx(5.8))
    assert float(np.dot(track.template, person)) > 0.99
    assert np.linalg.norm(track.template) == pytest.approx(1.0, abs=1e-5)


def test_tracker_does_not_swap_people_who_cross() -> None:
    a, b = _unit(1), _unit(2)  # unrelated: similarity about 0
    tracker = Tracker(CONFIG)
    for step in range(11):
        t = step * 0.2
        xa, xb = 10 + 20 * step, 210 - 20 * step  # they pass each other at step 5
        ids = tracker.update(t, step, [_obs(t, (xa, 50, xa + 60, 110), a), _obs(t, (xb, 50, xb + 60, 110), b)])
        assert ids == [1, 2]
    assert len(tracker.finish()) == 2


def test_tracker_gap_and_cut_rules() -> None:
    a, b = _unit(1), _unit(2)
    box = (10, 10, 70, 70)
    tracker = Tracker(CONFIG)
    assert tracker.update(0.0, 0, [_obs(0.0, box, a)]) == [1]
    # A cut: same place, other person -> new track, although the boxes overlap fully.
    assert tracker.update(0.2, 5, [_obs(0.2, box, b)], cut=True) == [2]
    # Across the cut, A again somewhere else: re-identified by embedding (gap 0.4 s < 2 s).
    assert tracker.update(0.4, 10, [_obs(0.4, (200, 10, 260, 70), _near(a, 9))]) == [1]
    # A face that looks only vaguely like A (below the relink bar), far away: a new track.
    vague = _near(a, 10, noise=1.2)
    assert 0.5 < float(np.dot(vague, a)) < 0.9
    assert tracker.update(0.6, 15, [_obs(0.6, (100, 100, 160, 160), vague)]) == [3]
    # A again after 3 s away (> relink_gap_s): the old track has ended, a new one starts.
    assert tracker.update(3.6, 90, [_obs(3.6, (200, 10, 260, 70), a)]) == [4]
    tracks = tracker.finish()
    assert [t.id for t in tracks] == [1, 2, 3, 4]
    assert (tracks[0].first_time, tracks[0].last_time) == (0.0, 0.4)
    assert tracks[0].segments == [[0.0, 0.4]]  # one track across the cut


def test_tracker_refuses_time_travel() -> None:
    tracker = Tracker()
    tracker.update(1.0, 25, [])
    with pytest.raises(ValueError):
        tracker.update(0.5, 12, [])


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_search_video_json_and_bad_files(
    scenario: Scenario, enrolled_home_copy: Path, tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    proc = run_cli("search", scenario.path, "--json", "--workers", "1", "--thumbnails", tmp_path / "thumbs")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["tracks"]) == 3
    assert {t["match"] for t in result["tracks"]} == {scenario.a, scenario.b, None}
    for track in result["tracks"]:
        assert "thumbnail_jpeg_base64" not in track
        assert Path(track["thumbnail_path"]).read_bytes().startswith(b"\xff\xd8\xff")

    text = tmp_path / "notes.mp4"
    text.write_text("hello\n")
    proc = run_cli("search", text)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_cli_enroll_from_video_then_find(
    scenario: Scenario, enrolled_home_copy: Path, face_subset: Any, tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    # A video of someone not yet in the gallery, who appears for 3 s.
    d = face_subset.other_identities[1]
    clip = tmp_path / "interview.avi"
    photo = face_subset.images(d)[0]
    write_video(
        clip, [Shot(0.0, 3.0, 4, (Appearance(photo, 0.0, 3.0, (0.4, 0.5), (0.6, 0.5)),))], duration_s=3.0, codec="MJPG"
    )
    args = ["enroll", clip, "--id", "R-77", "--name", "Report 77", "--source", "family", "--legal-basis", "consent"]
    proc = run_cli(*args, "--json", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["images_enrolled"] == 5 and out["tracks"] == 1 and out["error_count"] == 0
    assert out["track"]["first_seen_s"] == 0.0
    again = json.loads(run_cli(*args, "--json", "--workers", "1").stdout)  # idempotent
    assert again["images_enrolled"] == 0 and again["images_skipped"] == 5
    proc = run_cli("search", face_subset.probe(d), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["faces"][0]["match"] == "R-77"
    person = json.loads(run_cli("person", "show", "R-77", "--json").stdout)
    assert len(person["images"]) == 5 and person["source"] == "family"

    text = tmp_path / "notes.mp4"
    text.write_text("hello\n")
    proc = run_cli("enroll", text, "--id", "X", "--name", "X", "--source", "s", "--legal-basis", "l")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "neither a folder nor a supported video" in proc.stderr
