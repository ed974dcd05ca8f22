"""Synthetic test videos made from real face photos, for tests and benchmarks of video search.

A video is a list of :class:`Shot` s (a cut between each), and each shot a list of
:class:`Appearance` s: a photo that slides from one point to another between two times,
pasted with a soft oval edge on a background that differs from shot to shot. The truth
(who is on screen when) is therefore known exactly.

Writers: OpenCV's ``VideoWriter`` for ``mp4v`` (MP4/MOV), ``MJPG`` (AVI) and ``VP80`` (WebM);
H.264 (``h264``) needs PyAV (the ``av`` package, a development dependency), because the
FFmpeg inside opencv-python-headless has no H.264 encoder (it decodes H.264 fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np

WRITER_CODECS = {"mp4v", "MJPG", "VP80", "h264"}


@dataclass(frozen=True)
class Appearance:
    """One photo on screen from ``start_s`` to ``end_s``, its centre moving in a straight line
    from ``start_xy`` to ``end_xy`` (fractions of the frame's width and height)."""

    photo: Path
    start_s: float
    end_s: float
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]
    height: float = 0.6  # pasted photo height, as a fraction of the frame height

    def centre(self, time_s: float) -> tuple[float, float]:
        span = max(1e-9, self.end_s - self.start_s)
        a = min(1.0, max(0.0, (time_s - self.start_s) / span))
        return (
            self.start_xy[0] + a * (self.end_xy[0] - self.start_xy[0]),
            self.start_xy[1] + a * (self.end_xy[1] - self.start_xy[1]),
        )


@dataclass(frozen=True)
class Shot:
    """A stretch of video between two cuts: a background and the photos on it."""

    start_s: float
    end_s: float
    seed: int
    appearances: tuple[Appearance, ...] = field(default_factory=tuple)


@cache
def _photo(path: Path, crop: float = 0.64) -> np.ndarray:
    """Return the central part of a face photo (BGR): LFW photos are 250 px with the face in
    the middle ~110 px, and sometimes a bystander near the edge."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    height, width = image.shape[:2]
    ch, cw = int(height * crop), int(width * crop)
    top, left = (height - ch) // 2, (width - cw) // 2
    return image[top : top + ch, left : left + cw].copy()


@cache
def _oval_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.float32)
    cv2.ellipse(mask, (size // 2, size // 2), (int(size * 0.46), int(size * 0.49)), 0, 0, 360, 1.0, -1)
    blur = max(3, (size // 12) | 1)
    return cv2.GaussianBlur(mask, (blur, blur), 0)[:, :, None]


@cache
def _background(seed: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Shots alternate dark and bright so their histograms differ, as real cuts mostly do.
    base = 60 if seed % 2 else 170
    top = np.clip(rng.normal(base, 25, 3), 0, 255)
    bottom = np.clip(rng.normal(base, 25, 3), 0, 255)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = top[None, None, :] * (1 - ramp) + bottom[None, None, :] * ramp
    image = np.broadcast_to(image, (height, width, 3)).copy()
    for _ in range(6):  # a few soft shapes, so the background is not flat
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(height // 10, height // 3))
        colour = tuple(float(c) for c in np.clip(rng.normal(base, 40, 3), 0, 255))
        cv2.circle(image, centre, radius, colour, -1)
    return cv2.GaussianBlur(image, (0, 0), sigmaX=max(1.0, height / 60)).astype(np.uint8)


def render_frame(shots: list[Shot], time_s: float, width: int, height: int) -> np.ndarray:
    """Return the BGR frame at ``time_s``."""
    shot = next((s for s in shots if s.start_s <= time_s < s.end_s), None)
    if shot is None:
        return np.zeros((height, width, 3), dtype=np.uint8)
    frame = _background(shot.seed, width, height).copy()
    for app in shot.appearances:
        if not app.start_s <= time_s < app.end_s:
            continue
        size = max(8, int(app.height * height))
        photo = cv2.resize(_photo(app.photo), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        mask = _oval_mask(size)
        cx, cy = app.centre(time_s)
        left, top = int(cx * width - size / 2), int(cy * height - size / 2)
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(width, left + size), min(height, top + size)
        if x1 <= x0 or y1 <= y0:
            continue
        src = photo[y0 - top : y1 - top, x0 - left : x1 - left]
        alpha = mask[y0 - top : y1 - top, x0 - left : x1 - left]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = (alpha * src + (1 - alpha) * region).astype(np.uint8)
    return frame


def write_video(
    path: str | Path,
    shots: list[Shot],
    *,
    duration_s: float,
    width: int = 320,
    height: int = 240,
    fps: float = 25.0,
    codec: str = "mp4v",
    noise: float = 0.0,
    bitrate: int | None = None,
) -> Path:
    """Render ``shots`` into a video file at ``path``; return the path.

    ``codec``: ``mp4v`` (for .mp4/.mov), ``MJPG`` (.avi), ``VP80`` (.webm) or ``h264`` (.mp4,
    .mov or .mkv; needs PyAV). ``noise``: standard deviation of grain added to every frame, as
    a camera sensor makes. ``bitrate`` (bits per second, H.264 only): encode at this rate instead
    of constant quality, as phone cameras do (5-10 Mbit/s at 720p), which sets the decoding cost.

    Raises:
        ValueError: an unknown codec. RuntimeError: the writer cannot be opened (or PyAV is
        missing for ``h264``).
    """
    if codec not in WRITER_CODECS:
        raise ValueError(f"unknown codec {codec!r}; use one of {sorted(WRITER_CODECS)}")
    path = Path(path)
    frames = int(round(duration_s * fps))
    grain = _Grain(width, height, noise)
    if codec == "h264":
        _write_h264(path, shots, frames, width, height, fps, grain, bitrate)
        return path
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} to {path.name}")
    try:
        for number in range(frames):
            writer.write(grain(render_frame(shots, number / fps, width, height), number))
    finally:
        writer.release()
    return path


class _Grain:
    """Adds fresh-looking noise to frames cheaply: a few noise fields, shifted differently each frame."""

    def __init__(self, width: int, height: int, sigma: float) -> None:
        self.sigma = sigma
        rng = np.random.default_rng(7)
        self.fields = [rng.normal(0.0, sigma, (height, width, 3)).astype(np.int16) for _ in range(3)] if sigma else []

    def __call__(self, frame: np.ndarray, number: int) -> np.ndarray:
        if not self.fields:
            return frame
        field = np.roll(self.fields[number % 3], shift=(number * 7) % frame.shape[1], axis=1)
        return np.clip(frame.astype(np.int16) + field, 0, 255).astype(np.uint8)


def _write_h264(
    path: Path, shots: list[Shot], frames: int, width: int, height: int, fps: float, grain: _Grain, bitrate: int | None
) -> None:
    try:
        import av
    except ImportError:  # pragma: no cover - a development dependency
        raise RuntimeError("writing H.264 needs PyAV (pip install av)") from None
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if bitrate:
            stream.bit_rate = bitrate
            stream.options = {"preset": "veryfast"}
        else:
            stream.options = {"preset": "veryfast", "crf": "23"}
        for number in range(frames):
            pixels = grain(render_frame(shots, number / fps, width, height), number)
            image = av.VideoFrame.from_ndarray(pixels, format="bgr24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
