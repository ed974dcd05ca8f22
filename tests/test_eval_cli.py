"""`facetrace eval` and `facetrace calibrate` on the committed faces, through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from facetrace.gallery.calibration import Calibration

RunCli = Callable[..., CompletedProcess[str]]
PROTOCOL_KEYS = {
    "gallery",
    "mated_probes",
    "nonmated_probes",
    "rank1",
    "rank5",
    "fnir_at_fpir_0.01",
    "fnir_at_fpir_0.1",
    "failure_to_extract",
    "images",
    "seconds",
    "images_per_s",
}


@pytest.mark.slow
def test_eval_prints_the_protocol_keys(faces_dir: Path, tmp_home: Path, run_cli: RunCli) -> None:
    done = run_cli("eval", faces_dir, "--workers", "1", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures.keys() >= PROTOCOL_KEYS
    # The committed split (tests/data/README.md): 40 identities of 3-4 images and 40 distractors.
    assert figures["images"] == 191 and figures["failure_to_extract"] == 0.0
    assert figures["mated_probes"] + figures["nonmated_probes"] + figures["gallery"] == figures["images"]
    assert figures["rank1"] >= 0.9
    assert figures["fnir_at_fpir_0.1"] <= figures["fnir_at_fpir_0.01"] <= 0.5


@pytest.mark.slow
def test_calibrate_writes_a_usable_calibration(faces_dir: Path, tmp_home: Path, run_cli: RunCli) -> None:
    out = tmp_home / "cal.json"
    done = run_cli("calibrate", faces_dir, "--out", out, "--workers", "1", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    calibration = Calibration.load(out)
    assert calibration.model_id == summary["model_id"] == "dlib-resnet-v1+flip+68"
    assert summary["impostor_comparisons"] == calibration.info["impostor_comparisons"] > 1000
    assert calibration.threshold(0.01, 1000) > calibration.threshold(0.01, 10)


def test_eval_of_a_missing_folder_is_one_error_line(tmp_home: Path, run_cli: RunCli) -> None:
    done = run_cli("eval", tmp_home / "nowhere", "--json")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in done.stderr
