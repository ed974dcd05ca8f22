"""The interface every vector backend implements (FAISS on disk, Milvus)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # only a type: the FAISS module is one implementation of this protocol
    from facetrace.index.faiss_index import IndexPlan

VectorSource = Callable[[np.ndarray], np.ndarray]
"""Returns the exact float32 vectors of the given ids, rows of NaN for ids it does not know."""


class VectorIndex(Protocol):
    """A set of (id, unit vector) pairs searchable by inner product."""

    dim: int

    @property
    def kind(self) -> str:
        """The backend's name: ``faiss`` or ``milvus``."""
        ...

    @property
    def plan(self) -> IndexPlan | None:
        """The FAISS plan the index was built from, or None when the vector database plans and
        maintains its own index (then facetrace never rebuilds it in the background)."""
        ...

    @property
    def tombstone_share(self) -> float:
        """The share of entries that are erased templates still taking room (0 when none are kept)."""
        ...

    @property
    def persisted(self) -> bool:
        """Whether the content has a durable copy where it is kept (False for a FAISS file not written yet)."""
        ...

    @property
    def writes_durable(self) -> bool:
        """Whether each add and remove is durable when it returns (a vector database's write-ahead log), so
        that :meth:`save` is needed only at a handover (a rebuild, a migration, closing), not after each."""
        ...

    def __len__(self) -> int: ...

    @property
    def needs_training(self) -> bool:
        """Whether :meth:`train` must be called before the first :meth:`add`."""
        ...

    def training_size(self) -> int:
        """Return how many sample vectors :meth:`train` wants (0 when it needs none)."""
        ...

    def train(self, vectors: np.ndarray) -> None:
        """Fit clusters or codebooks on a sample of the vectors to come."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under int64 ``ids`` (ids must not be present already)."""

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; return how many were present."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k), best first; missing slots have id -1."""
        ...

    def ids(self) -> np.ndarray:
        """Return every id held, as int64."""
        ...

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Return the vectors held for ``ids`` (approximations when the codes are compressed).

        Raises:
            KeyError: an id is not held.
        """
        ...

    def set_vector_source(self, source: VectorSource) -> None:
        """Use ``source`` for the exact vectors of compressed codes (re-ranking); ignored when scores are exact."""

    def clear(self) -> None:
        """Remove every vector, keeping the index's kind and parameters (durable after :meth:`save`)."""

    def save(self) -> None:
        """Make the current content durable."""

    def describe(self) -> dict[str, object]:
        """Return a JSON-ready description (type, parameters, size)."""
        ...

    def close(self) -> None:
        """Release connections or files (the content stays)."""
