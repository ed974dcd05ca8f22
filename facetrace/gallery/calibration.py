"""Calibrated open-set decisions: FMR(s) from impostor scores, FPIR(s, N) for a gallery of N.

FMR(s) is the share of comparisons of two *different* people that score at least s. It is
measured on a labelled calibration set (``facetrace calibrate``) and stored as a table of
(score, FMR) points, log-interpolated; beyond the strongest impostor seen, the tail is
extrapolated with an exponential fit to the top impostor scores (log FMR linear in s), and
the extrapolation is flagged in search output.

For a gallery of N persons, a search for someone not in it returns a candidate at least as
strong as s with probability FPIR(s, N) = 1 - (1 - FMR(s))^N (independent comparisons).
The match threshold for a policy FPIR is the score where FPIR(s, N) equals it: it rises as
the gallery grows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facetrace.errors import ConfigError

DEFAULT_CALIBRATION = "calibration_default.json"


def fpir_from_fmr(fmr: float, n: int) -> float:
    """Return 1 - (1 - fmr)^n, computed stably for tiny fmr."""
    if fmr >= 1.0:
        return 1.0
    return float(-math.expm1(max(1, n) * math.log1p(-fmr)))


def fmr_for_fpir(fpir: float, n: int) -> float:
    """Return the per-comparison FMR that gives ``fpir`` over ``n`` comparisons."""
    return float(-math.expm1(math.log1p(-fpir) / max(1, n)))


@dataclass
class Calibration:
    """A score -> FMR mapping for one model and score function."""

    model_id: str
    score_name: str
    scores: np.ndarray  # ascending
    log_fmr: np.ndarray  # log10 FMR at each score, descending
    tail_start: float
    tail_log_fmr: float
    tail_slope: float  # d log10 FMR / d score (negative)
    info: dict[str, Any]

    @property
    def min_measured_fmr(self) -> float:
        return float(10 ** self.log_fmr[-1])

    def fmr(self, score: float) -> float:
        """Return the estimated false-match rate of ``score``."""
        if score <= self.scores[0]:
            return float(min(1.0, 10 ** self.log_fmr[0]))
        if score <= self.tail_start:
            return float(10 ** np.interp(score, self.scores, self.log_fmr))
        return float(10 ** (self.tail_log_fmr + self.tail_slope * (score - self.tail_start)))

    def extrapolated(self, score: float) -> bool:
        """Whether FMR(score) lies beyond the strongest impostor measured."""
        return score > self.tail_start

    def fpir(self, score: float, gallery_size: int) -> float:
        """Return FPIR(score, N): the chance a non-mated search yields a candidate this strong."""
        return fpir_from_fmr(self.fmr(score), gallery_size)

    def threshold(self, target_fpir: float, gallery_size: int) -> float:
        """Return the lowest score whose FPIR for this gallery size is at most ``target_fpir``."""
        target = math.log10(max(fmr_for_fpir(target_fpir, gallery_size), 1e-300))
        if target >= self.log_fmr[0]:
            return float(self.scores[0])
        if target >= self.tail_log_fmr:
            # log_fmr is descending: interpolate on the reversed arrays
            return float(np.interp(target, self.log_fmr[::-1], self.scores[::-1]))
        return float(self.tail_start + (target - self.tail_log_fmr) / self.tail_slope)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "score": self.score_name,
            "points": [
                [round(float(s), 6), round(float(f), 6)] for s, f in zip(self.scores, self.log_fmr, strict=True)
            ],
            "tail": {"start": self.tail_start, "log10_fmr": self.tail_log_fmr, "slope": self.tail_slope},
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Build from :meth:`to_dict` output. Raises ConfigError on malformed data."""
        try:
            points = np.asarray(data["points"], dtype=np.float64)
            tail = data["tail"]
            return cls(
                model_id=str(data["model_id"]),
                score_name=str(data["score"]),
                scores=points[:, 0],
                log_fmr=points[:, 1],
                tail_start=float(tail["start"]),
                tail_log_fmr=float(tail["log10_fmr"]),
                tail_slope=float(tail["slope"]),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"malformed calibration: {exc}") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        """Load a calibration file, or the one shipped for the default model.

        Raises:
            ConfigError: the file is missing or malformed.
        """
        try:
            if path is None:
                text = resources.files("facetrace.gallery").joinpath(DEFAULT_CALIBRATION).read_text()
            else:
                text = Path(path).read_text()
            return cls.from_dict(json.loads(text))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read calibration {path or DEFAULT_CALIBRATION}: {exc}") from None


def build_calibration(
    impostor: np.ndarray,
    *,
    model_id: str,
    score_name: str,
    genuine: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
    tail_count: int = 200,
) -> Calibration:
    """Estimate FMR(s) from impostor scores (and record genuine-score quantiles if given).

    The table holds the score at FMR = 10^-k/4 for every level down to about 10/len(impostor)
    (where at least ten impostors remain, so each point is measured, not guessed). The tail
    is fitted on the ``tail_count`` strongest impostors.

    Raises:
        ValueError: fewer than 1000 impostor scores.
    """
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]  # descending
    n = len(impostor)
    if n < 1000:
        raise ValueError(f"need at least 1000 impostor comparisons, got {n}")
    levels = 10 ** -np.arange(0, 12, 0.125)
    levels = levels[levels * n >= 10]
    scores = []
    for level in levels:
        rank = max(1, int(round(level * n)))
        scores.append(impostor[rank - 1])
    scores_arr = np.array(scores)  # ascending, as levels fall
    log_fmr = np.log10(levels)
    # Ties: FMR(s) counts impostors >= s, so keep the largest FMR of each tied score.
    keep = np.concatenate([[True], np.diff(scores_arr) > 0])
    scores_arr, log_fmr = scores_arr[keep], log_fmr[keep]
    # Exponential tail: fit log10(rank/n) ~ a + b * score on the strongest impostors.
    # Only the strongest impostors inform the tail: at most tail_count, and no more than the top
    # 1% (a small calibration set's top 10% would bend the fit towards the bulk).
    top = impostor[: max(20, min(tail_count, n // 100))]
    ranks = np.arange(1, len(top) + 1)
    slope, intercept = np.polyfit(top, np.log10(ranks / n), 1)
    slope = float(min(slope, -1.0))  # must fall with score
    tail_start = float(scores_arr[-1])
    tail_log = float(log_fmr[-1])
    meta = dict(info or {})
    meta.update({"impostor_comparisons": int(n), "tail_fit_intercept": float(intercept)})
    if genuine is not None and len(genuine):
        qs = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9]
        meta["genuine_comparisons"] = int(len(genuine))
        meta["genuine_quantiles"] = {str(q): float(np.quantile(genuine, q)) for q in qs}
    return Calibration(model_id, score_name, scores_arr, log_fmr, tail_start, tail_log, slope, meta)
