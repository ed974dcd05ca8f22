"""Index layer: vector search backends over L2-normalised templates (inner product = cosine).

FAISS in the data home by default (:mod:`facetrace.index.faiss_index`, index type chosen by gallery
size), Milvus when ``FACETRACE_VECTOR_URL`` is set (:mod:`facetrace.index.milvus_index`); the
configured one is opened with :func:`open_vector_index`.
"""

from facetrace.index.backends import faiss_index_path, open_vector_index, plan_for
from facetrace.index.base import VectorIndex
from facetrace.index.faiss_index import FaissIndex, IndexPlan, choose_plan
from facetrace.index.ids import id_differences, unique_ids

__all__ = [
    "FaissIndex",
    "IndexPlan",
    "VectorIndex",
    "choose_plan",
    "faiss_index_path",
    "id_differences",
    "open_vector_index",
    "plan_for",
    "unique_ids",
]
