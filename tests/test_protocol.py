"""Tests of the evaluation protocol (facetrace.evaluation.protocol): the split and the figures."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest

from facetrace.errors import FacetraceError, ManifestError
from facetrace.evaluation.protocol import (
    IMAGE_SUFFIXES,
    ProbeResult,
    Sample,
    build_split,
    compute_metrics,
    det_curve,
    fnir_at_fpir,
    is_excluded_identity,
    observed_fpir,
    threshold_at_fpir,
    wilson_interval,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _hash_mod3(name: str) -> int:
    # Written out again here, independently of the module, from the protocol's text.
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % 3


def _names(excluded: bool, count: int, prefix: str) -> list[str]:
    """Return ``count`` names ``prefix_N`` whose sha256 % 3 is 0 (excluded) or not."""
    names: list[str] = []
    i = 0
    while len(names) < count:
        name = f"{prefix}_{i:03d}"
        if (_hash_mod3(name) == 0) == excluded:
            names.append(name)
        i += 1
    return names


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff not decoded by the split")
    return path


def test_image_suffixes() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp"} == set(IMAGE_SUFFIXES)


def test_hash_rule_matches_the_protocol_text() -> None:
    for name in [
        "Aaron_Peirsol",
        "George_W_Bush",
        "Zoë_Ünicode",
        *_names(True, 3, "x"),
        *_names(False, 3, "x"),
    ]:
        assert is_excluded_identity(name) == (_hash_mod3(name) == 0)
    # Both outcomes occur among these names, so the check above is not vacuous.
    assert is_excluded_identity(_names(True, 1, "y")[0])
    assert not is_excluded_identity(_names(False, 1, "y")[0])


@pytest.fixture()
def synthetic(tmp_path: Path) -> dict[str, object]:
    """A small dataset covering every rule of the split."""
    root = tmp_path / "faces"
    keep_a, keep_big = _names(False, 2, "keep")
    drop_b, drop_big, drop_single = _names(True, 3, "drop")
    distractor_excluded = _names(True, 1, "dis")[0]
    distractor_kept = _names(False, 1, "dis")[0]

    # Enrolled identity with 3 images, created out of order; mixed-case suffixes count.
    _touch(root / keep_a / "c.jpg")
    _touch(root / keep_a / "a.JPG")
    _touch(root / keep_a / "b.PnG")
    _touch(root / keep_a / "z.gif")  # not an image suffix of the protocol
    _touch(root / keep_a / "notes.txt")
    _touch(root / keep_a / "sub" / "deeper.jpg")  # nested: not an image of the identity
    # Enrolled identity with 12 images: the cap keeps the first 10 (1 gallery + 9 mated).
    for i in reversed(range(12)):
        _touch(root / keep_big / f"img_{i:02d}.jpeg")
    # Excluded identities: every (capped) image is a non-mated probe.
    _touch(root / drop_b / "1.webp")
    _touch(root / drop_b / "2.bmp")
    for i in range(12):
        _touch(root / drop_big / f"img_{i:02d}.jpg")
    # One image only: enrolled even though the hash would exclude it.
    _touch(root / drop_single / "only.jpg")
    # Distractors: first image enrolled whatever the hash; further images unused.
    _touch(root / "distractors" / distractor_excluded / "d1.jpg")
    _touch(root / "distractors" / distractor_excluded / "d2.jpg")
    _touch(root / "distractors" / distractor_kept / "k1.jpg")
    (root / "distractors" / "empty_distractor").mkdir()
    _touch(root / "distractors" / "stray.jpg")  # not in an identity folder: "distractors" is no identity
    # Ignored: folders with no image, top-level files.
    _touch(root / "lists" / "pairs.csv")
    _touch(root / "lists" / "nested" / "x.jpg")
    (root / "empty_identity").mkdir()
    _touch(root / "README.md")
    _touch(root / "top_level.jpg")
    _touch(root / "labels.csv")
    return {
        "root": root,
        "keep_a": keep_a,
        "keep_big": keep_big,
        "drop_b": drop_b,
        "drop_big": drop_big,
        "drop_single": drop_single,
        "distractor_excluded": distractor_excluded,
        "distractor_kept": distractor_kept,
    }


def test_split_membership_is_exact(synthetic: dict[str, object]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    n = {key: str(value) for key, value in synthetic.items()}

    def s(identity: str, *parts: str) -> Sample:
        return Sample(identity, root.joinpath(*parts))

    split = build_split(root)

    expected_gallery = sorted(
        [
            s(n["keep_a"], n["keep_a"], "a.JPG"),
            s(n["keep_big"], n["keep_big"], "img_00.jpeg"),
            s(n["drop_single"], n["drop_single"], "only.jpg"),
        ],
        key=lambda x: x.identity,
    ) + sorted(
        [
            s(n["distractor_excluded"], "distractors", n["distractor_excluded"], "d1.jpg"),
            s(n["distractor_kept"], "distractors", n["distractor_kept"], "k1.jpg"),
        ],
        key=lambda x: x.identity,
    )
    assert split.gallery == expected_gallery

    expected_mated = sorted(
        [s(n["keep_a"], n["keep_a"], "b.PnG"), s(n["keep_a"], n["keep_a"], "c.jpg")]
        + [s(n["keep_big"], n["keep_big"], f"img_{i:02d}.jpeg") for i in range(1, 10)],
        key=lambda x: (x.identity, x.path.name),
    )
    assert split.mated == expected_mated

    expected_nonmated = sorted(
        [s(n["drop_b"], n["drop_b"], "1.webp"), s(n["drop_b"], n["drop_b"], "2.bmp")]
        + [s(n["drop_big"], n["drop_big"], f"img_{i:02d}.jpg") for i in range(10)],
        key=lambda x: (x.identity, x.path.name),
    )
    assert split.nonmated == expected_nonmated

    assert split.counts() == {"gallery": 5, "mated_probes": 11, "nonmated_probes": 12, "images": 28}
    every = split.all_samples()
    assert len(every) == len(set(every)) == 28
    assert set(every) == set(split.gallery) | set(split.mated) | set(split.nonmated)
    assert build_split(root).all_samples() == every  # deterministic
    used = {sample.path.name for sample in every}
    assert not used & {"z.gif", "notes.txt", "deeper.jpg", "x.jpg", "top_level.jpg", "d2.jpg", "stray.jpg"}
    assert {"img_10.jpeg", "img_11.jpeg", "img_10.jpg", "img_11.jpg"}.isdisjoint(used)


def test_cap_is_a_parameter(synthetic: dict[str, object]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    split = build_split(root, max_per_identity=2)
    # keep_a: a + b; keep_big: 00 + 01 -> 2 mated; drop_b 2 + drop_big 2 non-mated.
    assert split.counts() == {"gallery": 5, "mated_probes": 2, "nonmated_probes": 4, "images": 11}
    with pytest.raises(ValueError):
        build_split(root, max_per_identity=0)


def test_identity_stride(synthetic: dict[str, object]) -> None:
    root = synthetic["root"]
    assert isinstance(root, Path)
    full = build_split(root)
    identities = list(dict.fromkeys(s.identity for s in full.all_samples()))
    half = build_split(root, identity_stride=2)
    kept = {s.identity for s in half.all_samples()}
    assert kept and len(kept) < len(identities)
    assert set(s.identity for s in half.gallery) <= set(s.identity for s in full.gallery)
    assert build_split(root, identity_stride=1).all_samples() == full.all_samples()


def test_missing_or_empty_dataset_raises(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        build_split(tmp_path / "nope")
    empty = tmp_path / "empty"
    _touch(empty / "lists" / "pairs.csv")
    _touch(empty / "top.jpg")
    (empty / "distractors" / "nobody").mkdir(parents=True)
    with pytest.raises(ManifestError, match="no identity") as info:
        build_split(empty)
    assert isinstance(info.value, FacetraceError)
    a_file = _touch(tmp_path / "file.jpg")
    with pytest.raises(ManifestError):
        build_split(a_file)


def _faces_dev() -> Path:
    env = os.environ.get("FACETRACE_DATASET")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "faces-dev"


@pytest.mark.skipif(not (_faces_dev() / "George_W_Bush").is_dir(), reason="faces-dev not available")
def test_faces_dev_split_counts() -> None:
    # 3138 gallery images in the split; 3121 identities are enrolled by the peer (17 gallery FTX).
    split = build_split(_faces_dev())
    assert split.counts() == {"gallery": 3138, "mated_probes": 1784, "nonmated_probes": 1401, "images": 6323}
    assert sum(1 for s in split.all_samples() if s.identity == "George_W_Bush") == 10


# ---- figures ---------------------------------------------------------------------------------


def _mated() -> list[ProbeResult]:
    return [
        ProbeResult("A", [("A", 0.9), ("B", 0.5)]),  # rank 1, above both thresholds
        ProbeResult("B", [("A", 0.8), ("B", 0.7)]),  # rank 2
        ProbeResult("C", []),  # failure to extract: a miss everywhere
        ProbeResult("D", [("A", 0.6), ("B", 0.5), ("C", 0.4), ("E", 0.3), ("F", 0.2), ("D", 0.1)]),  # rank 6
        ProbeResult("E", [("E", 0.55)]),  # rank 1, above T(0.1) = 0.5 only
        ProbeResult("F", [("F", 0.5)]),  # rank 1, score == T(0.1): not strictly above, a miss
    ]


def _nonmated() -> list[ProbeResult]:
    # 21 best scores: 3 failures to extract (-inf), 15 in 0.30..0.44, then 0.5, 0.7, 0.85.
    # "higher" quantile: index ceil(q * 20) -> q=0.9: index 18 = 0.5; q=0.99: index 20 = 0.85.
    results = [ProbeResult(None, []) for _ in range(3)]
    results += [ProbeResult(None, [("A", 0.30 + i / 100), ("B", 0.0)]) for i in range(15)]
    results += [ProbeResult(None, [("Z", s)]) for s in (0.85, 0.5, 0.7)]
    return results


def test_compute_metrics_hand_checked() -> None:
    metrics = compute_metrics(_mated(), _nonmated())
    assert set(metrics) == {"rank1", "rank5", "fnir_at_fpir_0.01", "fnir_at_fpir_0.1"}
    assert metrics["rank1"] == pytest.approx(3 / 6)  # A, E, F
    assert metrics["rank5"] == pytest.approx(4 / 6)  # + B
    assert metrics["fnir_at_fpir_0.1"] == pytest.approx(4 / 6)  # hits: A (0.9), E (0.55) > 0.5
    assert metrics["fnir_at_fpir_0.01"] == pytest.approx(5 / 6)  # hit: A (0.9) > 0.85
    assert threshold_at_fpir(_nonmated(), 0.1) == pytest.approx(0.5)
    assert threshold_at_fpir(_nonmated(), 0.01) == pytest.approx(0.85)
    assert fnir_at_fpir(_mated(), _nonmated(), 0.1) == metrics["fnir_at_fpir_0.1"]
    for value in metrics.values():
        assert not math.isnan(value)


def test_threshold_uses_the_higher_quantile() -> None:
    nonmated = [ProbeResult(None, [("A", s)]) for s in (0.0, 1.0, 2.0, 3.0)]
    # q = 0.9 on 4 values: position 2.7 -> "higher" takes 3.0 (linear would give 2.7).
    assert threshold_at_fpir(nonmated, 0.1) == 3.0
    assert threshold_at_fpir(nonmated, 0.5) == 2.0  # position 1.5 -> 2.0
    mated = [ProbeResult("A", [("A", 2.9)]), ProbeResult("B", [("B", 3.5)])]
    assert fnir_at_fpir(mated, nonmated, 0.1) == 0.5


def test_nonmated_failures_count_as_no_candidate() -> None:
    # Most non-mated probes returned nothing: T is -inf and any rank-1 hit with a score counts.
    # 20 best scores: q=0.9 -> index ceil(0.9 * 19) = 18 (-inf); q=0.99 -> index 19 (5.0).
    nonmated = [ProbeResult(None, []) for _ in range(19)] + [ProbeResult(None, [("A", 5.0)])]
    mated = [ProbeResult("A", [("A", -3.0)]), ProbeResult("B", []), ProbeResult("C", [("A", 1.0)])]
    assert threshold_at_fpir(nonmated, 0.1) == -math.inf
    metrics = compute_metrics(mated, nonmated)
    assert metrics["fnir_at_fpir_0.1"] == pytest.approx(2 / 3)
    assert metrics["rank1"] == pytest.approx(1 / 3)
    # At FPIR 0.01 the threshold is the single non-mated score 5.0.
    assert metrics["fnir_at_fpir_0.01"] == 1.0


def test_rank_counts_identities_not_templates() -> None:
    result = ProbeResult("B", [("A", 0.9), ("A", 0.8), ("B", 0.7)])
    assert result.rank_of_truth() == 2
    assert ProbeResult(None, [("A", 1.0)]).rank_of_truth() is None
    assert ProbeResult("A", []).best_score() == -math.inf


def test_empty_inputs_raise_clearly() -> None:
    with pytest.raises(ValueError, match="non-mated"):
        compute_metrics(_mated(), [])
    with pytest.raises(ValueError, match="mated"):
        compute_metrics([], _nonmated())
    with pytest.raises(ValueError):
        fnir_at_fpir(_mated(), _nonmated(), 1.5)


def test_det_curve() -> None:
    curve = det_curve(_mated(), _nonmated(), [0.1, 0.01, 1.0])
    assert curve == [
        (0.01, pytest.approx(5 / 6)),
        (0.1, pytest.approx(4 / 6)),
        (1.0, pytest.approx(3 / 6)),  # T = min = -inf: every rank-1 hit counts
    ]
    spaced = det_curve(_mated(), _nonmated(), 5)
    assert len(spaced) == 5
    assert spaced[0][0] == pytest.approx(1 / 21) and spaced[-1][0] == pytest.approx(1.0)
    fnirs = [fnir for _, fnir in spaced]
    assert fnirs == sorted(fnirs, reverse=True)  # FNIR falls as FPIR rises


def test_observed_fpir_and_wilson() -> None:
    rate, low, high = observed_fpir([-math.inf, 0.1, 0.5, 0.9], 0.5)
    assert rate == 0.25  # only 0.9 is strictly above
    assert low == pytest.approx(0.0456, abs=1e-4)
    assert high == pytest.approx(0.6994, abs=1e-4)
    rate, low, high = observed_fpir(np.zeros(100), 0.0)
    assert (rate, low) == (0.0, 0.0)
    assert high == pytest.approx(0.0370, abs=1e-4)  # Wilson 0/100
    assert wilson_interval(50, 100) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    with pytest.raises(ValueError):
        observed_fpir([], 0.0)
    # The threshold at a target FPIR never gives an observed FPIR above the target.
    scores = [r.best_score() for r in _nonmated()]
    for fpir in (0.01, 0.1, 0.3):
        assert observed_fpir(scores, threshold_at_fpir(_nonmated(), fpir))[0] <= fpir
