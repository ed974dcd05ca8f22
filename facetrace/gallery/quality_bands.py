"""Quality bands: what a probe face's quality means for the error rates of its search, in plain words.

Face quality (0-100, :mod:`facetrace.vision.quality`) is split into bands by a measured table,
``quality_bands.json`` (written from ``bench/degraded.py``). For each band the table gives the share of
searches for someone in the gallery that found them (``true_match_rate``), the share of searches for
someone not in it that matched someone else (``false_match_rate``, at the policy FPIR the table was
measured at) and how many searches of each kind were measured (``mated``, ``nonmated``).

Examiners see a face's band as a label ("good quality") and a sentence or two of advice built from
those numbers, beside the face's quality, on the search results, the lead page and the case file; the
API returns the band with every searched face. A face below the deployment's minimum quality is always
in the "unusable" band, whatever the table says. Pure: no database, no model.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from facetrace.errors import ConfigError

DEFAULT_QUALITY_BANDS = "quality_bands.json"
UNUSABLE = "unusable"
POOR = "poor"
# Below this share of people in the gallery found, a "no match" says little about whether they are in it.
WEAK_TRUE_MATCH_RATE = 0.5
QUALITY_SCALE = (0.0, 100.0)


def _half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _share(rate: float, noun: str) -> str:
    """Return ``rate`` of ``noun`` in plain words: "about 7 in 10 people", "about 1 in 100 searches"."""
    if rate <= 0.0:
        return f"none of the {noun}"
    if rate >= 1.0:
        return f"all the {noun}"
    if rate >= 0.095:  # tenths: 1 in 10 ... 10 in 10
        tenths = _half_up(rate * 10)
        return f"nearly all the {noun}" if tenths >= 10 else f"about {tenths} in 10 {noun}"
    denominator = 100
    while _half_up(rate * denominator) < 1 and denominator < 10**9:
        denominator *= 10
    return f"about {max(1, _half_up(rate * denominator))} in {denominator:,} {noun}"


@dataclass(frozen=True)
class QualityBand:
    """One band of face quality, ``low <= quality < high``, with the error rates measured for it."""

    name: str
    low: float
    high: float
    true_match_rate: float
    false_match_rate: float
    mated: int
    nonmated: int

    @property
    def label(self) -> str:
        """Return the band's name as a badge shows it, e.g. "good quality"."""
        return f"{self.name} quality"

    @property
    def measured(self) -> bool:
        """Return whether searches of both kinds (for someone in the gallery and not) were measured."""
        return self.mated > 0 and self.nonmated > 0

    @property
    def advice(self) -> str:
        """Return one or two plain sentences for an examiner: what a search with a photo of this
        quality finds, and how far a "no match" can be trusted, from the measured numbers."""
        if self.name == UNUSABLE:
            return "Too poor to decide a match: candidates are shown for examination only."
        if not self.measured:
            return (
                "How searches with photos of this quality fare has not been measured yet: "
                "weigh a match and a 'no match' with care."
            )
        found = _share(self.true_match_rate, "people who were in the gallery")
        false = _share(self.false_match_rate, "searches for someone not in it")
        text = f"Photos of this quality found {found}; {false} matched someone else."
        if self.name == POOR or self.true_match_rate < WEAK_TRUE_MATCH_RATE:
            text += (
                " A 'no match' here says little about whether the person is in the gallery: "
                "search again with a better photo if there is one."
            )
        return text

    def contains(self, score: float) -> bool:
        """Return whether ``score`` lies in this band (``low <= score < high``)."""
        return self.low <= score < self.high

    def as_dict(self) -> dict[str, Any]:
        """Return ``{"name", "label", "low", "high", "true_match_rate", "false_match_rate", "advice"}`` for JSON."""
        return {
            "name": self.name,
            "label": self.label,
            "low": self.low,
            "high": self.high,
            "true_match_rate": self.true_match_rate,
            "false_match_rate": self.false_match_rate,
            "advice": self.advice,
        }


def _rate(entry: dict[str, Any], key: str) -> float:
    value = float(entry[key])
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} {value} is not between 0 and 1")
    return value


def _count(entry: dict[str, Any], key: str) -> int:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} {value!r} is not a count")
    return value


def _band_from(entry: dict[str, Any]) -> QualityBand:
    name = entry["name"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"band name {name!r} is not a name")
    low, high = float(entry["low"]), float(entry["high"])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"band {name}: low {low} must be below high {high}")
    return QualityBand(
        name=name,
        low=low,
        high=high,
        true_match_rate=_rate(entry, "true_match_rate"),
        false_match_rate=_rate(entry, "false_match_rate"),
        mated=_count(entry, "mated"),
        nonmated=_count(entry, "nonmated"),
    )


@dataclass(frozen=True)
class QualityBands:
    """The measured table: where it came from, the policy FPIR it was measured at, and its bands
    (ascending, each starting where the one before ends, together covering quality 0-100)."""

    source: str
    policy_target_fpir: float
    bands: tuple[QualityBand, ...]

    @classmethod
    def from_dict(cls, data: Any) -> QualityBands:
        """Build the table from the JSON file's content.

        Raises:
            ConfigError: a missing or mistyped field, a rate outside 0-1, bands that overlap, leave a
                gap or do not cover quality 0-100, repeat a name, or no "unusable" band.
        """
        try:
            entries = data["bands"]
            if not isinstance(entries, list) or not entries:
                raise ValueError("bands must be a non-empty list")
            bands = tuple(_band_from(e) for e in entries)
            target = float(data["policy_target_fpir"])
            if not 0.0 < target < 1.0:
                raise ValueError(f"policy_target_fpir {target} is not between 0 and 1")
            source = data["source"]
            if not isinstance(source, str):
                raise ValueError("source must be text")
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed quality bands: {exc}") from None
        names = [b.name for b in bands]
        pairs = zip(bands, bands[1:], strict=False)
        problems = [f"band {b.name} starts at {b.low}, not {a.high}" for a, b in pairs if b.low != a.high]
        if len(set(names)) != len(names):
            problems.append("a band name is repeated")
        if UNUSABLE not in names:
            problems.append(f"no {UNUSABLE!r} band")
        if bands[0].low > QUALITY_SCALE[0] or bands[-1].high <= QUALITY_SCALE[1]:
            problems.append(f"the bands cover {bands[0].low}-{bands[-1].high}, not every quality 0-100")
        if problems:
            raise ConfigError("malformed quality bands: " + "; ".join(problems))
        return cls(source=source, policy_target_fpir=target, bands=bands)

    def named(self, name: str) -> QualityBand:
        """Return the band called ``name``.

        Raises:
            KeyError: no band has that name.
        """
        for band in self.bands:
            if band.name == name:
                return band
        raise KeyError(name)

    def band(self, score: float, *, min_quality: float) -> QualityBand:
        """Return the band of a face of quality ``score``.

        A score below ``min_quality`` (or not a number) is always the "unusable" band, its upper
        bound raised to ``min_quality`` where the table's is lower; otherwise the table's band that
        holds the score (the first or last band for a score outside the table).
        """
        if not score >= min_quality:  # NaN included
            unusable = self.named(UNUSABLE)
            return replace(unusable, high=max(unusable.high, float(min_quality)))
        for band in self.bands:
            if band.contains(score):
                return band
        return self.bands[0] if score < self.bands[0].low else self.bands[-1]


@functools.lru_cache(maxsize=8)
def _load(path: str | None) -> QualityBands:
    try:
        if path is None:
            text = resources.files("facetrace.gallery").joinpath(DEFAULT_QUALITY_BANDS).read_text()
        else:
            text = Path(path).read_text()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read quality bands {path or DEFAULT_QUALITY_BANDS}: {exc}") from None
    return QualityBands.from_dict(data)


def load_quality_bands(path: Path | str | None = None) -> QualityBands:
    """Return the quality band table at ``path``, or the one shipped with facetrace; read once per
    path and cached (a file changed afterwards is not read again).

    Raises:
        ConfigError: the file is missing, not JSON, or malformed (see :meth:`QualityBands.from_dict`).
    """
    return _load(None if path is None else str(path))


def quality_band(score: float, *, min_quality: float, bands: QualityBands | None = None) -> QualityBand:
    """Return the band of a face of quality ``score`` in ``bands`` (default: the shipped table).

    A score below ``min_quality`` is always the "unusable" band (see :meth:`QualityBands.band`).

    Raises:
        ConfigError: the shipped table cannot be read or is malformed.
    """
    return (bands or load_quality_bands()).band(score, min_quality=min_quality)
