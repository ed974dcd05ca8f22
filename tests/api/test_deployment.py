"""The deployment shape of docs/scale.md, run for real: two API processes (``facetrace serve``, as if on
two machines behind a reverse proxy, with ``FACETRACE_RUN_JOBS=false``) and one ``facetrace worker``,
sharing PostgreSQL and the Milvus server (both started by scripts/services.sh).

An import of 500 photos is queued through one API process while 8 clients search through both; the
worker is killed (``kill -9``) in the middle of the import and started again. What must hold: the
job completes, every photo is enrolled exactly once (database rows and Milvus entities), no search
fails, and a person erased through one API process is gone from the other's results within a second.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from apitest import add_users, face_images, make_settings
from sqlalchemy import func, select

from facetrace.server import open_service
from facetrace.store.accounts import AuditEvent
from facetrace.store.models import Face, Image, Person

pytestmark = [pytest.mark.multiprocess, pytest.mark.milvus_server, pytest.mark.postgres]

IMAGES = 500
CLIENTS = 8
P = "/api/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def variants(photo: Path, count: int) -> list[bytes]:
    """``count`` distinct JPEG files of one photo (flipped, cropped by a few pixels, other qualities):
    distinct bytes, so each is a photo of its own to the product, and each still shows the face."""
    image = cv2.imread(str(photo))
    out: list[bytes] = []
    for i in range(count):
        shown = cv2.flip(image, 1) if i % 2 else image
        crop = i // 2 % 4
        shown = shown[crop : shown.shape[0] - crop, crop : shown.shape[1] - crop]
        ok, data = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, 90 - i // 8])
        assert ok
        out.append(data.tobytes())
    assert len(set(out)) == count
    return out


def import_archive() -> tuple[bytes, dict[str, int]]:
    """A folder archive of ``IMAGES`` photos (IDENTITY/IMAGE.jpg); returns it and the photos per person."""
    faces = Path(__file__).resolve().parents[1] / "data" / "faces"
    photos = sorted(p for p in faces.rglob("*.jpg") if p.parent.name != "distractors")
    per_photo = -(-IMAGES // len(photos))
    buffer, counts, written = io.BytesIO(), {}, 0
    with zipfile.ZipFile(buffer, "w") as zf:
        for photo in photos:
            for i, data in enumerate(variants(photo, per_photo)):
                if written == IMAGES:
                    break
                zf.writestr(f"batch/{photo.parent.name}/{photo.stem}-{i}.jpg", data)
                counts[photo.parent.name] = counts.get(photo.parent.name, 0) + 1
                written += 1
    assert written == IMAGES
    return buffer.getvalue(), counts


class Processes:
    """The deployment's processes; each one's output goes to a log file shown when the test fails."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.facetrace = str(Path(sys.executable).with_name("facetrace"))

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [self.facetrace, *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its analysis processes, without warning
        proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.running.values():
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}{P}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture()
def milvus_collection() -> Iterator[str]:
    server = os.environ.get("FACETRACE_TEST_MILVUS_URL")
    if not server:
        pytest.skip("no Milvus server: FACETRACE_TEST_MILVUS_URL (scripts/services.sh starts one)")
    name = f"deploy_{uuid.uuid4().hex[:10]}"
    yield f"{server}/{name}"
    from pymilvus import MilvusClient

    client = MilvusClient(uri=server.replace("milvus://", "http://"))
    if client.has_collection(name):
        client.drop_collection(name)
    client.close()


def test_two_api_processes_and_a_killed_worker(
    database_factory: Callable[[str, Path], str], milvus_collection: str, tmp_path: Path
) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    logs.mkdir()
    database_url = database_factory("postgresql", tmp_path)
    settings = make_settings(home, database_url, vector_url=milvus_collection)
    service = open_service(settings)  # migrates the database; the users of the test
    headers = add_users(service)[0]
    env = {
        **os.environ,
        "FACETRACE_HOME": str(home),
        "FACETRACE_DATABASE_URL": database_url,
        "FACETRACE_VECTOR_URL": milvus_collection,
        "FACETRACE_ANALYSIS_PROCESSES": "1",
        "FACETRACE_WORKERS": "1",
        "FACETRACE_JOB_LEASE_SECONDS": "3",
        "FACETRACE_SEARCH_RATE_PER_MINUTE": "0",
        "FACETRACE_COOKIE_SECURE": "false",
    }
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    procs = Processes(env, logs)
    try:
        for i, port in enumerate(ports):
            procs.start(f"api{i}", "serve", "--port", str(port), "--log-level", "warning", FACETRACE_RUN_JOBS="false")
        procs.start("worker", "worker", "--log-level", "info")
        wait_until(lambda: all(answers(u) for u in urls), 120, "both API processes ready")
        run_deployment(procs, urls, headers, service)
    except BaseException:
        print(procs.tail())
        raise
    finally:
        procs.stop_all()
        service.db.dispose()


def run_deployment(procs: Processes, urls: list[str], headers: dict[str, dict[str, str]], service: Any) -> None:
    archive, counts = import_archive()
    intake, examiner = headers["intake"], headers["examiner"]
    probe = face_images("Bill_Paxton")[0].read_bytes()
    stop, failures, searches = threading.Event(), [], [0]
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=urls[i % 2], timeout=60) as http:
            while not stop.is_set():
                response = http.post(
                    f"{P}/search",
                    files={"image": ("probe.jpg", probe, "image/jpeg")},
                    data={"case_reference": f"C-{i}", "purpose": "deployment test"},
                    headers=examiner,
                )
                with lock:
                    searches[0] += 1
                    if response.status_code != 200:
                        failures.append(f"{urls[i % 2]}: {response.status_code} {response.text[:300]}")
                stop.wait(0.3)

    clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in clients:
        thread.start()
    with httpx.Client(base_url=urls[0], timeout=120) as api0, httpx.Client(base_url=urls[1], timeout=60) as api1:
        queued = api0.post(
            f"{P}/jobs/import",
            files={"archive": ("batch.zip", archive, "application/zip")},
            data={"source": "ICRC tracing", "legal_basis": "consent"},
            headers=intake,
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]

        def job() -> dict[str, Any]:
            return dict(api1.get(f"{P}/jobs/{job_id}", headers=intake).json())  # progress from the other process

        wait_until(lambda: job()["progress"]["done"] >= IMAGES // 4, 300, "a quarter of the import")
        procs.kill("worker")
        killed_at = job()
        assert killed_at["state"] == "running" and killed_at["progress"]["done"] < IMAGES, killed_at
        procs.start("worker-again", "worker", "--log-level", "info")
        wait_until(lambda: job()["state"] not in ("queued", "running"), 600, "the import to finish")
        finished = job()
        stop.set()
        for thread in clients:
            thread.join(60)
        assert finished["state"] == "done" and finished["attempts"] == 2, finished
        # The second attempt skipped what the first enrolled: together, every photo once.
        result = finished["result"]
        assert result["images_enrolled"] + result["images_skipped"] == IMAGES and finished["error_count"] == 0, result
        assert not failures and searches[0] >= CLIENTS, (searches[0], failures[:5])

        with service.db.sessions() as session:
            images = session.execute(select(func.count()).select_from(Image)).scalar()
            distinct = session.execute(select(func.count(func.distinct(Image.sha256)))).scalar()
            faces = session.execute(select(func.count()).select_from(Face)).scalar()
            persons = session.execute(select(func.count()).select_from(Person)).scalar()
            imports = session.execute(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "person.import")
            ).scalar()
        assert images == distinct == IMAGES and persons == len(counts) and imports == 1
        assert faces >= IMAGES  # every photo shows at least its one face (a few show a second person)
        index = service.gallery.index()  # this process's view of the Milvus collection, synced
        assert len(index) == faces, (len(index), faces)  # nothing indexed twice, nothing missing

        # An erasure through one process is gone from the other's results within a second.
        def top(http: httpx.Client) -> list[str]:
            response = http.post(
                f"{P}/search",
                files={"image": ("probe.jpg", probe, "image/jpeg")},
                data={"case_reference": "C-erase", "purpose": "deployment test", "top": "10"},
                headers=examiner,
            )
            assert response.status_code == 200, response.text
            return [c["person"]["external_id"] for f in response.json()["faces"] for c in f["candidates"]]

        assert top(api1)[0] == "Bill_Paxton"
        assert api0.delete(f"{P}/persons/Bill_Paxton", headers=intake).status_code == 200
        erased_at = time.monotonic()
        while "Bill_Paxton" in top(api1):
            assert time.monotonic() - erased_at < 1.0, "the other process still returns the erased person"
        print(  # shown with -s, and when the test fails
            f"deployment: {searches[0]} searches, none failed; worker killed at {killed_at['progress']['done']} of "
            f"{IMAGES}; second attempt enrolled {result['images_enrolled']}, skipped {result['images_skipped']}; "
            f"erasure gone from the other process after {time.monotonic() - erased_at:.2f} s"
        )


def test_serve_with_several_processes(database_factory: Callable[[str, Path], str], tmp_path: Path) -> None:
    """``facetrace serve --workers 2`` on PostgreSQL: the parent migrates the database and prints the
    first-run link; two server processes share the port, and the link works through them."""
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "FACETRACE_HOME": str(tmp_path / "home"),
        "FACETRACE_DATABASE_URL": database_factory("postgresql", tmp_path),
        "FACETRACE_ANALYSIS_PROCESSES": "1",
        "FACETRACE_COOKIE_SECURE": "false",
    }
    procs = Processes(env, logs)
    try:
        procs.start("serve", "serve", "--workers", "2", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(url), 120, "the server processes ready")
        output = (logs / "serve.log").read_text()
        link = next(line for line in output.splitlines() if "/setup?token=" in line).strip()
        token = link.split("token=", 1)[1]
        wait_until(lambda: (logs / "serve.log").read_text().count("Application startup complete") == 2, 60, "two")
        pids = {
            line.split("[", 1)[1].split("]", 1)[0]
            for line in (logs / "serve.log").read_text().splitlines()
            if "Started server process [" in line
        }
        assert len(pids) == 2, pids
        with httpx.Client(base_url=url, timeout=30) as http:  # any process accepts the parent's setup token
            page = http.get("/setup", params={"token": token})
            assert page.status_code == 200 and "first admin" in page.text.lower(), page.text[:500]
    except BaseException:
        print(procs.tail())
        raise
    finally:
        procs.stop_all()
