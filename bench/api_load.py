"""A bounded loopback load check of the API's search: searches per second and latency percentiles.

Two modes. By default (concurrency levels) it prepares a throwaway data home (a few identities
of ``tests/data/faces`` enrolled, one examiner with an API token), starts ``facetrace serve`` on
127.0.0.1 in a subprocess, then runs 1, 4 and 16 concurrent clients (httpx, one thread each)
posting searches with a case reference and a purpose, for at most ``--seconds`` or
``--max-searches`` per level, whichever comes first. It prints, per concurrency level, searches
per second, the p50/p95 latency, and the p95 latency of a health check polled meanwhile (how
responsive the server stays), then stops the server and removes the home. Nothing leaves the machine.

With ``--during-import N`` it instead starts a bulk import job of N images of
``../shared/data/faces-dev`` (a zip of IDENTITY/IMAGE folders posted to ``/jobs/import``) and runs
``--clients`` (16) concurrent searching clients, spread over several examiners, for as long as the
import runs (at most ``--max-seconds``). It reports searches per second, p50/p95/p99 latency, the
error count and the import's images per second, then stops the server and checks the database and
the index file: every image of the archive is enrolled exactly once (by sha256, for its person) or
listed among the job's per-file errors, and the index holds exactly the database's templates. The
search rate limit is lifted for the run (FACETRACE_SEARCH_RATE_PER_MINUTE=0).

    .venv/bin/python bench/api_load.py [--identities 8] [--seconds 20] [--max-searches 300]
        [--levels 1,4,16] [--analysis-processes 0] [--json]
    .venv/bin/python bench/api_load.py --during-import 5000 [--clients 16] [--max-seconds 1800]
        [--examiners 4] [--import-workers 0] [--analysis-processes 0] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
import zipfile
from collections import Counter
from collections.abc import Callable
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
FACES_DEV = REPO_ROOT.parent / "shared" / "data" / "faces-dev"  # the full development set, beside the checkout
HOST = "127.0.0.1"  # loopback only
WHY = {"case_reference": "BENCH-1", "purpose": "load check of the search endpoint"}


def prepare_home(home: Path, identities: int, examiners: int = 1) -> tuple[list[str], str, list[Path]]:
    """Enroll ``identities`` people (2 photos each), make ``examiners`` examiners and one intake user;
    return the examiners' tokens, the intake user's token and the probes."""
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
        tokens = []
        with gallery.db.session() as session:
            for n in range(max(1, examiners)):
                user = create_user(session, f"bench{n or ''}", "bench password 123", ["examiner"])
                tokens.append(create_token(session, user, "api_load", days=1)[1])
            intake = create_user(session, "bench-intake", "bench password 123", ["intake"])
            _, intake_token = create_token(session, intake, "api_load", days=1)
    finally:
        gallery.close()
    return tokens, intake_token, probes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path,
    port: int,
    analysis_processes: int,
    import_workers: int | None = None,
    job_nice: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FACETRACE_HOME": str(home),
        "FACETRACE_ANALYSIS_PROCESSES": str(analysis_processes),
        "FACETRACE_SEARCH_RATE_PER_MINUTE": "0",  # measure the server, not its per-user rate limit
    }
    if import_workers is not None:
        env["FACETRACE_WORKERS"] = str(import_workers)  # processes of an import job
    if job_nice is not None:
        env["FACETRACE_JOB_NICE"] = str(job_nice)  # their CPU niceness
    for name in ("FACETRACE_DATABASE_URL", "FACETRACE_VECTOR_URL"):
        env.pop(name, None)
    env.update(extra_env or {})  # e.g. another database (bench/gallery_scale.py)
    command = [sys.executable, "-m", "facetrace.cli.main", "serve", "--host", HOST, "--port", str(port)]
    return subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=REPO_ROOT)


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            # Ready, not just up: the index is loaded and the database answers.
            if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not start in time")


def percentile_ms(values: list[float], q: float) -> float:
    """Return the ``q`` quantile of ``values`` (seconds) in milliseconds (nearest rank; NaN when empty)."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) if ordered else float("nan")


def run_clients(
    base: str,
    tokens: list[str],
    probes: list[bytes],
    clients: int,
    *,
    seconds: float,
    max_searches: int,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Run ``clients`` concurrent searching clients (client n signs in as examiner ``n % len(tokens)``)
    until ``seconds`` pass, ``max_searches`` are sent or ``stop()`` says so; return the raw figures."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = 0
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        nonlocal sent
        headers = {"Authorization": f"Bearer {tokens[number % len(tokens)]}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            turn = number
            while time.monotonic() < deadline and not stop():
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
    return {"latencies": latencies, "errors": errors, "health": health, "wall": wall}


def summarise(clients: int, raw: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON-ready figures of one run of :func:`run_clients`."""
    latencies, wall = raw["latencies"], raw["wall"]
    return {
        "clients": clients,
        "searches": len(latencies),
        "errors": len(raw["errors"]),
        "error_kinds": dict(Counter(raw["errors"])),
        "seconds": round(wall, 2),
        "searches_per_second": round(len(latencies) / wall, 2) if wall else 0.0,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p95_ms": percentile_ms(latencies, 0.95),
        "p99_ms": percentile_ms(latencies, 0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else float("nan"),
        "health_p95_ms": percentile_ms(raw["health"], 0.95),
    }


def run_level(
    base: str, tokens: list[str], probes: list[bytes], clients: int, seconds: float, max_searches: int
) -> dict[str, Any]:
    """Run ``clients`` concurrent clients until ``seconds`` pass or ``max_searches`` are sent."""
    raw = run_clients(base, tokens, probes, clients, seconds=seconds, max_searches=max_searches)
    return summarise(clients, raw)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -- searching during a bulk import -------------------------------------------------------------
def build_archive(source: Path, count: int, out: Path) -> dict[str, tuple[str, str]]:
    """Zip the first ``count`` images of ``source`` (IDENTITY/IMAGE folders, sorted) into ``out``; return
    {member path: (identity, sha256)} of what went in."""
    if not source.is_dir():
        raise SystemExit(f"{source} is missing: the import needs the development set of faces")
    members: dict[str, tuple[str, str]] = {}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:  # JPEG does not compress further
        for identity in sorted(p for p in source.iterdir() if p.is_dir()):
            for photo in sorted(identity.glob("*.jpg")):
                if len(members) >= count:
                    return members
                data = photo.read_bytes()
                name = f"{identity.name}/{photo.name}"
                zf.writestr(name, data)
                members[name] = (identity.name, hashlib.sha256(data).hexdigest())
    if len(members) < count:
        print(f"note: {source} holds only {len(members)} images", file=sys.stderr)
    return members


def scrape_metrics(base: str) -> dict[str, float]:
    """Return a few of the server's Prometheus samples (the bench is on loopback: no token needed)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = ("facetrace_searches_total", "facetrace_enroll_images_total", "facetrace_gallery_templates")
    out: dict[str, float] = {}
    try:
        text = httpx.get(f"{base}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted and sample.value:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    out[f"{sample.name}{{{labels}}}"] = sample.value
    except Exception as exc:  # figures for the report only
        out["unavailable"] = 1.0
        print(f"note: metrics not read ({type(exc).__name__})", file=sys.stderr)
    return out


def check_enrolled(home: Path, members: dict[str, tuple[str, str]], job: dict[str, Any]) -> dict[str, Any]:
    """With the server stopped: is every archive image enrolled exactly once for its person, or listed
    among the job's errors, and does the saved index hold exactly the database's templates?"""
    from sqlalchemy import func, select

    from facetrace.index.backends import faiss_index_path
    from facetrace.index.faiss_index import FaissIndex
    from facetrace.store.db import Database
    from facetrace.store.models import Face, Image, Person

    settings = Settings(home=home, database_url=None, vector_url=None)  # type: ignore[call-arg]
    db = Database(settings.db_url, migrate=False)
    try:
        with db.sessions() as session:
            pairs = Counter(
                (str(a), str(b))
                for a, b in session.execute(
                    select(Person.external_id, Image.sha256).join(Image, Image.person_id == Person.id)
                )
            )
            faces = session.execute(
                select(Face.model_id, Face.id).where(Face.person_id.is_not(None)).order_by(Face.id)
            ).all()
            duplicate_rows = session.execute(
                select(func.count()).select_from(
                    select(Image.person_id, Image.sha256)
                    .group_by(Image.person_id, Image.sha256)
                    .having(func.count(Image.id) > 1)
                    .subquery()
                )
            ).scalar()
    finally:
        db.dispose()
    failed_files = {str(e.get("file")) for e in job.get("errors", [])}
    counts: Counter[str] = Counter()
    missing: list[str] = []
    for name, (identity, digest) in members.items():
        n = pairs.get((identity, digest), 0)
        if n == 1:
            counts["enrolled_once"] += 1
        elif n > 1:
            counts["duplicated"] += 1
        elif name in failed_files:
            counts["failed_and_reported"] += 1
        else:
            counts["missing"] += 1
            missing.append(name)
    # Errors beyond the stored list (it is capped) are counted, not listed.
    unlisted = max(0, int(job.get("error_count", 0)) - len(job.get("errors", [])))
    models = Counter(m for m, _ in faces)
    index_check: dict[str, Any] = {"db_templates": len(faces)}
    for model_id in models:
        path = faiss_index_path(settings, str(model_id))
        try:
            ids = set(FaissIndex.load(path).ids().tolist())
        except Exception as exc:
            index_check[str(model_id)] = f"index not readable: {type(exc).__name__}: {exc}"
            continue
        db_ids = {int(i) for m, i in faces if m == model_id}
        index_check[str(model_id)] = {
            "index_ids": len(ids),
            "missing_from_index": len(db_ids - ids),
            "extra_in_index": len(ids - db_ids),
        }
    index_ok = all(
        isinstance(v, dict) and not v["missing_from_index"] and not v["extra_in_index"]
        for k, v in index_check.items()
        if k != "db_templates"
    )
    return {
        "archive_images": len(members),
        **{k: counts.get(k, 0) for k in ("enrolled_once", "failed_and_reported", "duplicated", "missing")},
        "errors_not_listed_by_the_job": unlisted,
        "duplicate_image_rows": int(duplicate_rows or 0),
        "missing_examples": missing[:10],
        "index": index_check,
        "index_matches_db": index_ok,
        "ok": bool(
            index_ok and not counts.get("duplicated") and not duplicate_rows and counts.get("missing", 0) <= unlisted
        ),
    }


def during_import(args: argparse.Namespace) -> dict[str, Any]:
    """Search with ``args.clients`` clients while an import of ``args.during_import`` images runs; check it."""
    home = Path(tempfile.mkdtemp(prefix="facetrace-api-load-import-"))
    server = None
    try:
        tokens, intake, probe_paths = prepare_home(home, args.identities, examiners=args.examiners)
        probes = [p.read_bytes() for p in probe_paths]
        archive = home.parent / f"{home.name}.zip"
        members = build_archive(FACES_DEV, args.during_import, archive)
        port = free_port()
        base = f"http://{HOST}:{port}/api/v1"
        server = start_server(home, port, args.analysis_processes, args.import_workers, args.job_nice)
        wait_ready(base, server)
        run_level(base, tokens, probes, 2, 60, 4)  # warm up: worker processes start and load their models
        intake_headers = {"Authorization": f"Bearer {intake}"}
        with archive.open("rb") as handle:
            response = httpx.post(
                f"{base}/jobs/import",
                headers=intake_headers,
                files={"archive": ("faces.zip", handle, "application/zip")},
                data={"source": "LFW (development set)", "legal_basis": "load test"},
                timeout=600,
            )
        archive.unlink(missing_ok=True)
        if response.status_code != 202:
            raise SystemExit(f"the import was refused: HTTP {response.status_code} {response.text[:300]}")
        job_id = response.json()["id"]
        started = time.perf_counter()
        job: dict[str, Any] = response.json()
        finished = threading.Event()

        def poll_job() -> None:
            nonlocal job
            shown = 0.0
            with httpx.Client(base_url=base, headers=intake_headers, timeout=60) as http:
                while not finished.is_set():
                    with contextlib.suppress(httpx.HTTPError):
                        job = http.get(f"/jobs/{job_id}").json()
                    if time.perf_counter() - shown >= 10:  # progress on stderr; stdout keeps the report
                        shown = time.perf_counter()
                        progress = job.get("progress", {})
                        print(
                            f"import {progress.get('done', 0)}/{progress.get('total', '?')} "
                            f"after {shown - started:.0f} s",
                            file=sys.stderr,
                        )
                    if job.get("state") not in ("queued", "running"):
                        finished.set()
                        return
                    if time.perf_counter() - started > args.max_seconds:
                        return
                    time.sleep(1.0)

        poller = threading.Thread(target=poll_job)
        poller.start()
        raw = run_clients(
            base, tokens, probes, args.clients, seconds=args.max_seconds, max_searches=10**9, stop=finished.is_set
        )
        finished.set()
        poller.join()
        import_seconds = time.perf_counter() - started
        done = int(job.get("progress", {}).get("done", 0))
        if job.get("state") in ("queued", "running"):  # out of time: stop it; what is enrolled is checked
            httpx.post(f"{base}/jobs/{job_id}/cancel", headers=intake_headers, timeout=60)
            deadline = time.monotonic() + 120
            while job.get("state") in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(1)
                job = httpx.get(f"{base}/jobs/{job_id}", headers=intake_headers, timeout=60).json()
        metrics = scrape_metrics(base)
        stop_server(server)
        server = None
        check = check_enrolled(home, members, job)
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(home, ignore_errors=True)
    result = job.get("result") or {}
    return {
        "mode": "search during import",
        "cores": default_workers(),
        "analysis_processes": args.analysis_processes or default_workers(),
        "import_workers": args.import_workers or default_workers(),
        "job_nice": args.job_nice,
        "gallery_persons_at_start": args.identities,
        "examiners": args.examiners,
        "search": summarise(args.clients, raw),
        "import": {
            "images": len(members),
            "state": job.get("state"),
            "done": done,
            "seconds": round(import_seconds, 1),
            "images_per_second": round(done / import_seconds, 2) if import_seconds else 0.0,
            "enrolled": result.get("images_enrolled"),
            "skipped": result.get("images_skipped"),
            "errors": job.get("error_count"),
        },
        "check": check,
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=8, help="people enrolled at the start (2 photos each)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per concurrency level")
    parser.add_argument("--max-searches", type=int, default=300, help="search limit per concurrency level")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument(
        "--analysis-processes", type=int, default=0, help="server analysis processes (0 = one per core)"
    )
    parser.add_argument(
        "--during-import",
        type=int,
        metavar="N",
        nargs="?",
        const=5000,
        default=None,
        help="search while a bulk import of N images (default 5000) of ../shared/data/faces-dev runs",
    )
    parser.add_argument("--clients", type=int, default=16, help="--during-import: concurrent searching clients")
    parser.add_argument("--examiners", type=int, default=4, help="--during-import: examiners the clients sign in as")
    parser.add_argument(
        "--import-workers", type=int, default=0, help="--during-import: processes of the import job (0 = per core)"
    )
    parser.add_argument(
        "--job-nice", type=int, default=0, help="--during-import: CPU niceness of the import's processes (0-19)"
    )
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="--during-import: time limit of the run")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.during_import is not None:
        if args.during_import < 1 or not 1 <= args.clients <= 64 or args.examiners < 1:
            parser.error("--during-import N >= 1, --clients 1 to 64, --examiners >= 1")
        report = during_import(args)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            s, i, c = report["search"], report["import"], report["check"]
            print(
                f"{s['clients']} clients searching during an import of {i['images']} images "
                f"({report['analysis_processes']} analysis process(es), {report['import_workers']} import process(es))"
            )
            print(
                f"search: {s['searches']} searches, {s['errors']} errors, {s['searches_per_second']}/s, "
                f"p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms, health p95 {s['health_p95_ms']} ms"
            )
            print(f"import: {i['state']}, {i['done']} images in {i['seconds']} s ({i['images_per_second']}/s)")
            print(
                f"check: {c['enrolled_once']} enrolled once, {c['failed_and_reported']} failed (reported), "
                f"{c['duplicated']} duplicated, {c['missing']} missing; index matches the database: "
                f"{c['index_matches_db']}"
            )
        failed = report["search"]["errors"] or not report["check"]["ok"] or report["import"]["state"] != "done"
        return 1 if failed else 0
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or min(levels) < 1 or max(levels) > 64:
        parser.error("--levels: 1 to 64 clients each")
    home = Path(tempfile.mkdtemp(prefix="facetrace-api-load-"))
    server = None
    try:
        tokens, _, probe_paths = prepare_home(home, args.identities)
        probes = [p.read_bytes() for p in probe_paths]
        port = free_port()
        base = f"http://{HOST}:{port}/api/v1"
        server = start_server(home, port, args.analysis_processes)
        wait_ready(base, server)
        run_level(base, tokens, probes, 2, 60, 4)  # warm up: worker processes start and load their models
        results = [run_level(base, tokens, probes, n, args.seconds, args.max_searches) for n in levels]
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
