"""Fuzz target: video container sniffing, header limits and frame decoding
(``facetrace.vision.video``: ``sniff_video_format``, ``probe_video``, ``sample_frames``).

Any input must be refused with a :class:`facetrace.errors.FacetraceError`, or accepted only
within ``LIMITS``: the header checks (size, resolution, frame count, duration) and the checks
while decoding (frames read, time reached, frame size). Any other exception, a failed check,
a hang or a memory blow-up is a crash. See ``fuzz/README.md``.

    .venv/bin/python fuzz/fuzz_video.py -max_total_time=300 CORPUS_COPY fuzz/corpus/video
"""

from __future__ import annotations

import os
import sys
from typing import Any

# FFmpeg's own complaints about broken files would flood the output.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

_mod: dict[str, Any] = {}


def load() -> None:
    """Import the code under test (inside ``atheris.instrument_imports`` when fuzzing)."""
    from facetrace.errors import FacetraceError
    from facetrace.vision import video

    _mod.update(
        video=video,
        error=FacetraceError,
        # Small limits: each run stays fast, and the fuzzer can reach every one of them.
        limits=video.VideoLimits(max_bytes=1 << 20, max_seconds=20.0, max_pixels=640 * 480, max_frames=60),
    )


def check(data: bytes) -> None:
    """Sniff, probe and decode ``data`` as a video; raise (a crash) when it is mishandled.

    Raises:
        AssertionError: something beyond the limits was accepted, or the sniffer disagrees with itself.
        Exception: anything raised that is not a FacetraceError.
    """
    if not _mod:
        load()
    video, error, limits = _mod["video"], _mod["error"], _mod["limits"]
    kind = video.sniff_video_format(data[: video.SNIFF_BYTES])
    assert kind is None or kind in video.CONTAINER_NAMES, kind
    try:
        with video.video_file(data, name="fuzz", max_bytes=limits.max_bytes) as path:
            assert path.read_bytes() == data
            cap, info = video.open_video(path, limits, name="fuzz")
            try:
                assert kind is not None, "an unsniffable file was opened"
                assert info.container == kind
                assert 0 < info.width * info.height <= limits.max_pixels, info
                assert max(info.width, info.height) <= video.MAX_SIDE, info
                assert 0 < info.fps <= video.MAX_FPS, info
                assert 0 <= info.frame_count <= limits.max_frames, info
                assert 0 <= info.duration_s <= limits.max_seconds, info
                assert info.size_bytes == len(data) <= limits.max_bytes
                stats = video.VideoStats()
                last = -1.0
                for frame in video.sample_frames(cap, info, limits=limits, stats=stats):
                    assert frame.image is not None and frame.image.dtype.name == "uint8"
                    assert frame.image.shape[0] * frame.image.shape[1] <= limits.max_pixels, frame.image.shape
                    assert last < frame.time_s <= limits.max_seconds, (last, frame.time_s)
                    last = frame.time_s
                assert 0 < stats.frames_read <= limits.max_frames, stats
            finally:
                cap.release()
    except error as exc:
        assert exc.message.strip() and "\n" not in exc.message, repr(exc.message)


def main() -> None:
    import warnings

    import atheris

    # Libraries warn about every odd field of a hostile file: noise, thousands of times a second.
    warnings.simplefilter("ignore")

    with atheris.instrument_imports(include=["facetrace"]):
        load()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
