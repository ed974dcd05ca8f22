"""Video in the CLI: ``facetrace search VIDEO`` and ``facetrace enroll VIDEO --id ... --name ...``.

``facetrace.cli.main`` dispatches here when the file's magic bytes say it is a video.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from facetrace.cli.output import console, emit_json, fail, progress_bar
from facetrace.config import get_settings
from facetrace.errors import FacetraceError
from facetrace.gallery import EnrollItem, Gallery
from facetrace.vision.video import is_video_file


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def _bar_update(update: Any) -> Any:
    # The video's frame count may be unknown (0): show an indeterminate bar then.
    return lambda done, total, errors: update(done, total or None, errors)


def save_thumbnails(result: dict[str, Any], folder: Path) -> None:
    """Write each track's thumbnail as ``folder/VIDEO-track-N.jpg``, replacing the base64 text
    in ``result`` by ``thumbnail_path``.

    Raises:
        FacetraceError: the folder cannot be created or written.
    """
    import base64

    try:
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(result["video"]["name"]).stem
        for track in result["tracks"]:
            data = track.pop("thumbnail_jpeg_base64", None)
            track["thumbnail_path"] = None
            if data:
                target = folder / f"{stem}-track-{track['track']}.jpg"
                target.write_bytes(base64.b64decode(data))
                track["thumbnail_path"] = str(target)
    except OSError as exc:
        raise FacetraceError(f"{folder}: cannot write thumbnails ({exc.strerror})") from None


def search_video_command(path: Path, *, top: int, json_out: bool, thumbnails: Path | None, workers: int | None) -> None:
    """Search every person tracked in the video at ``path``; print the tracks and candidates."""

    gallery = Gallery(get_settings())
    try:
        with progress_bar("analysing video", enabled=not json_out and sys.stderr.isatty()) as update:
            result = gallery.search_video(
                path, name=path.name, top_k=top, progress=_bar_update(update), workers=workers
            )
    finally:
        gallery.close()
    if thumbnails is not None:
        save_thumbnails(result, thumbnails)
    if json_out:
        emit_json(result)
        return
    video, proc, policy = result["video"], result["processing"], result["policy"]
    console.print(
        f"{video['name']}: {_clock(video['duration_s'])} of {video['width']}x{video['height']} video at "
        f"{video['fps']:g} fps ({video['codec']} in {video['container']}); {len(result['tracks'])} track(s); "
        f"gallery of {result['gallery']['persons']} persons",
        markup=False,
        highlight=False,
    )
    console.print(
        f"frames: {proc['frames_read']} read, {proc['frames_decoded']} decoded ({proc['share_decoded']:.0%}), "
        f"{proc['frames_analysed']} analysed ({proc['share_analysed']:.0%}); {proc['scene_changes']} scene change(s); "
        f"{proc['speed']}x real time",
        markup=False,
        highlight=False,
    )
    for warning in proc["warnings"]:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    console.print(
        f"threshold {policy['threshold']:.3f} for target FPIR {policy['target_fpir']}: {policy['explanation']}",
        markup=False,
        highlight=False,
    )
    for track in result["tracks"]:
        verdict = f"MATCH {track['match']}" if track["match"] else "no match"
        where = f" thumbnail {track['thumbnail_path']}" if track.get("thumbnail_path") else ""
        console.print(
            f"\ntrack {track['track']}: {_clock(track['first_seen_s'])}-{_clock(track['last_seen_s'])}, "
            f"{track['faces']} face(s), best quality {track['quality']:.0f}: {verdict}{where}",
            markup=False,
            highlight=False,
        )
        table = Table("rank", "person", "name", "score", "FPIR", "decision")
        for cand in track["candidates"]:
            table.add_row(
                str(cand["rank"]),
                cand["person"]["external_id"],
                cand["person"]["name"],
                f"{cand['score']:.3f}",
                f"{cand['fpir']:.2g}",
                ("match: " if cand["match"] else "no: ") + cand["reason"],
            )
        if track["candidates"]:
            console.print(table)


def enroll_video_command(
    path: Path,
    *,
    person_id: str | None,
    name: str | None,
    source: str | None,
    legal_basis: str | None,
    workers: int,
    json_out: bool,
) -> None:
    """Enroll one person from the video at ``path`` (the best faces of its longest track)."""

    if not is_video_file(path):
        fail(f"{path}: neither a folder nor a supported video (MP4, MOV, WebM/Matroska or AVI)")
    if not person_id or not name:
        fail("enrolling from a video needs --id and --name for the person")
    if not source or not legal_basis:
        fail("enrolling from a video needs --source and --legal-basis (every record carries its provenance)")
    item = EnrollItem(
        external_id=person_id or "",
        name=name or "",
        images=[],
        source=source or "",
        legal_basis=legal_basis or "",
        attributes={"enrolled_from_video": path.name},
    )
    gallery = Gallery(get_settings())
    try:
        with progress_bar("analysing video", enabled=not json_out and sys.stderr.isatty()) as update:
            result = gallery.enroll_video(item, path, progress=_bar_update(update), workers=workers or None)
    finally:
        gallery.close()
    if json_out:
        emit_json(result)
    else:
        track = result["track"]
        console.print(
            f"enrolled {result['images_enrolled']} frame(s) of track {track['track']} "
            f"({_clock(track['first_seen_s'])}-{_clock(track['last_seen_s'])}, the longest of {result['tracks']}) "
            f"for {person_id}; {result['images_skipped']} already enrolled; {result['error_count']} error(s)",
            markup=False,
            highlight=False,
        )
        for error in result["errors"]:
            console.print(f"  {error['file']}: {error['error']}", markup=False, highlight=False)
    if result["images_enrolled"] == 0 and result["images_skipped"] == 0:
        raise SystemExit(1)
