"""A Milvus server restart under a running facetrace API server (issue #17, "Scale out on real engines").

Proves, on a real Milvus standalone server of the test's own (the ``milvus`` package's ``milvus-server``, on ports
and in a data folder of its own, so that the shared server of FACETRACE_TEST_MILVUS_URL is never disturbed):

1. the API server searches real faces enrolled in Milvus;
2. while the Milvus server hangs (SIGSTOP to its process group: connected, never answering), every search answers
   a 503 ``vector_store`` once the URL's ``timeout`` has passed, instead of holding the request, and ``GET /ready``
   says not ready; once it runs again (SIGCONT), searches answer as before;
3. while the Milvus server stops (SIGTERM to its process group) and once it is gone, every search answers promptly
   with a clean 503 ``vector_store`` error body (no 500, no traceback, no hang), and ``GET /ready`` says not ready;
4. once the Milvus server is started again on the same data folder and port, searches recover by themselves,
   with the same candidates as before the restart, and an enrollment works again.

Readiness sees the outage because a failed Milvus call makes the index forget its cached count (checked on its
own, without a server, on milvus-lite).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apitest import GALLERY, Api, face_images, start_api, upload
from pymilvus import MilvusClient

from facetrace.gallery.sources import EnrollItem
from facetrace.index.milvus_index import MilvusIndex, VectorStoreError

P = "/api/v1"
WHY = {"case_reference": "CASE-17", "purpose": "check searches across a Milvus restart"}
SEARCH_LIMIT_S = 30.0  # the longest a search may take to answer while Milvus is down
CALL_TIMEOUT_S = 2.0  # the vector URL's timeout: how long a search waits for a hung server
NEWCOMER = "Doris_Roberts"  # enrolled after the restart (not in GALLERY)
# The ports of one server: its proxy (the clients' port), the embedded etcd's client and peer ports, and the
# internal ports of its coordinators and nodes.
PORT_NAMES = (
    "proxy",
    "etcd",
    "etcd_peer",
    "proxy_internal",
    "root_coord",
    "query_coord",
    "query_node",
    "index_coord",
    "index_node",
    "data_coord",
    "data_node",
)


def _milvus_binary() -> Path | None:
    beside = Path(sys.executable).parent / "milvus-server"  # the virtual environment's
    found = str(beside) if beside.is_file() else shutil.which("milvus-server")
    return Path(found) if found and os.access(found, os.X_OK) else None


def _bindable(port: int) -> bool:
    # Without SO_REUSEADDR, as milvus-server checks the ports it is given: a port in TIME_WAIT counts as taken.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(taken: Iterable[int]) -> int:
    """Return a free port below the kernel's ephemeral range (32768 and up), so that no outgoing connection
    takes it between a stop and the restart."""
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        if port not in taken and _bindable(port):
            return port
    raise RuntimeError("no free port for a Milvus server")


class MilvusServer:
    """A Milvus standalone server of this test: its own ports, data folder and process group."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.launcher = binary
        self.folder = folder
        self.ports: dict[str, int] = {}
        for name in PORT_NAMES:
            self.ports[name] = _free_port(self.ports.values())
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        # The embedded etcd takes its ports from a file of its own (milvus-server has no option for them; left
        # alone, it keeps 2379 and 2380, which the shared server holds).
        etcd_client, etcd_peer = f"http://127.0.0.1:{self.ports['etcd']}", f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self.etcd_config = folder / "embed-etcd.yaml"
        self.etcd_config.write_text(
            f"listen-client-urls: {etcd_client}\nadvertise-client-urls: {etcd_client}\n"
            f"listen-peer-urls: {etcd_peer}\ninitial-advertise-peer-urls: {etcd_peer}\n"
            f"initial-cluster: default={etcd_peer}\n"
        )

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    def start(self, *, timeout: float = 180.0) -> None:
        """Start the server through milvus-server (which unpacks the server and writes its configuration in the
        data folder) and wait until it lists its collections."""
        options = [
            f"--{name.replace('_', '-')}-port={port}" for name, port in self.ports.items() if name != "etcd_peer"
        ]
        # A graceful stop waits for the query node to hand its loaded segments to another one, which a standalone
        # server never has: force the stop after 5 s. A short session lease lets a restart take over the sessions
        # of the stopped server within seconds rather than after the default 30 s.
        config = ["--extra-config", "common.gracefulStopTimeout=5", "--extra-config", "common.session.ttl=10"]
        self._launch([str(self.launcher), "--data", str(self.folder), *options, *config], {})
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None and self.process.poll() is None, f"Milvus exited; see {self.folder}"
            assert time.monotonic() < deadline, f"the Milvus server did not answer in {timeout:.0f} s"
            try:
                client = MilvusClient(uri=self.uri, timeout=5)
                try:
                    client.list_collections()
                    return
                finally:
                    client.close()
            except Exception:  # not up yet: refused, or not serving yet
                time.sleep(0.5)

    def restart(self) -> None:
        """Start the stopped server again, on the same data folder, configuration and ports; returns at once.

        Runs the server binary as milvus-server does: milvus-server itself refuses a port that the stopped server
        left in TIME_WAIT (it tries to bind each one first, without SO_REUSEADDR) for a minute.
        """
        binary = self.folder / "bin" / "milvus"
        env = {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(_free_port(self.ports.values())),  # not the default 9091: the shared server's
            "MILVUS_RUN_DIR": str(self.folder / "run"),
            "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(binary.parent), os.environ.get("LD_LIBRARY_PATH")])),
        }
        self._launch([str(binary), "run", "standalone"], env)

    def _launch(self, command: list[str], env: dict[str, str]) -> None:
        with (self.folder / "server.out").open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,  # where the server reads configs/milvus.yaml
                env={**os.environ, "ETCD_CONFIG_PATH": str(self.etcd_config), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it stops the server milvus-server starts
            )

    def gone(self) -> bool:
        """Whether every process of the server has exited."""
        if self.process is None:
            return True
        self.process.poll()  # reap the launcher, so that it no longer counts as a member of its group
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def pause(self) -> None:
        """Freeze every process of the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM to its process group), as an operator's restart does; returns at once."""
        if self.process is not None and not self.gone():
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server and wait until it is gone (SIGKILL after ``timeout`` s)."""
        self.terminate()
        deadline = time.monotonic() + timeout
        while not self.gone() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.process is not None and not self.gone():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture()
def milvus_server(tmp_path: Path) -> Iterator[MilvusServer]:
    binary = _milvus_binary()
    if binary is None:
        pytest.skip("milvus-server is not installed (the `milvus` package, Linux x86_64)")
    folder = tmp_path / "milvus"
    server = MilvusServer(binary, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the server's binaries and data: about 500 MB


@contextmanager
def api_on(server: MilvusServer, where: Path) -> Iterator[Api]:
    """A facetrace API server (SQLite database) whose vectors live in ``server``."""
    port = server.ports["proxy"]
    vector_url = f"milvus://127.0.0.1:{port}/restart_faces?index=FLAT&timeout={CALL_TIMEOUT_S}"  # exact search
    # No search rate limit: the test searches every second while Milvus is down and restarting.
    serving = contextmanager(start_api)(
        where / "home", f"sqlite:///{where / 'facetrace.db'}", "sqlite", vector_url=vector_url, search_rate_per_minute=0
    )
    api = serving.__enter__()
    try:
        yield api
    except BaseException as failure:
        # The app's shutdown flushes the index, which fails too while Milvus is down or just restarted: report
        # this failure, not that one.
        with suppress(Exception):
            serving.__exit__(type(failure), failure, failure.__traceback__)
        raise
    serving.__exit__(None, None, None)


def search(api: Api, probe: Path) -> tuple[int, dict[str, Any], float]:
    """POST /search with ``probe``; return the status, the JSON body and the seconds it took."""
    started = time.monotonic()
    response = api.client.post(
        f"{P}/search", data={**WHY, "top": "3"}, files=[upload(probe)], headers=api.as_("examiner")
    )
    return response.status_code, response.json(), time.monotonic() - started


def candidates(body: dict[str, Any]) -> list[list[tuple[str, float]]]:
    return [[(c["person"]["external_id"], round(c["score"], 4)) for c in f["candidates"]] for f in body["faces"]]


def assert_vector_store_error(status: int, body: dict[str, Any], seconds: float) -> None:
    assert status == 503, (status, body)
    assert body["error"]["code"] == "vector_store", body
    assert body["error"]["message"].startswith("Milvus at ") and "Traceback" not in body["error"]["message"]
    assert seconds < SEARCH_LIMIT_S, f"a search took {seconds:.1f} s while Milvus was down"


def test_a_failed_call_makes_len_ask_the_server_again(tmp_path: Path) -> None:
    """The count is cached between changes; after a failed call, len() asks the server again, so that readiness
    (which compares len() with the database) sees an outage. On milvus-lite (no server needed), with the
    collection dropped behind the index's back as the failure."""
    index = MilvusIndex.from_url(f"milvus-lite://{tmp_path}/vectors.db?collection=faces", model_id="m")
    try:
        vectors = np.eye(3, 128, dtype=np.float32)
        index.add(np.arange(3), vectors)
        assert len(index) == 3
        index.client.drop_collection("faces")
        assert len(index) == 3  # cached: the server is not asked
        with pytest.raises(VectorStoreError, match="search failed"):
            index.search(vectors[:1], 1)
        with pytest.raises(VectorStoreError, match="count failed"):
            len(index)
    finally:
        index.close()


@pytest.mark.milvus_server
def test_milvus_restart_gives_503s_then_recovers(milvus_server: MilvusServer, tmp_path: Path) -> None:
    server = milvus_server
    probes = {name: face_images(name)[2] for name in GALLERY}  # 3rd images: never enrolled
    with api_on(server, tmp_path) as api:
        items = [
            EnrollItem(n, n.replace("_", " "), face_images(n)[:2], "LFW (test subset)", "test data") for n in GALLERY
        ]
        outcome = api.service.gallery.enroll(items, workers=1)
        assert not outcome.errors and outcome.images_enrolled == 2 * len(GALLERY), outcome.as_dict()
        before: dict[str, list[list[tuple[str, float]]]] = {}
        for name, probe in probes.items():
            status, body, _ = search(api, probe)
            assert status == 200, body
            before[name] = candidates(body)
            assert before[name][0][0][0] == name
        probe = probes[GALLERY[0]]

        # A hang: the server keeps its connections but answers nothing. Kept shorter than the server's session
        # lease (10 s), after which its own components would give up on each other.
        server.pause()
        try:
            hung = time.monotonic()
            for _ in range(2):
                status, body, seconds = search(api, probe)
                assert_vector_store_error(status, body, seconds)
                assert "no answer in time" in body["error"]["message"], body
                assert CALL_TIMEOUT_S - 0.5 < seconds < CALL_TIMEOUT_S + 3, f"a search took {seconds:.1f} s"
            ready = api.client.get(f"{P}/ready")
            assert ready.status_code == 503 and ready.json()["error"]["checks"]["index"]["ok"] is False, ready.text
            assert time.monotonic() - hung < 9
        finally:
            server.resume()
        status, body, _ = search(api, probe)
        assert status == 200 and candidates(body) == before[GALLERY[0]], body

        # The stop: searches go on while the server shuts down (a graceful stop may still answer one), then
        # while it is gone.
        server.terminate()
        down, deadline = 0, time.monotonic() + 60
        while not server.gone():
            assert time.monotonic() < deadline, "the Milvus server did not stop in 60 s"
            status, body, seconds = search(api, probe)
            if status == 200:
                assert candidates(body) == before[GALLERY[0]]
                continue
            assert_vector_store_error(status, body, seconds)
            down += 1
        for _ in range(3):
            assert_vector_store_error(*search(api, probe))
            down += 1
        assert down >= 3
        ready = api.client.get(f"{P}/ready")
        assert ready.status_code == 503, ready.text
        error = ready.json()["error"]
        assert error["code"] == "not_ready" and error["checks"]["index"]["ok"] is False, error
        assert error["checks"]["database"]["ok"] is True

        # The restart, on the same data folder and port: nothing is done to facetrace, it recovers by itself.
        server.restart()
        deadline = time.monotonic() + 120
        while True:
            assert server.process is not None and server.process.poll() is None, "the restarted Milvus server exited"
            status, body, seconds = search(api, probe)
            if status == 200:
                break
            assert_vector_store_error(status, body, seconds)
            assert time.monotonic() < deadline, "searches did not recover in 120 s after the restart"
            time.sleep(1)
        for name, photo in probes.items():
            status, body, _ = search(api, photo)
            assert status == 200 and candidates(body) == before[name], (name, body)

        # Enrollment works again, and the newcomer is found.
        newcomer = face_images(NEWCOMER)
        fields = {"external_id": NEWCOMER, "name": "Doris Roberts", "source": "LFW", "legal_basis": "test data"}
        created = api.client.post(
            f"{P}/persons", data=fields, files=[upload(p, "images") for p in newcomer[:2]], headers=api.as_("intake")
        )
        assert created.status_code == 201, created.text
        assert created.json()["enrolled"]["images_enrolled"] == 2
        status, body, _ = search(api, newcomer[2])
        assert status == 200 and candidates(body)[0][0][0] == NEWCOMER, body
        deadline = time.monotonic() + 30
        while (ready := api.client.get(f"{P}/ready")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.5)
