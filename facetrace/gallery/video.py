"""Video in the gallery: search every person who appears in a video, or enroll one from it.

A video is analysed by :func:`facetrace.vision.video.analyze_video` into tracks; each track's
template (the quality-weighted mean of its best faces) is searched like a face, with the
same calibrated decisions as an image search (:meth:`Gallery.search_templates`).

The tracker's two similarity bars are cosines at two points of the model's calibration: an
IoU-linked face must score at least the cosine of FMR 0.5 with its track (a lax bar that only
stops identity swaps), and a face re-identified across a cut or a gap at least the cosine of
FMR 0.001 (see :func:`tracker_config`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facetrace.errors import NoFaceError, VideoError
from facetrace.gallery.enrollment import EnrollOutcome
from facetrace.gallery.results import Probe
from facetrace.gallery.sources import EnrollItem
from facetrace.store.media import sha256_bytes
from facetrace.vision.decode import ImageInput
from facetrace.vision.parallel import default_workers
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.vision.quality import Quality
from facetrace.vision.track import Observation, Track, TrackerConfig
from facetrace.vision.video import (
    CancelFn,
    ProgressFn,
    SamplingConfig,
    VideoAnalysis,
    VideoLimits,
    analyze_video,
    open_video,
    video_analyzer_options,
)

if TYPE_CHECKING:  # only a type: the Gallery calls into this module
    from facetrace.gallery.service import Gallery

CONTINUITY_FMR = 0.5
RELINK_FMR = 0.001


def video_limits(gallery: Gallery) -> VideoLimits:
    """Return the deployment's video limits."""
    s = gallery.settings
    return VideoLimits(
        max_bytes=s.video_max_bytes,
        max_seconds=s.video_max_seconds,
        max_pixels=s.video_max_pixels,
        max_frames=s.video_max_frames,
    )


def tracker_config(gallery: Gallery) -> TrackerConfig:
    """Return the tracker thresholds (see the module docstring).

    The tracker compares raw cosines of two probe faces, so the bars come from the calibration
    only when it is a calibration of raw cosines for this model; otherwise (e.g. a calibration
    of cohort-normalised scores) the tracker keeps its defaults, which are the same two points
    of the dlib model's cosine calibration.
    """
    calibration = gallery.calibration
    if calibration.score_name != "cosine" or calibration.model_id != gallery.model_id:
        return TrackerConfig()
    return TrackerConfig(
        continuity_score=calibration.threshold(CONTINUITY_FMR, 1),
        relink_score=calibration.threshold(RELINK_FMR, 1),
    )


def analyzer_options(gallery: Gallery) -> dict[str, Any]:
    """Return the options that rebuild the gallery's face model for video in worker processes.

    Raises:
        ConfigError: the gallery's model cannot be reproduced for video.
    """
    return video_analyzer_options(gallery.analyzer, upsample=gallery.settings.video_detect_upsample)


def analyze(
    gallery: Gallery,
    source: str | Path | bytes,
    *,
    name: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    workers: int | None = None,
    isolate: bool = False,
) -> VideoAnalysis:
    """Return the tracks of a video analysed with the gallery's model, limits and settings.

    Raises:
        VideoError, VideoTooLargeError, CancelledError: see :func:`analyze_video`.
    """
    count = gallery.settings.workers if workers is None else workers
    return analyze_video(
        source,
        name=name,
        limits=video_limits(gallery),
        sampling=SamplingConfig(sample_fps=gallery.settings.video_sample_fps),
        tracking=tracker_config(gallery),
        analyzer_options=analyzer_options(gallery),
        workers=count or default_workers(),
        isolate=isolate,
        progress=progress,
        cancel=cancel,
    )


def search_video(
    gallery: Gallery,
    source: str | Path | bytes,
    *,
    name: str | None = None,
    top_k: int = 5,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    workers: int | None = None,
    isolate: bool = False,
) -> dict[str, Any]:
    """Find, track and search every person who appears in a video; return the JSON-ready result.

    ``source`` is a path or the file's bytes. The result holds ``video`` (header facts),
    ``processing`` (frames read, decoded and analysed, speed, warnings such as a truncated
    stream), ``gallery`` and ``policy`` as in an image search, and ``tracks``: per track its
    time span (``first_seen_s``, ``last_seen_s``, ``segments``), its best faces, a JPEG
    thumbnail of its best face (``thumbnail_jpeg_base64``) and its calibrated ``candidates``
    and ``match``, decided exactly as for a face.

    ``workers``: analysis processes (default: the ``workers`` setting); ``isolate``: never
    analyse in this process (see :func:`analyze_video`).

    Raises:
        VideoError: not a usable video. VideoTooLargeError: over the limits.
        CancelledError: ``cancel`` was set.
    """
    analysis = analyze(gallery, source, name=name, progress=progress, cancel=cancel, workers=workers, isolate=isolate)
    found = gallery.search_templates([Probe(t.template, t.best_quality) for t in analysis.tracks], top_k=top_k)
    tracks = []
    for track, decision in zip(analysis.tracks, found.decisions, strict=True):
        thumbnail = track.thumbnail_jpeg()
        tracks.append(
            {
                **track.as_dict(),
                "thumbnail_jpeg_base64": base64.b64encode(thumbnail).decode("ascii") if thumbnail else None,
                **decision.to_dict(),
            }
        )
    processing = analysis.stats.as_dict()
    processing["sample_fps"] = gallery.settings.video_sample_fps
    processing["tracking"] = {k: round(v, 4) for k, v in vars(tracker_config(gallery)).items()}
    return {"video": analysis.info.as_dict(), "processing": processing, **found.policy.to_dict(), "tracks": tracks}


def _face_of(obs: Observation) -> DetectedFace:
    quality = dict(obs.detail.get("quality", {}))
    return DetectedFace(
        box=obs.box,
        landmarks=[(float(x), float(y)) for x, y in obs.detail.get("landmarks", [])],
        detector=str(obs.detail.get("detector", "hog")),
        detection_score=float(obs.detail.get("detection_score", 0.0)),
        quality=Quality(
            score=float(obs.quality),
            eye_distance_px=float(quality.get("eye_distance_px", 0.0)),
            sharpness=float(quality.get("sharpness", 0.0)),
            detector_score=float(quality.get("detector_score", 0.0)),
            yaw_deg=float(quality.get("yaw_deg", 0.0)),
        ),
        embedding=np.asarray(obs.embedding, dtype=np.float32),
        model_id=str(obs.detail.get("model_id", "")),
    )


def _frames_as_jpeg(path: Path, wanted: set[int], gallery: Gallery, name: str) -> dict[int, bytes]:
    """Return the JPEG bytes of the frames numbered ``wanted``, read in order (exact, unlike seeking)."""
    cap, _ = open_video(path, video_limits(gallery), name=name)
    out: dict[int, bytes] = {}
    try:
        index = -1
        last = max(wanted)
        while index < last and cap.grab():
            index += 1
            if index in wanted:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    encoded, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    if encoded:
                        out[index] = buf.tobytes()
    finally:
        cap.release()
    return out


def choose_track(tracks: list[Track]) -> Track:
    """Return the track to enroll from a video of one person: the longest (most faces seen),
    then the one with the best face.

    Raises:
        NoFaceError: no track at all.
    """
    if not tracks:
        raise NoFaceError("no face found in the video")
    return max(tracks, key=lambda t: (t.observations, t.best_quality))


def enroll_video(
    gallery: Gallery,
    item: EnrollItem,
    source: str | Path,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Enroll ``item``'s person from a video file: the best faces (by quality, at most the
    tracker's ``keep_best``) of the video's longest track become reference faces, each stored
    as the full frame it was seen in (JPEG), with the item's provenance. Idempotent like
    :meth:`Gallery.enroll`. Return the enroll outcome (``EnrollOutcome.as_dict``) with the
    ``track`` used and the number of ``tracks`` in the video (the others are ignored).

    Raises:
        VideoError: not a usable video. NoFaceError: no face in it, or none of enough quality.
        CancelledError: ``cancel`` was set.
    """
    path = Path(source)
    label = path.name
    analysis = analyze(gallery, path, name=label, progress=progress, cancel=cancel, workers=workers)
    track = choose_track(analysis.tracks)
    usable = [o for o in track.best if o.quality >= gallery.settings.min_quality]
    if not usable:
        raise NoFaceError(
            f"{label}: the faces of the longest track are below the minimum quality {gallery.settings.min_quality:.0f}"
        )
    frames = _frames_as_jpeg(path, {o.frame for o in usable}, gallery, label)
    if not frames:
        raise VideoError(f"{label}: the chosen frames could not be read again")
    outcome = EnrollOutcome()
    gallery.index()  # open and sync first, so new faces go straight into it
    existing = gallery.enroller.enrolled_pairs({item.external_id})
    try:
        for obs in usable:
            data = frames.get(obs.frame)
            where = f"{label} frame {obs.frame} ({obs.time_s:.2f} s)"
            if data is None:
                outcome.refuse(where, item.external_id, "frame not readable again")
                continue
            digest = sha256_bytes(data)
            if (item.external_id, digest) in existing:
                outcome.images_skipped += 1
                continue
            existing.add((item.external_id, digest))
            frame = ImageInput(f"{path.stem}_frame{obs.frame:07d}.jpg", data)
            error = gallery.enroller.enroll_analysed(item, frame, digest, [_face_of(obs)], outcome)
            if error:
                outcome.refuse(where, item.external_id, error, name=frame.name)
    finally:
        gallery.keeper.save()
    summary = track.as_dict()
    summary.pop("best_faces", None)
    return {**outcome.as_dict(), "track": summary, "tracks": len(analysis.tracks)}
