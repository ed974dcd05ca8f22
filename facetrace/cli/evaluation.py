"""``facetrace eval`` (the accuracy protocol) and ``facetrace calibrate`` (FMR(s) for a model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from facetrace.cli.output import console, emit_json, progress_bar
from facetrace.config import get_settings
from facetrace.evaluation.protocol import build_split
from facetrace.evaluation.run import calibrate_embedded, embed_samples, evaluate
from facetrace.gallery import Gallery

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WorkersOpt = Annotated[int, typer.Option(help="Processes (0 = every core).")]


def _analyzer_setup() -> tuple[str, dict[str, Any]]:
    gallery = Gallery(get_settings())
    return gallery.model_id, gallery.analyzer_options


def eval_command(dataset_dir: Path, workers: WorkersOpt = 0, json_out: JsonOpt = False) -> None:
    """Run the open-set 1:N accuracy protocol (../shared/eval-protocol.md) on DATASET_DIR."""

    model_id, options = _analyzer_setup()
    with progress_bar("embedding", enabled=not json_out and sys.stderr.isatty()) as update:
        result = evaluate(dataset_dir, model_id=model_id, workers=workers, options=options, progress=update)
    figures = {k: v for k, v in result.items() if not k.endswith("_results")}
    if json_out:
        emit_json(figures)
        return
    for key, value in figures.items():
        console.print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}", markup=False)


def calibrate_command(
    dataset_dir: Path,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the calibration (default: in the data home).")
    ] = None,
    workers: WorkersOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Build FMR(s) from the impostor comparisons of a labelled DATASET_DIR (IDENTITY/IMAGE layout).

    Use it with FACETRACE_CALIBRATION_PATH=<the file>. The calibration shipped for the default model was
    built with this command on ../shared/data/faces-dev.
    """

    settings = get_settings()
    model_id, options = _analyzer_setup()
    split = build_split(dataset_dir)
    samples = split.all_samples()
    with progress_bar("embedding", enabled=not json_out and sys.stderr.isatty()) as update:
        embedded = embed_samples(samples, workers=workers, options=options, progress=update)
    vectors = dict(zip((s.path for s in samples), embedded.vectors, strict=True))
    calibration = calibrate_embedded(split, vectors, model_id, source=dataset_dir.name)
    target = out or settings.home / "calibration.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(target)
    summary = {
        "path": str(target),
        "model_id": model_id,
        "impostor_comparisons": calibration.info["impostor_comparisons"],
        "genuine_comparisons": calibration.info.get("genuine_comparisons", 0),
        "min_measured_fmr": calibration.min_measured_fmr,
        "threshold_fmr_0.001": round(calibration.threshold(0.001, 1), 4),
        "threshold_fpir_0.01_n1000": round(calibration.threshold(0.01, 1000), 4),
    }
    if json_out:
        emit_json(summary)
    else:
        for key, value in summary.items():
            console.print(f"{key}: {value}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``calibrate`` to the CLI."""
    app.command("eval")(eval_command)
    app.command("calibrate")(calibrate_command)
