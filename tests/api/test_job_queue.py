"""The durable job queue shared by processes, and the search rate limit they share (SQLite and PostgreSQL).

Several :class:`JobRunner` objects on one database stand for several processes here (each has its own
worker name, loop and threads, and they share nothing but the database); the deployment test
(tests/test_deployment.py) runs real processes and kills one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from facetrace.store.db import Database
from facetrace.store.jobs import Job, claim_next, create_job, heartbeat, requeue_stale
from facetrace.store.models import utcnow
from facetrace.usecases import jobs as job_module
from facetrace.usecases.jobs import JobContext, JobRunner
from facetrace.usecases.ratelimit import SharedBuckets, TokenBuckets, buckets_for


@pytest.fixture()
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture()
def slow_kind(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """A job kind ``slow`` that reports progress until released (then finishes); returns the release."""
    release = threading.Event()

    def slow(service: Any, ctx: JobContext, job: Job) -> dict[str, Any]:
        step = 0
        while not release.is_set():
            ctx.progress(step, 10_000)
            step += 1
            time.sleep(0.02)
        return {"steps": step}

    monkeypatch.setitem(job_module.JOB_KINDS, "slow", slow)
    return release


def runner(db: Database, **options: Any) -> JobRunner:
    """A runner standing for one process (quick turns, a short lease)."""
    made = JobRunner(db, poll_seconds=0.1, lease_seconds=options.pop("lease_seconds", 2.0), **options)
    made.bind(object())  # type: ignore[arg-type]  # the test kinds do not use the service
    return made


def job_row(db: Database, job_id: int) -> Job:
    with db.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_each_queued_job_is_claimed_once_by_concurrent_workers(db: Database) -> None:
    with db.session() as session:
        ids = [create_job(session, "reindex", created_by="u", params={}).id for _ in range(24)]
    claimed: dict[int, list[str]] = {}
    lock = threading.Lock()

    def work(name: str) -> None:
        while True:
            with db.session() as session:
                job = claim_next(session, name)
                if job is None:
                    return
                with lock:
                    claimed.setdefault(job.id, []).append(name)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == ids and all(len(names) == 1 for names in claimed.values()), claimed
    for job_id, (name,) in claimed.items():
        job = job_row(db, job_id)
        assert (job.state, job.worker, job.attempts) == ("running", name, 1) and job.heartbeat_at is not None


def test_stale_jobs_are_queued_again_then_failed(db: Database) -> None:
    old = utcnow() - timedelta(seconds=120)
    with db.session() as session:
        jobs = [create_job(session, "reindex", created_by="u", params={}) for _ in range(5)]
        shapes = [(1, old, False), (3, old, False), (1, old, True), (1, utcnow(), False), (1, None, False)]
        for job, (attempts, beat, cancel) in zip(jobs, shapes, strict=True):
            job.state, job.worker, job.attempts, job.heartbeat_at, job.cancel_requested = (
                "running",
                "dead:1:x",
                attempts,
                beat,
                cancel,
            )
        ids = [job.id for job in jobs]
    with db.session() as session:
        changed = requeue_stale(session, lease_seconds=30, max_attempts=3)
    assert changed == {ids[0]: "queued", ids[1]: "failed", ids[2]: "cancelled", ids[4]: "queued"}
    requeued, exhausted, cancelled, alive = (job_row(db, i) for i in ids[:4])
    assert requeued.worker is None and "stopped during attempt 1 of 3" in (requeued.message or "")
    assert exhausted.resumable and "resume it" in (exhausted.message or "") and exhausted.finished_at is not None
    assert cancelled.resumable and alive.state == "running" and alive.worker == "dead:1:x"
    with db.session() as session:  # a single-process server that starts takes back every running job
        assert requeue_stale(session, lease_seconds=0, max_attempts=3) == {ids[3]: "queued"}


def test_heartbeat_reports_cancel_requests_and_lost_jobs(db: Database) -> None:
    with db.session() as session:
        for _ in range(3):
            create_job(session, "reindex", created_by="u", params={})
    with db.session() as session:
        mine = [claim_next(session, "me"), claim_next(session, "me"), claim_next(session, "me")]
        a, b, c = (job.id for job in mine if job is not None)
    with db.session() as session:
        session.get(Job, b).cancel_requested = True  # type: ignore[union-attr]
        session.get(Job, c).worker = "someone-else"  # type: ignore[union-attr]
    with db.session() as session:
        assert heartbeat(session, "me", [a, b, c]) == ({b}, {c})


def test_a_job_queued_in_one_process_runs_in_another_and_is_cancelled_from_the_first(
    db: Database, slow_kind: threading.Event
) -> None:
    api_process = runner(db, run_jobs=False)
    worker = runner(db)
    worker.start()
    api_process.start()
    try:
        job = api_process.submit("slow", created_by="u", params={})
        wait_for(lambda: job_row(db, job.id).done >= 3)
        assert job_row(db, job.id).worker == worker.worker_id
        api_process.cancel(job.id)
        wait_for(lambda: job_row(db, job.id).state == "cancelled")
        finished = job_row(db, job.id)
        assert finished.resumable and finished.message == "cancelled by a user" and finished.done < 10_000
        # Resumed through the API process, run again by the worker.
        api_process.resume(job.id)
        wait_for(lambda: job_row(db, job.id).state == "running")
        slow_kind.set()
        wait_for(lambda: job_row(db, job.id).state == "done")
        assert job_row(db, job.id).attempts == 1  # resuming starts the count again
    finally:
        slow_kind.set()
        worker.shutdown()
        api_process.shutdown()


def test_a_dead_workers_job_is_taken_over_and_a_clean_stop_hands_a_job_back(
    db: Database, slow_kind: threading.Event
) -> None:
    with db.session() as session:
        job = create_job(session, "slow", created_by="u", params={})
        job.state, job.worker, job.attempts = "running", "killed:9:x", 1
        job.heartbeat_at = utcnow() - timedelta(seconds=60)
    first = runner(db)
    first.start()  # on PostgreSQL through the stale heartbeat; on SQLite at the start
    wait_for(lambda: job_row(db, job.id).worker == first.worker_id and job_row(db, job.id).done >= 3)
    assert job_row(db, job.id).attempts == 2
    first.shutdown()  # stopping cleanly: the job goes back to the queue, its attempt not counted
    stopped = job_row(db, job.id)
    assert (stopped.state, stopped.worker, stopped.attempts) == ("queued", None, 1), stopped.as_dict()
    second = runner(db)
    second.start()
    try:
        wait_for(lambda: job_row(db, job.id).worker == second.worker_id)
        slow_kind.set()
        wait_for(lambda: job_row(db, job.id).state == "done")
        assert job_row(db, job.id).attempts == 2
    finally:
        slow_kind.set()
        second.shutdown()


def test_search_buckets_are_shared_between_processes_on_postgresql(database_url: str, backend: str) -> None:
    first = Database(database_url)
    try:
        if backend == "sqlite":  # one process: the buckets stay in its memory
            assert isinstance(buckets_for(first), TokenBuckets)
            return
        second = Database(database_url)  # another process's engine and connections
        buckets = [buckets_for(first), buckets_for(second)]
        assert all(isinstance(b, SharedBuckets) for b in buckets)
        admitted: list[bool] = []
        lock = threading.Lock()

        def search(i: int) -> None:
            ok, _wait, _first = buckets[i % 2].take("user:7", 60.0, 5)  # a burst of 5, one a second after
            with lock:
                admitted.append(ok)

        threads = [threading.Thread(target=search, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert admitted.count(True) in (5, 6)  # 5, or 6 if a second passed during the run
        ok, wait, first_refusal = buckets[0].take("user:7", 60.0, 5)
        assert not ok and 0 < wait <= 1.0 and not first_refusal  # the run of refusals was already audited
        assert buckets[1].take("user:8", 60.0, 5)[0]  # another user's bucket is full
        second.dispose()
    finally:
        first.dispose()
