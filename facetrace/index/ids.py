"""Set arithmetic on template ids, fast at millions.

``np.unique`` and ``np.setdiff1d`` (without ``assume_unique``) take 16 s and 36 s on 10 million int64 ids
with NumPy 2.4 on this machine; a sort and a neighbour comparison take under a second, and
``setdiff1d(..., assume_unique=True)`` on unique ids a fraction of one. A 10M gallery compares its
index with its database every time a process opens it.
"""

from __future__ import annotations

import numpy as np


def unique_ids(ids: np.ndarray) -> np.ndarray:
    """Return the distinct values of ``ids``, sorted, as int64."""
    ordered = np.sort(np.asarray(ids, dtype=np.int64))
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def id_differences(wanted: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (missing, extra): the distinct ids of ``wanted`` not in ``held``, and of ``held`` not in
    ``wanted``, each sorted."""
    wanted, held = unique_ids(wanted), unique_ids(held)
    return np.setdiff1d(wanted, held, assume_unique=True), np.setdiff1d(held, wanted, assume_unique=True)
