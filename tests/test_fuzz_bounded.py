"""Bounded fuzzing sessions: each atheris target in ``fuzz/`` runs for a short, fixed time over a
copy of its committed corpus, and every committed corpus file (seeds and regression crashers)
is replayed through its target.

``FACETRACE_FUZZ_SECONDS`` sets the session length per target (default 10; 0 skips the
sessions, not the replay); ``FACETRACE_FUZZ_SEED`` fixes libFuzzer's seed (default: a new one).
A crash fails the test with the path of the crashing input, its bytes (base64) and the seed, so
that it can be added to the corpus; see ``fuzz/README.md``.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FUZZ = REPO_ROOT / "fuzz"
TARGETS = ("decode", "manifest", "video")
SECONDS = int(os.environ.get("FACETRACE_FUZZ_SECONDS", "10"))
# libFuzzer's random seed: 0 picks a new one each run (more ground covered over many CI runs);
# a failure prints the seed it ran with, and FACETRACE_FUZZ_SEED=N replays that session.
SEED = int(os.environ.get("FACETRACE_FUZZ_SEED", "0"))
# libFuzzer's limits for one input: seconds (a hang) and resident memory (a blow-up).
INPUT_TIMEOUT_S = 30
RSS_LIMIT_MB = 2048

# Pillow and zipfile warn about every odd field of a hostile file: expected here, and noise.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _target(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"facetrace_fuzz_{name}", FUZZ / f"fuzz_{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", TARGETS)
def test_committed_corpus_replays_cleanly(target: str) -> None:
    """Every seed and every crasher kept as a regression seed passes its target's checks."""
    check = _target(target).check  # type: ignore[attr-defined]
    files = sorted(p for p in (FUZZ / "corpus" / target).iterdir() if p.is_file())
    assert files, f"fuzz/corpus/{target} is empty"
    for path in files:
        try:
            check(path.read_bytes())
        except Exception as exc:
            pytest.fail(f"{path.relative_to(REPO_ROOT)}: {type(exc).__name__}: {exc}")


def test_corpus_stays_small() -> None:
    """Seeds are mutated thousands of times a second: keep each target's corpus small."""
    for target in TARGETS:
        total = sum(p.stat().st_size for p in (FUZZ / "corpus" / target).iterdir())
        assert total < 300_000, f"fuzz/corpus/{target} holds {total:,} bytes"


@pytest.mark.skipif(SECONDS <= 0, reason="FACETRACE_FUZZ_SECONDS=0: no fuzzing session")
@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed (no wheels for this Python)"
)
@pytest.mark.parametrize("target", TARGETS)
def test_bounded_fuzzing_session_finds_no_crash(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus" / target, corpus)  # libFuzzer adds inputs: never to the committed corpus
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        f"-max_total_time={SECONDS}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={artifacts}/",
        f"-seed={SEED}",
        "-print_final_stats=1",
        str(corpus),
    ]
    # TMPDIR: the targets' scratch files stay in tmp_path (libFuzzer exits without Python's clean-up).
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OPENCV_FFMPEG_LOGLEVEL": "-8", "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=SECONDS + 180, cwd=REPO_ROOT, env=env
    )
    output = done.stdout + done.stderr
    crashes = sorted(artifacts.iterdir())
    if done.returncode != 0 or crashes:
        seed = next((line.strip() for line in output.splitlines() if "INFO: Seed:" in line), "seed unknown")
        lines = [f"fuzz_{target}.py failed (exit {done.returncode}, {seed}); crashing input(s):"]
        for path in crashes:
            data = path.read_bytes()
            shown = base64.b64encode(data).decode() if len(data) <= 4096 else f"({len(data):,} bytes)"
            lines.append(f"  {path}  base64: {shown}")
        lines.append(f"Keep one as a regression seed: copy it to fuzz/corpus/{target}/regress-NAME; fix the code.")
        pytest.fail("\n".join(lines) + "\n--- output (end) ---\n" + output[-4000:])
    assert "Done" in output and "runs in" in output, output[-2000:]
