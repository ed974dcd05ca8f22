"""FAISS index persisted as one file, written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)


class IndexCorrupt(Exception):
    """The index file exists but cannot be read."""


class FaissIndex:
    """An ``IndexIDMap2`` over any FAISS ``index_factory`` string, with inner-product metric."""

    def __init__(self, dim: int, factory: str = "Flat", path: Path | None = None) -> None:
        self.dim = dim
        self.factory = factory
        self.path = path
        self.index = faiss.IndexIDMap2(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        """Read an index saved by :meth:`save`.

        Raises:
            FileNotFoundError: no index file.
            IndexCorrupt: the file or its parameters cannot be read.
        """
        params_path = path.with_suffix(".json")
        if not path.exists():
            raise FileNotFoundError(path)
        try:
            params = json.loads(params_path.read_text())
            index = faiss.read_index(str(path))
        except Exception as exc:
            raise IndexCorrupt(f"{path.name}: {exc}") from None
        if not isinstance(index, faiss.IndexIDMap2) or index.d != params.get("dim"):
            raise IndexCorrupt(f"{path.name}: unexpected index type or dimension")
        self = cls.__new__(cls)
        self.dim = int(params["dim"])
        self.factory = str(params["factory"])
        self.path = path
        self.index = index
        return self

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, vectors: np.ndarray) -> None:
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not self.index.is_trained:
            self.train(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        return int(self.index.remove_ids(selector))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            n = len(queries)
            return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Return the stored vectors for ``ids`` (exact for Flat; decoded for compressed)."""
        return np.vstack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim))

    def save(self) -> None:
        """Write the index and its parameters atomically next to ``path``."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, faiss.serialize_index(self.index).tobytes())
        params = {"dim": self.dim, "factory": self.factory, "count": len(self)}
        _atomic_write(self.path.with_suffix(".json"), json.dumps(params).encode())

    def describe(self) -> dict[str, object]:
        return {"backend": "faiss", "factory": self.factory, "count": len(self), "dim": self.dim}


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
