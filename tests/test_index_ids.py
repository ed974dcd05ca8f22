"""Set arithmetic on template ids (facetrace.index.ids): the same answers as NumPy's set functions."""

from __future__ import annotations

import numpy as np

from facetrace.index import id_differences, unique_ids


def test_unique_ids_match_numpy() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 2, 1000):
        ids = rng.integers(-1, 50, size=size)
        assert np.array_equal(unique_ids(ids), np.unique(ids))
        assert unique_ids(ids).dtype == np.int64


def test_id_differences_match_numpy_with_duplicates() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        wanted, held = rng.integers(0, 80, size=60), rng.integers(0, 80, size=rng.integers(0, 60))
        missing, extra = id_differences(wanted, held)
        assert np.array_equal(missing, np.setdiff1d(wanted, held))
        assert np.array_equal(extra, np.setdiff1d(held, wanted))
    missing, extra = id_differences(np.array([], dtype=np.int64), np.array([5, 5, 2]))
    assert missing.tolist() == [] and extra.tolist() == [2, 5]
