"""Index layer: vector search backends over L2-normalised templates (inner product = cosine)."""

from facetrace.index.base import VectorIndex
from facetrace.index.faiss_index import FaissIndex

__all__ = ["FaissIndex", "VectorIndex"]
