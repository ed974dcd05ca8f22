"""Quality bands: the band of a face's quality and what it means for the error rates, in plain words."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from facetrace.errors import ConfigError
from facetrace.gallery.quality_bands import QualityBand, QualityBands, load_quality_bands, quality_band

TABLE: dict[str, Any] = {
    "source": "test table",
    "policy_target_fpir": 0.01,
    "bands": [
        {"name": "unusable", "low": 0, "high": 20, "true_match_rate": 0.0, "false_match_rate": 0.0, "mated": 0,
         "nonmated": 0},
        {"name": "poor", "low": 20, "high": 40, "true_match_rate": 0.3, "false_match_rate": 0.012, "mated": 100,
         "nonmated": 100},
        {"name": "fair", "low": 40, "high": 70, "true_match_rate": 0.5, "false_match_rate": 0.01, "mated": 100,
         "nonmated": 100},
        {"name": "good", "low": 70, "high": 101, "true_match_rate": 0.7, "false_match_rate": 0.008, "mated": 100,
         "nonmated": 100},
    ],
}  # fmt: skip


@pytest.fixture
def bands() -> QualityBands:
    return QualityBands.from_dict(TABLE)


def _band(**change: Any) -> QualityBand:
    fields = {"name": "fair", "low": 40.0, "high": 70.0, "true_match_rate": 0.5, "false_match_rate": 0.01}
    return QualityBand(**{**fields, "mated": 100, "nonmated": 100, **change})


def test_the_shipped_table_loads_once_and_covers_every_quality() -> None:
    table = load_quality_bands()
    assert table is load_quality_bands()  # cached
    assert [b.name for b in table.bands][0] == "unusable"
    assert 0 < table.policy_target_fpir < 1 and table.source
    for score in range(101):
        assert quality_band(score, min_quality=0).contains(score)


@pytest.mark.parametrize(
    ("score", "name"),
    [(20, "poor"), (39.99, "poor"), (40, "fair"), (69.9, "fair"), (70, "good"), (100, "good"), (150, "good")],
)
def test_band_boundaries_come_from_the_table(bands: QualityBands, score: float, name: str) -> None:
    band = bands.band(score, min_quality=20)
    assert band.name == name and band.label == f"{name} quality"


@pytest.mark.parametrize("score", [0, 5, 19.99, 25, 39.9, float("nan")])
def test_below_the_minimum_quality_is_always_unusable(bands: QualityBands, score: float) -> None:
    band = bands.band(score, min_quality=40)  # a deployment stricter than the table: 25 is "poor" in the table
    assert band.name == "unusable" and band.label == "unusable quality"
    assert band.high == 40 and (math.isnan(score) or band.contains(score))
    assert band.advice == "Too poor to decide a match: candidates are shown for examination only."
    assert bands.band(40, min_quality=40).name == "fair"
    # A laxer deployment: between its minimum and the table's first usable band, the table decides.
    assert bands.band(15, min_quality=10).name == "unusable" and bands.band(15, min_quality=10).high == 20


def test_advice_says_the_measured_numbers_in_words(bands: QualityBands) -> None:
    good = bands.named("good").advice
    assert good == (
        "Photos of this quality found about 7 in 10 people who were in the gallery; "
        "about 1 in 100 searches for someone not in it matched someone else."
    )
    assert "about 5 in 10 people" in bands.named("fair").advice and "'no match'" not in bands.named("fair").advice
    poor = bands.named("poor").advice
    assert "about 3 in 10 people" in poor and "about 1 in 100 searches" in poor
    assert "A 'no match' here says little about whether the person is in the gallery" in poor
    assert "search again with a better photo" in poor
    # Other numbers, other words.
    assert "about 9 in 10 people" in _band(true_match_rate=0.91).advice
    assert "nearly all the people" in _band(true_match_rate=0.97).advice
    assert "about 3 in 1,000 searches" in _band(false_match_rate=0.003).advice
    assert "none of the searches" in _band(false_match_rate=0.0).advice
    assert "says little" in _band(name="fair", true_match_rate=0.4).advice  # few found: the caveat, whatever the name
    assert "not been measured" in _band(mated=0).advice


def test_as_dict_is_the_json_of_a_band(bands: QualityBands) -> None:
    band = bands.band(80, min_quality=20)
    assert band.as_dict() == {
        "name": "good",
        "label": "good quality",
        "low": 70.0,
        "high": 101.0,
        "true_match_rate": 0.7,
        "false_match_rate": 0.008,
        "advice": band.advice,
    }
    json.dumps(band.as_dict())


def _with(change: Any) -> dict[str, Any]:
    table = json.loads(json.dumps(TABLE))
    change(table)
    return table


MALFORMED = {
    "no bands": lambda t: t.pop("bands"),
    "empty bands": lambda t: t.update(bands=[]),
    "a band without a rate": lambda t: t["bands"][1].pop("true_match_rate"),
    "a rate above 1": lambda t: t["bands"][2].update(false_match_rate=1.5),
    "a rate as text": lambda t: t["bands"][2].update(true_match_rate="high"),
    "a negative count": lambda t: t["bands"][2].update(mated=-1),
    "a fractional count": lambda t: t["bands"][2].update(nonmated=2.5),
    "low above high": lambda t: t["bands"][3].update(low=120),
    "a gap": lambda t: t["bands"][2].update(low=45),
    "an overlap": lambda t: t["bands"][2].update(low=35),
    "not up to 100": lambda t: t["bands"][3].update(high=100),
    "a repeated name": lambda t: t["bands"][3].update(name="fair"),
    "no unusable band": lambda t: t["bands"][0].update(name="dreadful"),
    "no policy": lambda t: t.pop("policy_target_fpir"),
    "not a table": lambda t: t.clear(),
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_table_is_a_config_error(tmp_path: Path, change: Any) -> None:
    with pytest.raises(ConfigError, match="malformed quality bands"):
        QualityBands.from_dict(_with(change))
    path = tmp_path / "bands.json"
    path.write_text(json.dumps(_with(change)))
    with pytest.raises(ConfigError):
        load_quality_bands(path)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read quality bands"):
        load_quality_bands(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read quality bands"):
        load_quality_bands(tmp_path / "broken.json")
    for data in ([1, 2], "text", None):
        with pytest.raises(ConfigError, match="malformed"):
            QualityBands.from_dict(data)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TABLE))
    assert load_quality_bands(good) == QualityBands.from_dict(TABLE)
