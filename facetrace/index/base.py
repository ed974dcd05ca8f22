"""The interface every vector backend implements (FAISS on disk, Milvus)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    """A set of (id, unit vector) pairs searchable by inner product."""

    dim: int

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

    def save(self) -> None:
        """Make the current content durable."""

    def describe(self) -> dict[str, object]:
        """Return a JSON-ready description (type, parameters, size)."""
        ...

    def close(self) -> None:
        """Release connections or files (the content stays)."""
