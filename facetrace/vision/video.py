"""Videos: safe decoding, adaptive frame sampling, and face tracks.

Decoding uses OpenCV's FFmpeg backend (``cv2.VideoCapture``). A file is accepted only when
its magic bytes name a container we support (MP4, QuickTime MOV, Matroska/WebM, AVI),
whatever its name, and only within the configured limits on file size, resolution, frame
count and duration. The limits are checked on the header values before any frame is
decoded, and again while decoding, so a file whose header lies is still stopped.

Sampling: every frame is *grabbed* (the codec decodes it: inter-coded video cannot be
decoded otherwise), but only some are *retrieved* (converted to pixels we look at):

- one frame every ``1 / sample_fps`` seconds is analysed (faces detected and embedded);
- ``scene_check_fps`` times a second a frame is retrieved and shrunk to a 64x36 grey
  thumbnail whose 32-bin histogram is compared with the previous one; a total-variation
  distance above ``scene_threshold`` is a scene cut, and that frame is analysed at once.

The analysed frames go to a pool of worker processes (each holds its own models) with a
bounded number of frames in flight, and come back in order to the :class:`Tracker`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facetrace.errors import CancelledError, ConfigError, FacetraceError, VideoError, VideoTooLargeError
from facetrace.fsutil import reading
from facetrace.vision.detect import Detection, detect_cnn, detect_hog
from facetrace.vision.dlib_onnx import OnnxDlibResnetEmbedder
from facetrace.vision.embed import DlibResnetEmbedder
from facetrace.vision.pipeline import FaceAnalyzer
from facetrace.vision.track import Observation, Track, Tracker, TrackerConfig

# FFmpeg prints its own complaints about broken files on stderr; the caller gets a
# VideoError instead. OpenCV reads this when its FFmpeg backend first opens a file.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi"}
CONTAINER_NAMES = {"mp4": "MP4", "mov": "QuickTime MOV", "webm": "WebM", "mkv": "Matroska", "avi": "AVI"}
SNIFF_BYTES = 64
MAX_SIDE = 16384  # no codec we accept encodes wider or taller frames
MAX_FPS = 1000.0

ProgressFn = Callable[[int, int, int], None]  # frames done, frames in all (0 = unknown), errors
CancelFn = threading.Event | Callable[[], bool]

# QuickTime files written before the ftyp box existed start with one of these atoms.
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def sniff_video_format(head: bytes) -> str | None:
    """Return the container named by the file's first bytes: ``mp4``, ``mov``, ``webm``,
    ``mkv`` or ``avi``; None when they name none of them."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in _QT_ATOMS:
        size = struct.unpack(">I", head[:4])[0]
        if size in (0, 1) or size >= 8:
            return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:SNIFF_BYTES] else "mkv"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def is_video_file(path: str | Path) -> bool:
    """Whether the file at ``path`` starts like a supported video (False when unreadable)."""
    try:
        with open(path, "rb") as handle:
            return sniff_video_format(handle.read(SNIFF_BYTES)) is not None
    except OSError:
        return False


@dataclass(frozen=True)
class VideoLimits:
    """What a video may be at most. ``facetrace.config.Settings`` holds the deployment's values."""

    max_bytes: int = 4 * 1024**3
    max_seconds: float = 4 * 3600.0
    max_pixels: int = 4096 * 2304
    max_frames: int = 1_000_000


@dataclass(frozen=True)
class SamplingConfig:
    """Which frames are analysed (see the module docstring)."""

    sample_fps: float = 5.0
    scene_check_fps: float = 10.0
    scene_threshold: float = 0.35


@dataclass(frozen=True)
class VideoInfo:
    """What the header says about a video."""

    name: str
    container: str
    codec: str
    width: int
    height: int
    fps: float
    frame_count: int  # 0 when the header does not say
    duration_s: float  # 0 when unknown
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fps"] = round(self.fps, 3)
        out["duration_s"] = round(self.duration_s, 3)
        return out


@dataclass
class VideoStats:
    """What decoding and analysis did: how many frames were read, decoded and analysed."""

    frames_read: int = 0  # grabbed: demuxed and decoded by the codec
    frames_decoded: int = 0  # retrieved: converted to pixels (scene check or analysis)
    frames_analysed: int = 0  # faces detected and embedded
    frames_failed: int = 0  # could not be retrieved or analysed
    scene_changes: int = 0
    faces: int = 0
    seconds_read: float = 0.0  # timestamp of the last frame read
    analysis_cpu_s: float = 0.0  # CPU time spent detecting and embedding, in whichever process
    wall_s: float = 0.0
    workers: int = 1
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        read = max(1, self.frames_read)
        return {
            "frames_read": self.frames_read,
            "frames_decoded": self.frames_decoded,
            "frames_analysed": self.frames_analysed,
            "frames_failed": self.frames_failed,
            "share_decoded": round(self.frames_decoded / read, 4),
            "share_analysed": round(self.frames_analysed / read, 4),
            "scene_changes": self.scene_changes,
            "faces": self.faces,
            "wall_s": round(self.wall_s, 3),
            "analysis_cpu_s": round(self.analysis_cpu_s, 3),
            "speed": round(self.seconds_read / self.wall_s, 3) if self.wall_s > 0 else None,
            "workers": self.workers,
            "warnings": list(self.warnings),
        }


@dataclass
class SampledFrame:
    """One frame chosen for analysis."""

    index: int
    time_s: float
    image: np.ndarray | None  # RGB
    cut: bool  # a scene cut happened since the previous sampled frame
    reason: str  # "interval" or "scene"


@dataclass
class VideoAnalysis:
    """The outcome of :func:`analyze_video`."""

    info: VideoInfo
    stats: VideoStats
    tracks: list[Track]


# ---------------------------------------------------------------------------------------------
# Opening


def _is_cancelled(cancel: CancelFn | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@contextlib.contextmanager
def video_file(source: str | Path | bytes, *, name: str | None = None, max_bytes: int | None = None) -> Iterator[Path]:
    """Yield a path for ``source``: the path itself, or a temporary file holding the bytes
    (removed afterwards), since OpenCV reads videos from files.

    Raises:
        VideoError: empty data.
        VideoTooLargeError: more than ``max_bytes`` bytes.
    """
    if not isinstance(source, bytes | bytearray):
        yield Path(source)
        return
    label = name or "video"
    if not source:
        raise VideoError(f"{label}: empty file")
    if max_bytes is not None and len(source) > max_bytes:
        raise VideoTooLargeError(f"{label}: {len(source):,} bytes exceeds the limit of {max_bytes:,} bytes")
    kind = sniff_video_format(bytes(source[:SNIFF_BYTES])) or "bin"
    handle = tempfile.NamedTemporaryFile(prefix="facetrace-video-", suffix=f".{kind}", delete=False)  # noqa: SIM115
    try:
        with handle:
            handle.write(source)
        yield Path(handle.name)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def _fourcc(value: float) -> str:
    code = int(value) if math.isfinite(value) and value > 0 else 0
    text = struct.pack("<I", code & 0xFFFFFFFF).decode("latin-1")
    return text.strip("\x00 ") if text.isprintable() else f"0x{code:08x}"


def open_video(
    path: str | Path, limits: VideoLimits | None = None, *, name: str | None = None
) -> tuple[Any, VideoInfo]:
    """Open the video at ``path`` after checking its size and magic bytes; return the open
    ``cv2.VideoCapture`` (the caller releases it) and the header facts.

    Raises:
        VideoError: missing, empty, not a supported container, unreadable (truncated, corrupt,
            unknown codec), no video stream, or absurd header values.
        VideoTooLargeError: over the file size, resolution, frame count or duration limits.
    """
    limits = limits or VideoLimits()
    path = Path(path)
    label = name or path.name
    with reading(label, VideoError, "a video"):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    if size == 0:
        raise VideoError(f"{label}: empty file")
    if size > limits.max_bytes:
        raise VideoTooLargeError(f"{label}: {size:,} bytes exceeds the limit of {limits.max_bytes:,} bytes")
    container = sniff_video_format(head)
    if container is None:
        raise VideoError(f"{label}: not a supported video (MP4, MOV, WebM/Matroska or AVI)")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise VideoError(
            f"{label}: cannot open the {CONTAINER_NAMES[container]} file (truncated, corrupt, or an unsupported codec)"
        )
    try:
        info = _header(cap, label, container, size, limits)
    except FacetraceError:
        cap.release()
        raise
    return cap, info


def _header(cap: Any, label: str, container: str, size: int, limits: VideoLimits) -> VideoInfo:
    width = cap.get(cv2.CAP_PROP_FRAME_WIDTH)
    height = cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    values = (width, height, fps, count)
    if not all(math.isfinite(v) for v in values):
        raise VideoError(f"{label}: the header holds impossible values")
    if width <= 0 or height <= 0:
        raise VideoError(f"{label}: no video stream")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > limits.max_pixels:
        raise VideoTooLargeError(
            f"{label}: {int(width)}x{int(height)} frames exceed the limit of {limits.max_pixels:,} pixels"
        )
    if not 0 < fps <= MAX_FPS:
        raise VideoError(f"{label}: the header gives an impossible frame rate ({fps:g} per second)")
    frame_count = int(count) if count > 0 else 0
    if frame_count > limits.max_frames:
        raise VideoTooLargeError(f"{label}: {frame_count:,} frames exceeds the limit of {limits.max_frames:,}")
    duration = frame_count / fps if frame_count else 0.0
    if duration > limits.max_seconds:
        raise VideoTooLargeError(
            f"{label}: {duration:,.0f} s exceeds the limit of {limits.max_seconds:,.0f} s of video"
        )
    return VideoInfo(
        name=label,
        container=container,
        codec=_fourcc(cap.get(cv2.CAP_PROP_FOURCC)),
        width=int(width),
        height=int(height),
        fps=float(fps),
        frame_count=frame_count,
        duration_s=duration,
        size_bytes=size,
    )


def probe_video(path: str | Path, limits: VideoLimits | None = None, *, name: str | None = None) -> VideoInfo:
    """Return the header facts of the video at ``path`` (see :func:`open_video` for errors)."""
    cap, info = open_video(path, limits, name=name)
    cap.release()
    return info


# ---------------------------------------------------------------------------------------------
# Sampling


def _thumbnail_histogram(bgr: np.ndarray) -> np.ndarray:
    small = cv2.resize(bgr, (64, 36), interpolation=cv2.INTER_AREA)
    grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    return np.bincount((grey >> 3).ravel(), minlength=32).astype(np.float64) / grey.size


def sample_frames(
    cap: Any,
    info: VideoInfo,
    *,
    limits: VideoLimits | None = None,
    sampling: SamplingConfig | None = None,
    stats: VideoStats | None = None,
    cancel: CancelFn | None = None,
) -> Iterator[SampledFrame]:
    """Yield the frames to analyse from an open capture, in order (see the module docstring),
    counting what was read, decoded and analysed in ``stats``.

    Raises:
        VideoError: no frame could be decoded, or a frame changed to another size.
        VideoTooLargeError: more frames or seconds than the limits allow.
        CancelledError: ``cancel`` was set.
    """
    limits = limits or VideoLimits()
    sampling = sampling or SamplingConfig()
    stats = stats if stats is not None else VideoStats()
    interval = 1.0 / sampling.sample_fps
    check_step = max(1, round(info.fps / sampling.scene_check_fps))
    half_frame = 0.5 / info.fps
    next_sample = 0.0
    previous_hist: np.ndarray | None = None
    cut_pending = False
    last_time = -1.0
    index = -1
    while True:
        if _is_cancelled(cancel):
            raise CancelledError(f"{info.name}: cancelled after {max(0.0, last_time):.1f} s of video")
        try:
            grabbed = cap.grab()
        except cv2.error as exc:
            raise VideoError(f"{info.name}: cannot decode frame {index + 1} ({exc.err or exc})") from None
        if not grabbed:
            break
        index += 1
        stats.frames_read += 1
        if stats.frames_read > limits.max_frames:
            raise VideoTooLargeError(f"{info.name}: more than {limits.max_frames:,} frames")
        position = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        # Timestamps give the true time in variable-frame-rate video; fall back on the count.
        time_s = position if math.isfinite(position) and position > last_time else index / info.fps
        if time_s <= last_time:
            time_s = last_time + 1.0 / info.fps
        last_time = time_s
        stats.seconds_read = time_s + 1.0 / info.fps
        if time_s > limits.max_seconds:
            raise VideoTooLargeError(f"{info.name}: longer than the limit of {limits.max_seconds:,.0f} s")
        due = time_s + half_frame >= next_sample
        if not due and index % check_step:
            continue
        try:
            ok, bgr = cap.retrieve()
        except cv2.error:
            ok, bgr = False, None
        if not ok or bgr is None:
            stats.frames_failed += 1
            continue
        stats.frames_decoded += 1
        # A phone video's rotation flag may turn frames a quarter turn: either way round is fine.
        if (bgr.shape[0], bgr.shape[1]) not in ((info.height, info.width), (info.width, info.height)):
            raise VideoError(
                f"{info.name}: frame {index} is {bgr.shape[1]}x{bgr.shape[0]}, not {info.width}x{info.height}"
            )
        hist = _thumbnail_histogram(bgr)
        scene = previous_hist is not None and 0.5 * float(np.abs(hist - previous_hist).sum()) > sampling.scene_threshold
        previous_hist = hist
        if scene:
            stats.scene_changes += 1
            cut_pending = True
        if due or scene:
            stats.frames_analysed += 1
            next_sample = time_s + interval
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield SampledFrame(index, time_s, rgb, cut_pending, "scene" if scene and not due else "interval")
            cut_pending = False
    if stats.frames_read == 0 or stats.frames_decoded == 0:
        raise VideoError(f"{info.name}: no frame could be decoded (truncated or corrupt file)")
    # Both counts and times must fall short: a variable-frame-rate stream holds fewer frames
    # than duration x nominal rate without being truncated.
    short = info.frame_count and stats.frames_read < 0.98 * info.frame_count - 1
    if short and stats.seconds_read < 0.98 * info.duration_s:
        stats.warnings.append(
            f"the video ended after {stats.frames_read} of the {info.frame_count} frames its header declares: "
            "the file looks truncated, and only the part before the break was searched"
        )


# ---------------------------------------------------------------------------------------------
# Analysis of one frame (in a worker process or in this one)


VIDEO_DETECT_MAX_SIDE = 1280  # 720p frames are searched at full size


class VideoFaceAnalyzer(FaceAnalyzer):
    """A :class:`FaceAnalyzer` tuned for video frames: one detector pass at a fixed
    upsampling and no slow CNN fallback on frames without faces (most frames of most video).

    ``upsample=-1`` upsamples once when the working copy is under 800 px (faces down to
    about 40 px), else not at all (faces from about 80 px of the working copy).
    """

    def __init__(self, *, upsample: int = -1, **options: Any) -> None:
        options.setdefault("cnn_fallback", False)
        options.setdefault("detect_max_side", VIDEO_DETECT_MAX_SIDE)
        super().__init__(**options)
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> list[Detection]:
        work_side = min(max(image.shape[:2]), self.detect_max_side)
        upsample = self.upsample if self.upsample >= 0 else (1 if work_side < 800 else 0)
        if self.detector == "cnn":
            found = detect_cnn(image, max_side=self.detect_max_side, upsample=upsample)
        else:
            found = detect_hog(image, max_side=self.detect_max_side, upsample=upsample)
        return sorted(found, key=lambda d: d.area, reverse=True)


def build_video_analyzer(options: dict[str, Any]) -> VideoFaceAnalyzer:
    """Return a :class:`VideoFaceAnalyzer` from picklable options (what worker processes get):
    ``upsample`` and any :class:`FaceAnalyzer` keyword (``detector``, ``detect_max_side``,
    ``embedder``...)."""
    return VideoFaceAnalyzer(**options)


def video_analyzer_options(analyzer: FaceAnalyzer, *, upsample: int = -1) -> dict[str, Any]:
    """Return options that rebuild ``analyzer``'s face model for video, in any process: same
    detector, embedder and alignment (so the same model id), video detection settings, and
    dlib's own embedder swapped for its ONNX run (same templates, ~15x faster).

    Raises:
        ConfigError: the video analyzer would not reproduce ``analyzer``'s model id.
    """
    embedder = analyzer.embedder
    if isinstance(embedder, DlibResnetEmbedder) and not embedder.jitter:
        embedder = OnnxDlibResnetEmbedder(flip=embedder.flip)
    options: dict[str, Any] = {
        "detector": analyzer.detector,
        "max_pixels": analyzer.max_pixels,
        "upsample": upsample,
        "embedder": embedder,
    }
    for name in ("second_alignment",):  # alignment options of the pipeline, where it has them
        if hasattr(analyzer, name):
            options[name] = getattr(analyzer, name)
    if build_video_analyzer(options).model_id != analyzer.model_id:
        raise ConfigError(f"video analysis cannot reproduce the face model {analyzer.model_id}")
    return options


def face_crop(
    image: np.ndarray, box: tuple[int, int, int, int], *, margin: float = 0.3, max_side: int = 160
) -> np.ndarray:
    """Return the RGB crop around ``box`` widened by ``margin`` on each side, at most
    ``max_side`` pixels on its longer side (a thumbnail)."""
    left, top, right, bottom = box
    pad_x, pad_y = int((right - left) * margin), int((bottom - top) * margin)
    height, width = image.shape[:2]
    crop = image[max(0, top - pad_y) : min(height, bottom + pad_y), max(0, left - pad_x) : min(width, right + pad_x)]
    if not crop.size:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    scale = max_side / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def analyze_frame(analyzer: FaceAnalyzer, frame: SampledFrame) -> list[Observation]:
    """Return one :class:`Observation` per face in ``frame`` (with a thumbnail crop)."""
    assert frame.image is not None
    faces = analyzer.analyze(frame.image)
    out = []
    for face in faces:
        detail = face.as_dict()
        detail.pop("box", None)
        out.append(
            Observation(
                time_s=frame.time_s,
                frame=frame.index,
                box=face.box,
                embedding=face.embedding,
                quality=face.quality.score,
                detail=detail,
                crop=face_crop(frame.image, face.box),
            )
        )
    return out


_worker_analyzer: FaceAnalyzer | None = None


def _init_worker(options: dict[str, Any]) -> None:
    global _worker_analyzer
    _worker_analyzer = build_video_analyzer(options)


def _analyze_safely(analyzer: FaceAnalyzer, frame: SampledFrame) -> tuple[list[Observation] | str, float]:
    """Return the frame's faces (or why it failed) and the CPU seconds spent on it."""
    started = time.process_time()
    try:
        result: list[Observation] | str = analyze_frame(analyzer, frame)
    except FacetraceError:
        raise
    except Exception as exc:  # one bad frame must not lose the whole video
        result = f"frame {frame.index}: {type(exc).__name__}: {exc}"
    return result, time.process_time() - started


def _analyze_in_worker(frame: SampledFrame) -> tuple[list[Observation] | str, float]:
    assert _worker_analyzer is not None
    return _analyze_safely(_worker_analyzer, frame)


# ---------------------------------------------------------------------------------------------
# The whole video


def analyze_video(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    limits: VideoLimits | None = None,
    sampling: SamplingConfig | None = None,
    tracking: TrackerConfig | None = None,
    analyzer_options: dict[str, Any] | None = None,
    workers: int = 1,
    isolate: bool = False,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> VideoAnalysis:
    """Decode, sample, detect, embed and track every face of a video; return the tracks.

    ``workers`` > 1 analyses frames in that many processes while this one decodes (short
    videos are analysed here anyway: starting workers costs more than it saves).
    ``isolate`` always analyses in worker processes, however short the video and even with
    one worker: a server keeps the face models out of its own threads that way.
    ``progress(frames_done, frames_total, errors)`` is called as frames are analysed
    (``frames_total`` is 0 when the header does not say). ``cancel`` is a
    ``threading.Event`` or a callable; once set, the work stops at the next frame.

    Raises:
        VideoError: the file is not a usable video (see :func:`open_video`).
        VideoTooLargeError: over the configured limits.
        CancelledError: cancelled.
    """
    limits = limits or VideoLimits()
    options = dict(analyzer_options or {})
    started = time.perf_counter()
    with video_file(source, name=name, max_bytes=limits.max_bytes) as path:
        cap, info = open_video(path, limits, name=name)
        try:
            stats = VideoStats()
            tracker = Tracker(tracking)
            expected = info.duration_s * (sampling or SamplingConfig()).sample_fps
            use = max(1, workers)
            if use > 1 and not isolate and info.frame_count and expected < 8 * use:
                use = 1
            stats.workers = use
            frames = sample_frames(cap, info, limits=limits, sampling=sampling, stats=stats, cancel=cancel)
            total = info.frame_count

            def consume(frame: SampledFrame, outcome: tuple[list[Observation] | str, float]) -> None:
                result, cpu_s = outcome
                stats.analysis_cpu_s += cpu_s
                if isinstance(result, str):
                    stats.frames_failed += 1
                    if len(stats.warnings) < 20:
                        stats.warnings.append(result)
                    result = []
                stats.faces += len(result)
                tracker.update(frame.time_s, frame.index, result, cut=frame.cut)
                if progress:
                    progress(min(frame.index + 1, total) if total else frame.index + 1, total, stats.frames_failed)

            if use == 1 and not isolate:
                analyzer = build_video_analyzer(options)
                for frame in frames:
                    consume(frame, _analyze_safely(analyzer, frame))
                    frame.image = None
            else:
                _run_pool(frames, options, use, consume, cancel)
        finally:
            cap.release()
    if progress:
        progress(stats.frames_read, stats.frames_read, stats.frames_failed)
    stats.wall_s = time.perf_counter() - started
    return VideoAnalysis(info, stats, tracker.finish())


def _run_pool(
    frames: Iterator[SampledFrame],
    options: dict[str, Any],
    workers: int,
    consume: Callable[[SampledFrame, tuple[list[Observation] | str, float]], None],
    cancel: CancelFn | None,
) -> None:
    # forkserver: workers never inherit this process's threads (FAISS/OpenMP, an HTTP server).
    context = mp.get_context("forkserver")
    window = 2 * workers + 1  # frames in flight: keeps workers busy, bounds memory
    with context.Pool(workers, initializer=_init_worker, initargs=(options,)) as pool:
        pending: deque[tuple[SampledFrame, Any]] = deque()

        def collect() -> None:
            frame, handle = pending.popleft()
            while True:
                if _is_cancelled(cancel):
                    raise CancelledError(f"cancelled after {frame.time_s:.1f} s of video")
                try:
                    result = handle.get(timeout=0.25)
                    break
                except mp.TimeoutError:
                    continue
            consume(frame, result)

        for frame in frames:
            # The pool pickles the job later, in its own thread: hand it a copy, and let the
            # copy (and its pixels) go once the worker has it.
            job = replace(frame)
            frame.image = None
            pending.append((frame, pool.apply_async(_analyze_in_worker, (job,))))
            del job
            while len(pending) >= window:
                collect()
        while pending:
            collect()
