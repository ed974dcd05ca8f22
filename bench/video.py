"""Video search speed: seconds of video processed per second of wall time, and the share of
frames decoded (converted to pixels) and analysed (faces detected and embedded).

Makes a 720p 30 fps test video (20 s by default) from the committed real faces
(``tests/data/faces``): shots of 5 s with one to three people moving, entering and leaving,
cuts between shots, and stretches with nobody; H.264 when PyAV is installed (a development
dependency), else MPEG-4 part 2. Then runs the whole video search (decode, sample, detect,
embed, track, search an empty gallery) once per worker count asked for::

    .venv/bin/python bench/video.py [--seconds 20] [--workers 2 1] [--codec h264] [--keep out.mp4]

Goal: faster than real time (speed > 1) at 720p 30 fps on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from facetrace.config import get_settings
from facetrace.evaluation.synthetic_video import Appearance, Shot, write_video
from facetrace.gallery import Gallery

FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces"


def make_shots(seconds: float) -> list[Shot]:
    """Return 5-second shots cycling through four layouts of real faces."""
    people = sorted(p for p in FACES.iterdir() if p.is_dir() and p.name != "distractors")
    photos = [sorted(p.glob("*.jpg"))[0] for p in people]
    shots: list[Shot] = []
    start, n = 0.0, 0
    while start < seconds:
        end = min(seconds, start + 5.0)
        p = [photos[(3 * n + k) % len(photos)] for k in range(3)]
        layout = n % 4
        if layout == 0:  # one person walking across, large
            apps = (Appearance(p[0], start + 0.5, end - 0.5, (0.2, 0.5), (0.8, 0.45), 0.45),)
        elif layout == 1:  # two people, one enters half way
            apps = (
                Appearance(p[0], start, end, (0.3, 0.5), (0.35, 0.5), 0.35),
                Appearance(p[1], start + 2.0, end, (1.1, 0.5), (0.7, 0.5), 0.3),
            )
        elif layout == 2:  # three small faces, a crowd-like shot
            apps = tuple(
                Appearance(p[k], start, end, (0.2 + 0.3 * k, 0.4), (0.22 + 0.3 * k, 0.45), 0.22) for k in range(3)
            )
        else:  # nobody for 2 s, then one person
            apps = (Appearance(p[2], start + 2.0, end, (0.5, 0.5), (0.5, 0.5), 0.5),)
        shots.append(Shot(start, end, seed=100 + n, appearances=apps))
        start, n = end, n + 1
    return shots


def _idle_estimate(seconds: float, workers: int, main_cpu: float, analysis_cpu: float) -> float | None:
    """Return the speed an otherwise idle machine would reach, from CPU times (this machine is
    shared, so wall time measures the neighbours too): one process does everything with one
    worker; with more, the decode side and the workers share the cores."""
    cores = len(os.sched_getaffinity(0))
    busy = main_cpu if workers <= 1 else max((main_cpu + analysis_cpu) / cores, analysis_cpu / workers, main_cpu)
    return round(seconds / busy, 2) if busy > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="worker counts to run")
    parser.add_argument("--codec", default=None, help="h264 (needs PyAV), mp4v, MJPG or VP80")
    parser.add_argument("--sample-fps", type=float, default=5.0)
    parser.add_argument("--noise", type=float, default=3.0, help="sensor-like grain in every frame")
    parser.add_argument("--bitrate", type=float, default=6.0, help="H.264 bitrate in Mbit/s, as a phone records")
    parser.add_argument("--keep", type=Path, default=None, help="write the test video here and keep it")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    codec = args.codec
    if codec is None:
        try:
            import av  # noqa: F401

            codec = "h264"
        except ImportError:
            codec = "mp4v"
    with tempfile.TemporaryDirectory(prefix="facetrace-bench-") as tmp:
        video = args.keep or Path(tmp) / f"bench-{args.height}p.{'mkv' if codec == 'VP80' else 'mp4'}"
        started = time.perf_counter()
        write_video(
            video,
            make_shots(args.seconds),
            duration_s=args.seconds,
            width=args.width,
            height=args.height,
            fps=args.fps,
            codec=codec,
            noise=args.noise,
            bitrate=int(args.bitrate * 1e6) if codec == "h264" else None,
        )
        made_s = time.perf_counter() - started
        settings = get_settings(home=Path(tmp) / "home", video_sample_fps=args.sample_fps)
        gallery = Gallery(settings)
        runs = []
        try:
            for workers in args.workers:
                cpu = time.process_time()
                result = gallery.search_video(video, workers=workers)
                cpu = time.process_time() - cpu
                proc = result["processing"]
                runs.append(
                    {
                        "workers": proc["workers"],
                        "wall_s": proc["wall_s"],
                        "speed_x_real_time": proc["speed"],
                        # CPU time of this process (every thread, FFmpeg's included); with
                        # workers > 1 the analysis runs elsewhere and this is the decode side.
                        "main_process_cpu_s": round(cpu, 2),
                        # CPU time of face analysis, summed over the processes that did it.
                        "analysis_cpu_s": proc["analysis_cpu_s"],
                        "frames_read": proc["frames_read"],
                        "frames_decoded": proc["frames_decoded"],
                        "frames_analysed": proc["frames_analysed"],
                        "share_decoded": proc["share_decoded"],
                        "share_analysed": proc["share_analysed"],
                        "scene_changes": proc["scene_changes"],
                        "faces": proc["faces"],
                        "tracks": len(result["tracks"]),
                        "idle_estimate_x_real_time": _idle_estimate(args.seconds, workers, cpu, proc["analysis_cpu_s"]),
                    }
                )
        finally:
            gallery.close()
    report = {
        "video": {
            "seconds": args.seconds,
            "size": f"{args.width}x{args.height}",
            "fps": args.fps,
            "codec": codec,
            "bytes": result["video"]["size_bytes"],
            "bitrate_mbit_s": round(8 * result["video"]["size_bytes"] / args.seconds / 1e6, 2),
            "noise": args.noise,
            "made_in_s": round(made_s, 2),
        },
        "sample_fps": args.sample_fps,
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "runs": runs,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    v = report["video"]
    load = os.getloadavg()[0]
    print(
        f"{v['seconds']:g} s of {v['size']} at {v['fps']:g} fps ({v['codec']}, {v['bitrate_mbit_s']} Mbit/s), "
        f"{report['machine']['cpus']} CPU(s), load average {load:.1f}"
    )
    for run in runs:
        print(
            f"workers={run['workers']}: {run['wall_s']:.1f} s wall -> {run['speed_x_real_time']:.2f}x real time "
            f"(CPU: this process {run['main_process_cpu_s']:.1f} s, analysis {run['analysis_cpu_s']:.1f} s; "
            f"on idle cores ~{run['idle_estimate_x_real_time']}x); "
            f"frames read {run['frames_read']}, decoded {run['frames_decoded']} ({run['share_decoded']:.0%}), "
            f"analysed {run['frames_analysed']} ({run['share_analysed']:.0%}); "
            f"{run['scene_changes']} cuts, {run['faces']} faces, {run['tracks']} tracks"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
