"""A bounded loopback load check of the API's search: searches per second and latency percentiles.

It prepares a throwaway data home (a few identities of ``tests/data/faces`` enrolled, one examiner
with an API token), starts ``facetrace serve`` on 127.0.0.1 in a subprocess, then runs 1, 4 and 16
concurrent clients (httpx, one thread each) posting searches with a case reference and a purpose,
for at most ``--seconds`` or ``--max-searches`` per level, whichever comes first. It prints, per
concurrency level, searches per second, the p50/p95 latency, and the p95 latency of a health check
polled meanwhile (how responsive the server stays), then stops the server and removes the home.
Nothing leaves the machine.

    .venv/bin/python bench/api_load.py [--identities 8] [--seconds 20] [--max-searches 300]
        [--levels 1,4,16] [--analysis-processes 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # running from a checkout without the package installed
    sys.path.insert(0, str(REPO_ROOT))

from facetrace.config import Settings  # noqa: E402
from facetrace.gallery import EnrollItem, Gallery  # noqa: E402
from facetrace.store.accounts import create_token, create_user  # noqa: E402
from facetrace.vision.parallel import default_workers  # noqa: E402

FACES = REPO_ROOT / "tests" / "data" / "faces"
HOST = "127.0.0.1"  # loopback only
WHY = {"case_reference": "BENCH-1", "purpose": "load check of the search endpoint"}


def prepare_home(home: Path, identities: int) -> tuple[str, list[Path]]:
    """Enroll ``identities`` people (2 photos each) and make an examiner; return the token and the probes."""
    names = sorted(p.name for p in FACES.iterdir() if p.is_dir() and p.name != "distractors")
    names = [n for n in names if len(list((FACES / n).glob("*.jpg"))) >= 3][:identities]
    if not names:
        raise SystemExit(f"no identities with 3+ photos under {FACES}")
    settings = Settings(home=home, workers=1, database_url=None, vector_url=None)  # type: ignore[call-arg]
    gallery = Gallery(settings)
    try:
        items = []
        probes = []
        for name in names:
            photos = sorted((FACES / name).glob("*.jpg"))
            items.append(EnrollItem(name, name.replace("_", " "), photos[:2], "bench", "test data"))
            probes.append(photos[2])
        outcome = gallery.enroll(items, workers=1)
        if outcome.errors:
            print(f"note: {len(outcome.errors)} enrollment error(s)", file=sys.stderr)
        with gallery.db.session() as session:
            user = create_user(session, "bench", "bench password 123", ["examiner"])
            _, token = create_token(session, user, "api_load", days=1)
    finally:
        gallery.close()
    return token, probes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, analysis_processes: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FACETRACE_HOME": str(home),
        "FACETRACE_ANALYSIS_PROCESSES": str(analysis_processes),
    }
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL"):
        env.pop(name, None)
    command = [sys.executable, "-m", "facetrace.cli.main", "serve", "--host", HOST, "--port", str(port)]
    return subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=REPO_ROOT)


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not start in time")


def run_level(
    base: str, token: str, probes: list[bytes], clients: int, seconds: float, max_searches: int
) -> dict[str, Any]:
    """Run ``clients`` concurrent clients until ``seconds`` pass or ``max_searches`` are sent."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = 0
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        nonlocal sent
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            turn = number
            while time.monotonic() < deadline:
                with lock:
                    if sent >= max_searches:
                        return
                    sent += 1
                probe = probes[turn % len(probes)]
                turn += clients
                start = time.perf_counter()
                try:
                    response = http.post("/search", data=WHY, files={"image": ("probe.jpg", probe, "image/jpeg")})
                    ok = response.status_code == 200
                    problem = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok, problem = False, type(exc).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(problem)

    health: list[float] = []
    running = threading.Event()
    running.set()

    def watch_health() -> None:
        # How long a trivial request waits while searches run: does the server stay responsive?
        with httpx.Client(base_url=base, timeout=120) as http:
            while running.is_set():
                start = time.perf_counter()
                http.get("/health")
                health.append(time.perf_counter() - start)
                time.sleep(0.05)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    watcher = threading.Thread(target=watch_health)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    running.clear()
    watcher.join()
    ordered = sorted(latencies)

    def pct(q: float, values: list[float] = ordered) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    return {
        "clients": clients,
        "searches": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "searches_per_second": round(len(latencies) / wall, 2) if wall else 0.0,
        "p50_ms": round(pct(0.50), 1),
        "p95_ms": round(pct(0.95), 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else float("nan"),
        "health_p95_ms": round(pct(0.95, sorted(health)), 1),
    }


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=8, help="people enrolled (2 photos each)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per concurrency level")
    parser.add_argument("--max-searches", type=int, default=300, help="search limit per concurrency level")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument(
        "--analysis-processes", type=int, default=0, help="server analysis processes (0 = one per core)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or min(levels) < 1 or max(levels) > 64:
        parser.error("--levels: 1 to 64 clients each")
    home = Path(tempfile.mkdtemp(prefix="facetrace-api-load-"))
    server = None
    try:
        token, probe_paths = prepare_home(home, args.identities)
        probes = [p.read_bytes() for p in probe_paths]
        port = free_port()
        base = f"http://{HOST}:{port}/api/v1"
        server = start_server(home, port, args.analysis_processes)
        wait_ready(base, server)
        run_level(base, token, probes, 2, 60, 4)  # warm up: worker processes start and load their models
        results = [run_level(base, token, probes, n, args.seconds, args.max_searches) for n in levels]
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(home, ignore_errors=True)
    info = {
        "cores": default_workers(),
        "analysis_processes": args.analysis_processes or default_workers(),
        "gallery_persons": args.identities,
        "levels": results,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        processes = info["analysis_processes"]
        print(f"search over HTTP, gallery of {args.identities} persons, {processes} analysis process(es)")
        print(
            f"{'clients':>7} {'searches':>8} {'errors':>6} {'per s':>7} {'p50 ms':>8} {'p95 ms':>8} {'health p95':>10}"
        )
        for r in results:
            print(
                f"{r['clients']:>7} {r['searches']:>8} {r['errors']:>6} {r['searches_per_second']:>7} "
                f"{r['p50_ms']:>8} {r['p95_ms']:>8} {r['health_p95_ms']:>10}"
            )
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
