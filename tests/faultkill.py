"""The kill -9 harness of the fault-injection tests: run a child process (the real CLI) and SIGKILL it,
either at a named point of the code (``FACETRACE_FAULT_POINT``, see :mod:`facetrace.faults`) or after a
random delay, many times, with a seeded random generator so a failure can be replayed.

``FACETRACE_FAULT_REPS=N`` multiplies the number of random kills per path (default 1: the quick version
run in CI; e.g. 10 for a long soak). ``FACETRACE_FAULT_SEED`` changes the seed (printed on failure).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from facetrace.faults import FAULT_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
REPS = max(1, int(os.environ.get("FACETRACE_FAULT_REPS", "1")))
SEED = int(os.environ.get("FACETRACE_FAULT_SEED", "20261127"))


@dataclass(frozen=True)
class Kill:
    """One way to end a child: at a fault point (``point``, e.g. ``enroll.after_commit@2``) or after ``delay`` s."""

    point: str | None = None
    delay: float | None = None

    def __str__(self) -> str:
        return f"point {self.point}" if self.point else f"after {self.delay:.2f}s"


@dataclass(frozen=True)
class Outcome:
    """How a child ended: ``killed`` when it died of SIGKILL."""

    kill: Kill
    returncode: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def kill_plan(rng: random.Random, points: list[str], n_random: int, delays: tuple[float, float]) -> list[Kill]:
    """Return the kills of one path: each fault point once, and ``n_random`` x REPS random delays, shuffled."""
    plan = [Kill(point=p) for p in points]
    plan += [Kill(delay=rng.uniform(*delays)) for _ in range(n_random * REPS)]
    rng.shuffle(plan)
    return plan


def cli(*args: str | Path) -> list[str]:
    """The command line of ``facetrace ARGS`` in this interpreter."""
    return [sys.executable, "-m", "facetrace.cli.main", *map(str, args)]


def run_killed(command: list[str], kill: Kill, env: dict[str, str] | None = None, timeout: float = 180) -> Outcome:
    """Run ``command`` and end it as ``kill`` says; return how it ended (it may finish before the kill)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop(FAULT_ENV, None)
    if kill.point:
        full_env[FAULT_ENV] = kill.point
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=REPO_ROOT
    )
    try:
        if kill.delay is not None:
            try:
                proc.wait(timeout=kill.delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # the test failed meanwhile: leave no child behind
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return Outcome(kill, proc.returncode, stdout, stderr)


def sqlite_integrity(db: Path) -> list[str]:
    """Return SQLite's full ``PRAGMA integrity_check`` of ``db`` (``["ok"]`` when sound)."""
    with sqlite3.connect(db, timeout=30) as conn:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]


class Stopwatch:
    """Elapsed seconds since creation, for the tests' time budget messages."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
