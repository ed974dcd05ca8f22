"""Accuracy evaluation: the open-set 1:N protocol of ``shared/eval-protocol.md``.

Pure logic (no face model is imported here): :func:`build_split` and :func:`compute_metrics`.
"""

from facetrace.evaluation.protocol import (
    IMAGE_SUFFIXES,
    ProbeResult,
    Sample,
    Split,
    build_split,
    compute_metrics,
    det_curve,
    fnir_at_fpir,
    observed_fpir,
    threshold_at_fpir,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ProbeResult",
    "Sample",
    "Split",
    "build_split",
    "compute_metrics",
    "det_curve",
    "fnir_at_fpir",
    "observed_fpir",
    "threshold_at_fpir",
]
