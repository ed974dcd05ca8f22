"""Operations: request ids (header, JSON log lines, audit events), readiness and Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from apitest import Api, face_images, start_api, upload, wait_job
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from facetrace.gallery import ImageInput
from facetrace.gallery.sources import EnrollItem
from facetrace.logs import JsonFormatter, valid_request_id

P = "/api/v1"
WHY = {"case_reference": "OPS-1", "purpose": "observability test"}
TOKEN = "metrics-token-for-tests"


@contextmanager
def json_log(*names: str) -> Iterator[io.StringIO]:
    """Capture the records of loggers ``names`` (INFO and up) as JSON lines, formatted as they are emitted."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def wait_ready(api: Api, timeout: float = 60) -> dict[str, Any]:
    """Poll /ready until it answers 200 (the index loads in the background at startup); return the body."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.client.get(f"{P}/ready")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return dict(response.json())
        time.sleep(0.2)


def scrape(api: Api) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Return the server's metrics as {sample name: {sorted labels: value}} (parsed by prometheus_client)."""
    response = api.client.get(f"{P}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture()
def metrics_token(gallery_api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setattr(gallery_api.service.settings, "metrics_token", TOKEN)
    return gallery_api


# -- request ids -------------------------------------------------------------------------------
def test_request_ids_are_echoed_generated_or_replaced(module_api: Api) -> None:
    client = module_api.client
    given = "req-2024.11:abc_DEF-9"
    assert client.get(f"{P}/health", headers={"X-Request-ID": given}).headers["x-request-id"] == given
    made = client.get(f"{P}/health").headers["x-request-id"]
    assert valid_request_id(made) and len(made) == 32
    assert client.get(f"{P}/health").headers["x-request-id"] != made  # one per request
    for bad in ("two words", "x" * 129, 'quote"d', "tab\tbed", "semi;colon", "é"):
        echoed = client.get(f"{P}/health", headers={"X-Request-ID": bad.encode()})
        assert echoed.headers["x-request-id"] != bad and valid_request_id(echoed.headers["x-request-id"]), bad
    # Error responses carry it too: an unknown route, a refusal, and the body limit's 413 before any route.
    assert client.get(f"{P}/nothing", headers={"X-Request-ID": "r-404"}).headers["x-request-id"] == "r-404"
    assert client.get(f"{P}/users", headers={"X-Request-ID": "r-401"}).headers["x-request-id"] == "r-401"
    too_big = str(10 * module_api.service.settings.max_upload_bytes)
    refused = client.post(f"{P}/search", headers={"X-Request-ID": "r-413", "Content-Length": too_big}, content=b"x")
    assert refused.status_code == 413 and refused.headers["x-request-id"] == "r-413"
    assert refused.json()["error"]["code"] == "too_large"


def test_request_id_on_an_unexpected_error(module_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 500 of a bug is sent by Starlette's outermost error middleware: it still carries the id,
    and the error's log line (with its traceback) carries it too."""
    api = module_api

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.service.gallery, "list_persons", broken)
    with json_log("facetrace.api.errors") as stream:
        response = api.client.get(f"{P}/persons", headers={**api.as_("intake"), "X-Request-ID": "r-500"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "r-500"
    assert response.json()["error"]["code"] == "internal"
    (entry,) = [e for e in lines(stream) if e["level"] == "ERROR"]
    assert entry["request_id"] == "r-500" and "RuntimeError: a bug" in entry["exception"]


def test_request_id_in_json_log_lines_and_audit_events(module_api: Api) -> None:
    api = module_api
    with json_log("facetrace.access") as stream:
        response = api.client.get(f"{P}/persons/NOBODY-7", headers={**api.as_("intake"), "X-Request-ID": "trace-1"})
    assert response.status_code == 404 and response.headers["x-request-id"] == "trace-1"
    (entry,) = [e for e in lines(stream) if e.get("request_id") == "trace-1"]
    assert {"time", "level", "logger", "message", "request_id"} <= set(entry)
    assert entry["logger"] == "facetrace.access" and entry["level"] == "INFO"
    # The route template, never the raw path: no record id in the log line.
    assert entry["route"] == f"{P}/persons/{{external_id}}" and entry["status"] == 404
    assert "NOBODY-7" not in json.dumps(entry)
    # The endpoint runs in a worker thread: the audit event it appends still knows the request.
    event = api.audit("person.view")[-1]
    assert event["detail"]["request_id"] == "trace-1" and event["outcome"] == "not_found"


def test_job_log_lines_carry_the_job_id(module_api: Api) -> None:
    api = module_api
    with json_log("facetrace.usecases.jobs") as stream:
        job = api.client.post(f"{P}/jobs/reindex", headers=api.as_("admin")).json()
        assert wait_job(api, job["id"], api.as_("admin"))["state"] == "done"
        deadline = time.monotonic() + 10  # the job's last line is written just after its row
        while not any("finished" in e["message"] or " done:" in e["message"] for e in lines(stream)):
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.05)
    entries = [e for e in lines(stream) if e.get("job_id") == job["id"]]
    assert any("started" in e["message"] for e in entries), entries
    assert any(e.get("job_state") == "done" for e in entries), entries


# -- readiness ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_gallery(module_api: Api) -> Api:
    """The module's server with one person (2 images) enrolled."""
    name = "Elton_John"
    item = EnrollItem(name, "Elton John", face_images(name)[:2], "LFW (test subset)", "test data")
    outcome = module_api.service.gallery.enroll([item], workers=1)
    assert outcome.images_enrolled == 2, outcome.as_dict()
    return module_api


def test_ready_then_not_ready_when_the_database_is_unreachable(
    small_gallery: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = small_gallery
    body = wait_ready(api)
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "index", "analysis", "jobs", "disk"}
    assert all(check["ok"] for check in body["checks"].values())
    # Public, so no counts of persons or templates.
    assert not any(ch.isdigit() for ch in body["checks"]["index"]["detail"])
    # A database server that refuses connections (nothing listens on port 9).
    gone = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=3")
    monkeypatch.setattr(api.service.db, "engine", gone)
    response = api.client.get(f"{P}/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready" and "database" in error["message"]
    assert error["checks"]["database"]["ok"] is False and error["checks"]["index"]["ok"] is False
    assert error["checks"]["disk"]["ok"] is True
    monkeypatch.undo()
    gone.dispose()
    wait_ready(api)


def test_not_ready_when_the_index_disagrees_with_the_database(small_gallery: Api) -> None:
    api = small_gallery
    wait_ready(api)
    index = api.service.gallery.loaded_index()
    assert index is not None and len(index) == 2
    index.remove(index.ids()[:1])  # the index lost a template the database still holds
    response = api.client.get(f"{P}/ready")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["checks"]["index"]["ok"] is False and "disagree" in error["checks"]["index"]["detail"]
    assert error["checks"]["database"]["ok"] is True
    api.service.gallery.rebuild_index()  # the repair: rebuilt from the database
    assert wait_ready(api)["checks"]["index"]["ok"]


def test_not_ready_when_the_disk_is_short(small_gallery: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = small_gallery
    wait_ready(api)
    monkeypatch.setattr(api.service.settings, "ready_min_free_mb", 1 << 40)  # an exabyte
    response = api.client.get(f"{P}/ready")
    assert response.status_code == 503
    assert response.json()["error"]["checks"]["disk"]["ok"] is False


def test_not_ready_when_an_analysis_worker_dies(tmp_path: Path) -> None:
    """With a pool of worker processes: a killed worker makes the server not ready once; the pool
    then starts afresh and the next image is analysed."""
    for api in start_api(tmp_path / "home", f"sqlite:///{tmp_path / 'db.sqlite'}", "sqlite", analysis_processes=2):
        wait_ready(api)
        photo = face_images("Elton_John")[0]
        detect = api.client.post(f"{P}/detect", files=[upload(photo)], headers=api.as_("examiner"))
        assert detect.status_code == 200, detect.text
        pool = api.service.gallery.pool
        assert pool is not None and pool.alive() >= 1
        assert "worker(s) running" in api.client.get(f"{P}/ready").json()["checks"]["analysis"]["detail"]
        pid = next(iter(pool._executor._processes))  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (response := api.client.get(f"{P}/ready")).status_code == 200:
            assert time.monotonic() < deadline, "the dead worker was never noticed"
            time.sleep(0.1)
        assert response.status_code == 503
        assert response.json()["error"]["checks"]["analysis"]["ok"] is False
        assert wait_ready(api)["checks"]["analysis"]["ok"]
        again = api.client.post(f"{P}/detect", files=[upload(photo)], headers=api.as_("examiner"))
        assert again.status_code == 200, again.text


def test_a_search_during_an_enrollment_does_not_resync_the_index(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between an enrollment's commit and its adding the template to the index, a search must not re-read
    the database and rewrite the index file (under a bulk import that happened once per search)."""
    gallery = api.service.gallery
    wait_ready(api)
    syncs: list[int] = []
    real_sync, real_commit = gallery.keeper._sync_index, gallery.enroller._commit_face

    def counted_sync(index: Any) -> None:
        syncs.append(len(index))
        real_sync(index)

    def commit_then_search(*args: Any) -> Any:
        committed = real_commit(*args)
        gallery.search_faces([], top_k=1)  # what a concurrent search does at this very moment
        return committed

    monkeypatch.setattr(gallery.keeper, "_sync_index", counted_sync)
    monkeypatch.setattr(gallery.enroller, "_commit_face", commit_then_search)
    item = EnrollItem("Bill_Paxton", "Bill Paxton", face_images("Bill_Paxton")[:1], "LFW (test subset)", "test data")
    assert gallery.enroll_images(item, [ImageInput.read(p) for p in item.images]).images_enrolled == 1
    assert syncs == []
    index = gallery.loaded_index()
    assert index is not None and len(index) == 1
    assert wait_ready(api)["checks"]["index"]["ok"]


# -- metrics -----------------------------------------------------------------------------------
def test_metrics_need_the_token_or_a_loopback_client(gallery_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = gallery_api
    refused = api.client.get(f"{P}/metrics")  # the test client's address is not loopback
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert api.client.get(f"{P}/metrics", headers=api.as_("admin")).status_code == 403  # an API token is not enough
    # Without a token configured, a client on this machine is served (no lifespan: the shared server keeps running).
    local = TestClient(api.app, base_url="https://testserver", client=("127.0.0.1", 40000))
    assert local.get(f"{P}/metrics").status_code == 200
    monkeypatch.setattr(api.service.settings, "metrics_token", TOKEN)
    assert local.get(f"{P}/metrics").status_code == 401  # once a token is set, everyone needs it
    wrong = api.client.get(f"{P}/metrics", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert api.client.get(f"{P}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_count_searches_and_time_requests_by_route_template(metrics_token: Api) -> None:
    api = metrics_token
    before = scrape(api)
    probe = face_images("Bill_Paxton")[2]
    found = api.client.post(f"{P}/search", data=WHY, files=[upload(probe)], headers=api.as_("examiner"))
    assert found.status_code == 200, found.text
    matched = any(f["match"] for f in found.json()["faces"])
    junk = api.client.post(
        f"{P}/search",
        data=WHY,
        files=[("image", ("x.jpg", b"not an image", "image/jpeg"))],
        headers=api.as_("examiner"),
    )
    assert junk.status_code == 415
    assert api.client.get(f"{P}/persons/NOBODY-42", headers=api.as_("intake")).status_code == 404
    assert api.client.request("BREW", f"{P}/no/such/path").status_code in (404, 405)
    after = scrape(api)

    def searches(outcome: str, samples: dict[str, Any]) -> float:
        return float(samples["facetrace_searches_total"][(("kind", "image"), ("outcome", outcome))])

    outcome = "match" if matched else "no_match"
    assert searches(outcome, after) == searches(outcome, before) + 1
    assert searches("error", after) == searches("error", before) + 1
    assert (("kind", "compare"), ("outcome", "match")) in after["facetrace_searches_total"]  # every series exists
    latency = after["facetrace_http_request_duration_seconds_count"]
    search_ok = (("method", "POST"), ("route", f"{P}/search"), ("status", "2xx"))
    assert latency[search_ok] >= 1
    assert latency[(("method", "POST"), ("route", f"{P}/search"), ("status", "4xx"))] >= 1
    assert latency[(("method", "GET"), ("route", f"{P}/persons/{{external_id}}"), ("status", "4xx"))] >= 1
    buckets = after["facetrace_http_request_duration_seconds_bucket"]
    assert buckets[(("le", "+Inf"), *search_ok)] == latency[search_ok]
    labels = {value for series in after.values() for key in series for _, value in key}
    assert not any("NOBODY" in value or "no/such" in value for value in labels), "a raw path leaked into a label"
    assert "BREW" not in labels and latency[(("method", "other"), ("route", "unmatched"), ("status", "4xx"))] >= 1


def test_metrics_gauges_and_enrollment_counters(small_gallery: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = small_gallery
    monkeypatch.setattr(api.service.settings, "metrics_token", TOKEN)
    wait_ready(api)
    samples = scrape(api)
    (templates,) = samples["facetrace_gallery_templates"].items()
    labels, count = templates
    assert dict(labels) == {"backend": "faiss", "index_type": "Flat"} and count == 2
    assert samples["facetrace_index_loaded"][()] == 1 and samples["facetrace_database_up"][()] == 1
    assert samples["facetrace_encryption_at_rest"][()] == int(api.service.settings.encrypted)
    assert samples["facetrace_enroll_images_total"][(("outcome", "enrolled"),)] == 2
    assert samples["facetrace_enroll_faces_total"][()] == 2
    assert samples["facetrace_analysis_workers"][()] == 1  # analysis in the server process
    job = api.client.post(f"{P}/jobs/reindex", headers=api.as_("admin")).json()
    wait_job(api, job["id"], api.as_("admin"))
    jobs = scrape(api)["facetrace_jobs"]
    assert jobs[(("kind", "reindex"), ("state", "done"))] >= 1
    assert "facetrace_notifications" not in samples or all(v >= 0 for v in samples["facetrace_notifications"].values())


# -- the CLI and the real server -----------------------------------------------------------------
def test_cli_logs_json_lines_when_asked(tmp_home: Path, run_cli: Any) -> None:
    done = run_cli("-v", "init", "--json", env={"FACETRACE_LOG_FORMAT": "json"})
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert entries, "the migrations log at INFO with -v"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(e) for e in entries)
    plain = run_cli("-v", "init", "--json", env={"FACETRACE_LOG_FORMAT": "text"})
    assert plain.returncode == 0 and not plain.stderr.lstrip().startswith("{")


def test_serve_log_json_writes_request_ids(tmp_home: Path) -> None:
    """``facetrace serve --log-json``: the server's own access line, as JSON, with the request id."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "facetrace.cli.main", "serve", "--port", str(port), "--log-json"]
    env = {**os.environ, "FACETRACE_ANALYSIS_PROCESSES": "1", "FACETRACE_LOG_FORMAT": "text"}
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"{base}/api/v1/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.3)
        response = httpx.get(f"{base}/api/v1/persons/SOMEONE-1", headers={"X-Request-ID": "serve-test-1"})
        assert response.status_code == 401 and response.headers["x-request-id"] == "serve-test-1"
        assert httpx.get(f"{base}/api/v1/metrics").status_code == 200  # a loopback client, no token set
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (access,) = [e for e in entries if e.get("request_id") == "serve-test-1"]
    assert access["logger"] == "facetrace.access" and access["route"] == "/api/v1/persons/{external_id}"
    assert "SOMEONE-1" not in stderr  # no raw path in the log (uvicorn's access log is off)


def test_import_workers_can_run_at_a_lower_cpu_priority() -> None:
    """FACETRACE_JOB_NICE: the analysis processes of an import yield the cores to searches."""
    code = (
        "import os; from facetrace.vision.parallel import _init_pool_worker; "
        "before = os.nice(0); _init_pool_worker({}, 7); print(before, os.nice(0))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.strip().splitlines()[-1].split())
    assert after == min(before + 7, 19)  # 19 is the lowest priority there is
