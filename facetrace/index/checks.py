"""Checks of an index's content against the database's templates (shared by the gallery, which checks a
small sample whenever it opens an index file, and ``facetrace doctor``, which checks more)."""

from __future__ import annotations

import numpy as np

from facetrace.index.base import VectorIndex

#: Exact codes must give back the stored template: cosine 1 within this.
EXACT_TOLERANCE = 1e-4
#: Compressed codes must find their own template among this many nearest.
COMPRESSED_NEAREST = 10


def holds_exact_codes(index: VectorIndex) -> bool:
    """Return whether ``index`` gives back its vectors exactly (FAISS flat or HNSW-flat codes, Milvus)."""
    return index.plan is None or index.plan.exact_codes


def templates_intact(index: VectorIndex, ids: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Return, per id, whether ``index`` holds the database's template ``stored`` under it: a file can
    load and hold the right ids while its vectors are damaged (bit rot).

    Exact codes must equal the template (cosine within :data:`EXACT_TOLERANCE` of 1). Compressed codes
    are approximations (PQ: cosine 0.5 to the original): the template must find itself among its
    :data:`COMPRESSED_NEAREST` nearest instead (IVF visits only some clusters: a few may not).

    Raises:
        KeyError: the codes are exact and an id is not held.
    """
    if holds_exact_codes(index):
        found = index.vectors(ids)
        with np.errstate(all="ignore"):  # damaged bytes may decode to huge floats or NaN
            cosine = np.sum(found.astype(np.float64) * stored, axis=1)
        return np.asarray(np.abs(np.nan_to_num(cosine, nan=-1.0) - 1.0) <= EXACT_TOLERANCE)
    _, hits = index.search(stored, COMPRESSED_NEAREST)
    return np.asarray((hits == ids[:, None]).any(axis=1))
