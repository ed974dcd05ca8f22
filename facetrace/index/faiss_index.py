"""FAISS index persisted as one file, written atomically (temporary file, fsync, rename), with the index
parameters (its :class:`IndexPlan`) in a ``.json`` sidecar.

Which index: :func:`choose_plan` picks by gallery size (docs/scale.md has the measurements behind it):

* up to :data:`FLAT_MAX` templates, ``Flat``: exact brute-force search (about 3 ms per probe at 200k);
* above, ``IVF{nlist},SQ8`` with exact re-ranking: the templates are split into ``nlist`` clusters
  (about 4 sqrt(N)) and held as 8-bit codes (136 bytes per template with its id); a probe visits the
  ``nprobe`` nearest clusters (about 8 sqrt(nlist)), takes ``rerank`` x k candidates by approximate
  score and re-ranks them by the exact inner product of the stored float32 templates
  (``vector_source``: the database, for the gallery). On face-like templates this reached recall@10
  0.996 against exact search at 10M in under 10 ms per probe on one core, 4 times smaller and faster
  than the same IVF over full vectors (``IVF{nlist},Flat``, same recall) and than HNSW.

An explicit FAISS ``index_factory`` string may be configured instead (``{nlist}`` in it is replaced by
the size-based value), e.g. ``IVF{nlist},Flat`` or ``HNSW32,SQ8``. IVF indexes keep the caller's ids
in their inverted lists (no ``IndexIDMap``: ``IndexIDMap`` over IVF returns wrong ids after a removal,
because it assumes the wrapped index renumbers its entries the way ``IndexFlat`` does). Other indexes
are wrapped in ``IndexIDMap2``. HNSW cannot remove graph nodes: an erased template's stored vector is
overwritten with zeros and its id with -1 (a tombstone, excluded from every search), so erasure is
real at once; the graph is rebuilt when tombstones pass :data:`COMPACT_SHARE`. Other indexes that
cannot remove entries are rebuilt without them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np

from facetrace.config import get_settings
from facetrace.crypto import MAGIC, DecryptionError, Keyring
from facetrace.fsutil import atomic_write
from facetrace.index.base import VectorSource

log = logging.getLogger(__name__)

#: Exact ``Flat`` search up to this many templates (about 3 ms per probe on one core at this size).
FLAT_MAX = 200_000
#: HNSW search depth for configured HNSW factories (recall@10 0.991 at 1M face-like templates).
DEFAULT_EFSEARCH = 512
#: HNSW build depth (FAISS's default): deeper builds a slightly better graph, much more slowly.
DEFAULT_EFCONSTRUCTION = 40
#: The HNSW graph is rebuilt once this share of its nodes are tombstones of erased templates.
COMPACT_SHARE = 0.2
#: Templates per IVF cluster used to train the cluster centres (k-means cost grows with it).
TRAIN_PER_LIST = 64
#: At most this many training templates (k-means time grows with templates x clusters).
TRAIN_MAX = 262_144
#: Fewest training templates per cluster: FAISS k-means needs at least one per centre, and the
#: clusters are poor below this.
MIN_TRAIN_PER_LIST = 8
#: An automatic IVF index is rebuilt with more clusters when the gallery has grown this many times.
REGROW_FACTOR = 4
#: Shortlist factor for exact re-ranking of compressed (lossy) codes.
DEFAULT_RERANK = 4
#: The memory budget check leaves room for the gallery to grow by this factor.
HEADROOM = 1.25
#: Searches of fewer probes than this run on one thread: on a shared machine a single probe is several
#: times slower when OpenMP threads wait for each other (1.8 ms vs 16 ms for Flat at 100k, 2 busy cores).
SINGLE_THREAD_BELOW = 16
#: Bytes per template beyond the codes: the 8-byte id, plus the reverse map of ``IndexIDMap2``.
_ID_BYTES_IVF = 8
_ID_BYTES_IDMAP2 = 8 + 48
#: HNSW bytes per node beyond the bottom layer's links: upper layers, level and offset tables.
_HNSW_EXTRA = 16


class IndexCorrupt(Exception):
    """The index file exists but cannot be read."""


class IndexNotTrained(Exception):
    """An IVF/PQ index was given too few templates to train its clusters or codebooks."""


@dataclass
class IndexPlan:
    """What index to build and how to search it; persisted in the ``.json`` sidecar.

    ``nprobe``: clusters visited per probe (IVF only). ``efsearch``/``efconstruction``: HNSW search
    and build depth (HNSW, or an HNSW coarse quantizer). ``rerank``: the shortlist is ``rerank`` x k,
    re-scored exactly (1 = the index's own scores are exact). ``auto``: chosen by size, so it may be
    replaced by a bigger index as the gallery grows. ``planned_for``: the gallery size it was chosen
    for. ``wanted``: a configured factory that could not be trained yet (too few templates), ``Flat``
    serves meanwhile. ``configured``: the configured factory string the plan was made from (None:
    automatic).
    """

    factory: str = "Flat"
    nprobe: int = 0
    efsearch: int = 0
    efconstruction: int = 0
    rerank: int = 1
    auto: bool = True
    planned_for: int = 0
    wanted: str | None = None
    configured: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def nlist(self) -> int:
        """Return the number of IVF clusters (0 when not an IVF index)."""
        match = re.match(r"^(?:.*,)?IVF(\d+)", self.factory)
        return int(match.group(1)) if match else 0

    @property
    def hnsw_m(self) -> int:
        """Return the HNSW graph degree (0 when not an HNSW index; an HNSW coarse quantizer does not count)."""
        match = re.fullmatch(r"HNSW(\d+)(,.*)?", self.factory)
        return int(match.group(1)) if match else 0

    @property
    def exact_codes(self) -> bool:
        """Whether the index holds the full float32 vectors (its scores are exact inner products)."""
        return bool(re.fullmatch(r"(IDMap2?,)?((IVF\d+(_HNSW\d+)?|HNSW\d+),)?Flat|HNSW\d+", self.factory))

    @property
    def kind(self) -> str:
        """Return ``flat``, ``hnsw``, ``ivf``, ``hnsw-compressed``, ``ivf-compressed`` or ``custom``."""
        if self.factory == "Flat":
            return "flat"
        compressed = r"(SQ8|SQfp16|PQ\d+(x\d+)?)"
        if self.hnsw_m:
            if self.exact_codes:
                return "hnsw"
            return "hnsw-compressed" if re.fullmatch(rf"HNSW\d+,{compressed}", self.factory) else "custom"
        if self.nlist and self.exact_codes:
            return "ivf"
        if re.fullmatch(rf"IVF\d+(_HNSW\d+)?,{compressed}", self.factory):
            return "ivf-compressed"
        return "custom"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexPlan:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def nlist_for(n: int) -> int:
    """Return the IVF cluster count for ``n`` templates: the power of two nearest 4 sqrt(n), in [256, 65536]."""
    target = 4 * math.sqrt(max(n, 1))
    return int(min(65536, max(256, 2 ** round(math.log2(target)))))


def nprobe_for(nlist: int) -> int:
    """Return the default clusters visited per probe for ``nlist`` clusters: 8 sqrt(nlist), in [16, nlist].

    Measured with bench/search_scale.py (docs/scale.md) on face-like templates, this gives recall@10
    >= 0.99 against exact search: 256 of 1024 clusters at 100k, 512 of 4096 at 1M, 1024 of 16384 at 10M.
    """
    return int(min(nlist, max(16, round(8 * math.sqrt(nlist)))))


def bytes_per_template(factory: str, dim: int) -> int:
    """Return the estimated memory per template of an index built from ``factory`` (codes, links, ids)."""
    plan = IndexPlan(factory=factory)
    code = 4 * dim
    if "SQ8" in factory:
        code = dim
    elif "SQfp16" in factory:
        code = 2 * dim
    elif match := re.search(r"PQ(\d+)", factory):
        code = int(match.group(1))
    if plan.nlist:
        return code + _ID_BYTES_IVF
    if plan.hnsw_m:
        return code + 8 * plan.hnsw_m + _HNSW_EXTRA + _ID_BYTES_IDMAP2
    return code + _ID_BYTES_IDMAP2


def physical_memory_bytes() -> int:
    """Return the machine's RAM in bytes (16 GiB when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 16 * 2**30


def memory_budget_bytes(memory_mb: int = 0) -> int:
    """Return the index memory budget: ``memory_mb`` MiB, or a quarter of the RAM when 0.

    A quarter leaves room for a rebuild (old and new index side by side), the database's cache and
    the rest of the server.
    """
    return memory_mb * 2**20 if memory_mb > 0 else physical_memory_bytes() // 4


def _complete(plan: IndexPlan, nprobe: int = 0, efsearch: int = 0) -> IndexPlan:
    """Fill in the search parameters and the re-rank factor of ``plan``'s factory."""
    if plan.nlist:
        plan.nprobe = nprobe or nprobe_for(plan.nlist)
    if "HNSW" in plan.factory:
        plan.efsearch = efsearch or (DEFAULT_EFSEARCH if plan.hnsw_m else max(64, 2 * plan.nprobe))
        plan.efconstruction = plan.efconstruction or DEFAULT_EFCONSTRUCTION
    plan.rerank = 1 if plan.exact_codes else DEFAULT_RERANK
    return plan


def choose_plan(
    n: int,
    dim: int = 128,
    *,
    factory: str | None = None,
    memory_budget: int | None = None,
    nprobe: int = 0,
    efsearch: int = 0,
) -> IndexPlan:
    """Return the index plan for a gallery of ``n`` templates.

    ``factory``: an explicit FAISS factory string (``{nlist}`` is filled in); when it needs more
    templates to train than there are, the plan is ``Flat`` with ``wanted`` set to it. Otherwise the
    choice is by size: ``Flat`` up to :data:`FLAT_MAX`, then ``IVF{nlist},SQ8`` re-ranked exactly. A
    warning is logged when that needs more than ``memory_budget`` bytes (default a quarter of the
    RAM) with room to grow by :data:`HEADROOM`.
    """
    nlist = nlist_for(n)
    if factory and factory.lower() != "auto":
        resolved = factory.replace("{nlist}", str(nlist))
        plan = IndexPlan(factory=resolved, auto=False, planned_for=n)
        if plan.nlist and n < plan.nlist * MIN_TRAIN_PER_LIST:
            return IndexPlan(factory="Flat", auto=False, planned_for=n, wanted=factory)
        return _complete(plan, nprobe, efsearch)
    if n <= FLAT_MAX:
        return IndexPlan(factory="Flat", planned_for=n)
    plan = _complete(IndexPlan(factory=f"IVF{nlist},SQ8", planned_for=n), nprobe, efsearch)
    budget = memory_budget if memory_budget is not None else memory_budget_bytes()
    needed = int(HEADROOM * n * bytes_per_template(plan.factory, dim))
    if needed > budget:
        log.warning(
            "the index of %d templates needs about %.1f GiB, over the budget of %.1f GiB (FACETRACE_INDEX_MEMORY_MB)",
            n,
            needed / 2**30,
            budget / 2**30,
        )
    return plan


_ORDER = {"flat": 0, "hnsw": 1, "ivf": 1, "hnsw-compressed": 2, "ivf-compressed": 3, "custom": 0}


def upgrade_plan(plan: IndexPlan, n: int, dim: int = 128, *, memory_budget: int | None = None) -> IndexPlan | None:
    """Return the plan to rebuild into now that the gallery holds ``n`` templates, or None to keep ``plan``.

    An automatic ``Flat`` index moves to IVF above :data:`FLAT_MAX`; an automatic IVF index is rebuilt
    with more clusters once the gallery is :data:`REGROW_FACTOR` times the size it was planned for; a
    configured factory that was waiting for enough templates to train is built once there are enough.
    Shrinking galleries keep their index.
    """
    if plan.wanted:
        wanted = choose_plan(n, dim, factory=plan.wanted, memory_budget=memory_budget)
        return wanted if wanted.wanted is None else None
    if not plan.auto:
        return None
    wanted = choose_plan(n, dim, memory_budget=memory_budget)
    if _ORDER[wanted.kind] > _ORDER[plan.kind]:
        return wanted
    if plan.nlist and n > REGROW_FACTOR * max(plan.planned_for, 1) and wanted.nlist > plan.nlist:
        return wanted
    return None


class FaissIndex:
    """A FAISS index over L2-normalised templates, searched by inner product (= cosine).

    ``vector_source``: optional function returning the exact float32 vectors of the given ids (rows of
    NaN for unknown ids), used to re-rank compressed codes.
    """

    kind = "faiss"

    def __init__(
        self,
        dim: int,
        factory: str = "Flat",
        path: Path | None = None,
        *,
        plan: IndexPlan | None = None,
        keyring: Keyring | None = None,
    ):
        self.dim = dim
        self.plan = plan or _complete(IndexPlan(factory=factory, auto=False))
        self.path = path
        self.keyring = keyring  # seals the file on save when it holds a key
        self.vector_source: VectorSource | None = None
        self.index = self._new_faiss_index()
        self._tombstones = 0
        self._apply_search_parameters()

    # -- construction -------------------------------------------------------------------
    @property
    def factory(self) -> str:
        return self.plan.factory

    def clear(self) -> None:
        """Drop every vector: an empty index of the same plan, path and keys (the file changes on :meth:`save`)."""
        self.index = self._new_faiss_index()
        self._tombstones = 0
        self._apply_search_parameters()

    def set_vector_source(self, source: VectorSource) -> None:
        """Re-rank compressed codes with the exact vectors ``source`` returns."""
        self.vector_source = source

    @property
    def writes_durable(self) -> bool:
        """False: changes live in memory until :meth:`save` writes the file."""
        return False

    @property
    def persisted(self) -> bool:
        """Whether the index has its file (always True for an index kept in memory only)."""
        return self.path is None or self.path.exists()

    def graph_matches_plan(self) -> bool:
        """Return whether the index holds an HNSW graph exactly when its plan says it should.

        A crash between writing the sidecar and replacing the index file can pair a graph index's
        parameters with a flat file (both have no clusters, so :meth:`load` does not notice).
        """
        return (self.plan.hnsw_m > 0) == (self._hnsw() is not None)

    def _new_faiss_index(self) -> faiss.Index:
        try:
            base = faiss.index_factory(self.dim, self.plan.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(f"invalid FAISS index factory {self.plan.factory!r}: {_faiss_message(exc)}") from None
        ivf = faiss.try_extract_index_ivf(base)
        if ivf is not None:
            # Fewer k-means iterations than FAISS's default 25: the cluster quality gained after
            # 10 does not change recall measurably, and training is the slow part of a rebuild.
            ivf.cp.niter = 10
            ivf.cp.max_points_per_centroid = TRAIN_PER_LIST
            return base  # IVF keeps the caller's ids itself
        hnsw = faiss.downcast_index(base)
        if isinstance(hnsw, faiss.IndexHNSW):
            hnsw.hnsw.efConstruction = self.plan.efconstruction or DEFAULT_EFCONSTRUCTION
        return faiss.IndexIDMap2(base)

    @classmethod
    def load(cls, path: Path, keyring: Keyring | None = None) -> FaissIndex:
        """Read an index saved by :meth:`save`; an encrypted file is opened with ``keyring`` (None: the keys
        configured in the environment).

        Raises:
            FileNotFoundError: no index file.
            IndexCorrupt: the file or its parameters cannot be read, or it is encrypted with a key that is
                not configured, or it fails authentication (the caller rebuilds it from the database).
        """
        params_path = path.with_suffix(".json")
        if not path.exists():
            raise FileNotFoundError(path)
        try:
            params = json.loads(params_path.read_text())
            with open(path, "rb") as handle:
                encrypted = handle.read(len(MAGIC)) == MAGIC
            if encrypted:
                if keyring is None:
                    keyring = get_settings().keyring
                data = keyring.open(path.read_bytes(), _index_context(path))
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
                del data
            else:
                index = faiss.read_index(str(path))
        except DecryptionError as exc:
            raise IndexCorrupt(f"{path.name}: {exc.message}") from None
        except Exception as exc:
            raise IndexCorrupt(f"{path.name}: {exc}") from None
        is_ivf = faiss.try_extract_index_ivf(index) is not None
        if not (is_ivf or isinstance(index, faiss.IndexIDMap2)) or index.d != params.get("dim"):
            raise IndexCorrupt(f"{path.name}: unexpected index type or dimension")
        if isinstance(index, faiss.IndexIDMap2) and faiss.try_extract_index_ivf(index.index) is not None:
            raise IndexCorrupt(f"{path.name}: IndexIDMap2 over IVF loses ids on removal; rebuild it")
        # files of the first version have no plan: their Flat index was the automatic choice
        legacy = {"factory": params["factory"], "auto": params["factory"] == "Flat"}
        plan = IndexPlan.from_dict(params.get("plan") or legacy)
        ivf = faiss.try_extract_index_ivf(index)
        if (ivf.nlist if ivf is not None else 0) != plan.nlist:
            raise IndexCorrupt(f"{path.name}: the index does not match its parameters ({plan.factory})")
        self = cls.__new__(cls)
        self.dim = int(params["dim"])
        self.plan = plan
        self.path = path
        self.keyring = keyring
        self.vector_source = None
        self.index = index
        self._tombstones = int((self._id_map() < 0).sum()) if self._hnsw() is not None else 0
        self._apply_search_parameters()
        return self

    def _apply_search_parameters(self) -> None:
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            ivf.nprobe = max(1, min(self.plan.nprobe or nprobe_for(ivf.nlist), ivf.nlist))
            quantizer = faiss.downcast_index(ivf.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                quantizer.hnsw.efSearch = max(self.plan.efsearch, ivf.nprobe)
        elif (hnsw := self._hnsw()) is not None:
            hnsw.hnsw.efSearch = self.plan.efsearch or DEFAULT_EFSEARCH

    def set_nprobe(self, nprobe: int) -> None:
        """Visit ``nprobe`` clusters per probe from now on (IVF only; persisted by :meth:`save`)."""
        if nprobe > 0 and self.plan.nlist:
            self.plan.nprobe = nprobe
            self.plan.efsearch = max(self.plan.efsearch, nprobe) if "HNSW" in self.plan.factory else 0
            self._apply_search_parameters()

    def set_efsearch(self, efsearch: int) -> None:
        """Keep ``efsearch`` candidates while walking the HNSW graph from now on (persisted by :meth:`save`)."""
        if efsearch > 0 and self.plan.hnsw_m:
            self.plan.efsearch = efsearch
            self._apply_search_parameters()

    def _hnsw(self) -> Any:
        """Return the HNSW index inside the ``IndexIDMap2``, or None when this is no HNSW index."""
        if not isinstance(self.index, faiss.IndexIDMap2):
            return None
        inner = faiss.downcast_index(self._wrapped())
        return inner if isinstance(inner, faiss.IndexHNSW) else None

    def _id_map(self) -> np.ndarray:
        """Return a writable view of the ``IndexIDMap2`` ids (position -> id; -1 marks a tombstone)."""
        id_map = cast(Any, self.index).id_map
        if id_map.size() == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(id_map.data(), id_map.size())

    @property
    def tombstone_share(self) -> float:
        """Return the share of HNSW nodes that are tombstones of erased templates (0 for other indexes)."""
        total = int(self.index.ntotal)
        return self._tombstones / total if total else 0.0

    # -- content ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.index.ntotal) - self._tombstones

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def training_size(self) -> int:
        """Return how many templates :meth:`train` should get (0 when the index needs no training)."""
        if self.index.is_trained:
            return 0
        return min(TRAIN_MAX, self.plan.nlist * TRAIN_PER_LIST) if self.plan.nlist else 65536

    def train(self, vectors: np.ndarray) -> None:
        """Train clusters/codebooks on a sample of the templates.

        Raises:
            IndexNotTrained: fewer templates than the index needs.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self.plan.nlist and len(vectors) < self.plan.nlist * MIN_TRAIN_PER_LIST:
            raise IndexNotTrained(
                f"index {self.plan.factory} needs at least {self.plan.nlist * MIN_TRAIN_PER_LIST} templates "
                f"to train, got {len(vectors)}"
            )
        started = time.perf_counter()
        try:
            self.index.train(vectors)
        except RuntimeError as exc:
            raise IndexNotTrained(f"index {self.plan.factory}: {_faiss_message(exc)}") from None
        log.info("trained %s on %d templates in %.1fs", self.plan.factory, len(vectors), time.perf_counter() - started)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` under int64 ``ids`` (training on them first if the index is untrained).

        Raises:
            IndexNotTrained: the index is untrained and ``vectors`` are too few to train it.
        """
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not self.index.is_trained:
            if self.plan.nlist and len(vectors) < self.plan.nlist * MIN_TRAIN_PER_LIST:
                self._fall_back_to_flat(len(vectors))
            else:
                self.train(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def _fall_back_to_flat(self, count: int) -> None:
        """Serve an empty, untrained IVF index as ``Flat`` until there are enough templates to train it."""
        log.warning("%d template(s) are too few to train %s: exact Flat search meanwhile", count, self.plan.factory)
        self.plan = IndexPlan(
            factory="Flat",
            auto=self.plan.auto,
            planned_for=count,
            wanted=None if self.plan.auto else (self.plan.configured or self.plan.factory),
            configured=self.plan.configured,
        )
        self.index = self._new_faiss_index()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; return how many entries were removed."""
        if len(ids) == 0 or len(self) == 0:
            return 0
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._hnsw() is not None:
            return self._tombstone(ids)
        try:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        except RuntimeError:
            # This index cannot remove entries: rebuild without them (slow, but erasure must be real).
            return self._rebuild_without(ids)

    def _tombstone(self, ids: np.ndarray) -> int:
        """Erase HNSW nodes: overwrite their stored vectors with zeros and their ids with -1.

        The graph keeps the node (HNSW has no removal), but nothing of the template remains, a zero
        vector is never close to a probe, and searches exclude id -1 besides.
        """
        id_map = self._id_map()
        positions = np.flatnonzero(np.isin(id_map, ids) & (id_map >= 0))
        if not len(positions):
            return 0
        storage: Any = faiss.downcast_index(self._hnsw().storage)
        codes = faiss.rev_swig_ptr(storage.codes.data(), storage.codes.size())
        codes.reshape(-1, storage.code_size)[positions] = 0
        id_map[positions] = -1
        self._tombstones += len(positions)
        return len(positions)

    def _wrapped(self) -> Any:
        """Return the index inside the ``IndexIDMap2`` (non-IVF indexes)."""
        return cast(Any, self.index).index

    def _rebuild_without(self, ids: np.ndarray) -> int:
        started = time.perf_counter()
        held = faiss.vector_to_array(cast(Any, self.index).id_map).astype(np.int64)
        keep = ~np.isin(held, ids) & (held >= 0)
        base = faiss.downcast_index(self._wrapped())  # non-IVF indexes sit in an IndexIDMap2
        total = int(self.index.ntotal)
        vectors = base.reconstruct_n(0, total) if total else np.zeros((0, self.dim), np.float32)
        replacement = self._new_faiss_index()
        if not replacement.is_trained:
            replacement.train(vectors[keep])
        replacement.add_with_ids(np.ascontiguousarray(vectors[keep]), np.ascontiguousarray(held[keep]))
        self.index = replacement
        self._tombstones = 0
        self._apply_search_parameters()
        log.warning(
            "index %s cannot remove entries: rebuilt without %d template(s) in %.1fs",
            self.plan.factory,
            int((~keep).sum()),
            time.perf_counter() - started,
        )
        return int((~keep).sum())

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k), best first; empty slots have id -1 and score -inf.

        Compressed indexes with a ``vector_source`` return exact scores: a shortlist of ``rerank`` x k
        is re-scored with the stored float32 templates.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(queries)
        if len(self) == 0:
            k = max(1, k)
            return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        k = max(1, min(k, len(self)))
        rerank = self.plan.rerank if (self.plan.rerank > 1 and self.vector_source is not None) else 1
        shortlist = min(len(self), k * rerank)
        params = None
        if self._tombstones:
            params = cast(Any, faiss).SearchParametersHNSW()
            params.efSearch = self.plan.efsearch or DEFAULT_EFSEARCH
            params.sel = _NOT_TOMBSTONE
        scores, ids = _search_threads(self.index, queries, shortlist, params)
        scores[ids < 0] = -np.inf
        if rerank > 1:
            assert self.vector_source is not None
            scores, ids = rerank_exact(queries, ids, self.vector_source)
        return scores[:, :k], ids[:, :k]

    def ids(self) -> np.ndarray:
        """Return every id held, as int64."""
        if isinstance(self.index, faiss.IndexIDMap2):
            held = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            return held[held >= 0] if self._tombstones else held
        ivf = faiss.extract_index_ivf(self.index)
        invlists = ivf.invlists
        assert invlists is not None
        parts = []
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Return the stored vectors for ``ids`` (exact for ``Flat`` codes, decoded for compressed ones).

        Raises:
            KeyError: an id is not in the index.
        """
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if isinstance(self.index, faiss.IndexIDMap2):
            if self._tombstones and not np.isin(ids, self.ids()).all():
                raise KeyError("id not in the index")
            return np.vstack([self.index.reconstruct(int(i)) for i in ids])
        ivf = faiss.extract_index_ivf(self.index)
        invlists = ivf.invlists
        assert invlists is not None
        wanted = {int(i): row for row, i in enumerate(ids)}
        out = np.full((len(ids), self.dim), np.nan, dtype=np.float32)
        buffer = np.zeros(self.dim, dtype=np.float32)
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if not size:
                continue
            list_ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            for offset in np.flatnonzero(np.isin(list_ids, ids)):
                ivf.reconstruct_from_offset(list_no, int(offset), faiss.swig_ptr(buffer))
                out[wanted[int(list_ids[offset])]] = buffer
        if np.isnan(out[:, 0]).any():
            raise KeyError("id not in the index")
        return out

    # -- persistence --------------------------------------------------------------------
    def save(self) -> None:
        """Write the index and its parameters atomically next to ``path`` (no copy in memory unless it is
        encrypted: then it is serialised, sealed with ``keyring`` and written)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.keyring is not None and self.keyring.enabled:
            self._save_sealed(self.path, self.keyring)
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            params = self._params()
            # sidecar first: an index file never lies next to parameters of another index for long,
            # and both are checked on load
            atomic_write(self.path.with_suffix(".json"), json.dumps(params, indent=1).encode())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _save_sealed(self, path: Path, keyring: Keyring) -> None:
        # Serialising holds one copy of the index in memory, sealing a second: twice the index's size
        # for the moment of the save (the plaintext path streams to the file instead).
        sealed = keyring.seal(faiss.serialize_index(self.index).tobytes(), _index_context(path))
        atomic_write(path.with_suffix(".json"), json.dumps(self._params(), indent=1).encode())
        atomic_write(path, sealed)

    def _params(self) -> dict[str, Any]:
        return {"dim": self.dim, "factory": self.plan.factory, "count": len(self), "plan": self.plan.as_dict()}

    def memory_bytes(self) -> int:
        """Return the estimated memory held by the index's codes, ids and cluster centres."""
        ivf = faiss.try_extract_index_ivf(self.index)
        total = int(self.index.ntotal)
        if ivf is not None:
            return total * (ivf.code_size + _ID_BYTES_IVF) + ivf.nlist * self.dim * 4
        hnsw = self._hnsw()
        if hnsw is not None:
            code = _code_size(faiss.downcast_index(hnsw.storage), self.dim)
            links = 4 * int(hnsw.hnsw.neighbors.size()) // max(total, 1)
            return total * (code + links + _HNSW_EXTRA + _ID_BYTES_IDMAP2)
        return total * (_code_size(faiss.downcast_index(self._wrapped()), self.dim) + _ID_BYTES_IDMAP2)

    def describe(self) -> dict[str, object]:
        """Return the backend, factory, size and search parameters, JSON-ready."""
        count = len(self)
        memory = self.memory_bytes()
        return {
            "backend": "faiss",
            "factory": self.plan.factory,
            "count": count,
            "dim": self.dim,
            "exact_search": self.plan.kind == "flat",
            "exact_scores": self.plan.exact_codes or (self.plan.rerank > 1 and self.vector_source is not None),
            "nprobe": self.plan.nprobe if self.plan.nlist else None,
            "efsearch": self.plan.efsearch if self.plan.hnsw_m else None,
            "tombstones": self._tombstones,
            "rerank": self.plan.rerank,
            "auto": self.plan.auto,
            "memory_bytes": memory,
            "bytes_per_template": round(memory / count, 1) if count else None,
        }

    def close(self) -> None:
        """Nothing to release (the index lives in this process)."""


def _index_context(path: Path) -> bytes:
    """The associated data of an encrypted index file: its name (which names its model)."""
    return b"index:" + path.name.encode()


def rerank_exact(queries: np.ndarray, ids: np.ndarray, source: VectorSource) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each query's shortlist ``ids`` with the exact vectors from ``source``; return (scores, ids)
    sorted best first (unknown ids and empty slots last, id -1)."""
    flat = ids.ravel()
    valid = flat >= 0
    unique = np.unique(flat[valid])
    vectors = np.asarray(source(unique), dtype=np.float32).reshape(len(unique), -1) if len(unique) else None
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    if vectors is not None:
        rows = np.searchsorted(unique, np.where(valid, flat, unique[0])).reshape(ids.shape)
        for q in range(len(queries)):
            exact = vectors[rows[q]] @ queries[q]
            exact[~np.isfinite(exact)] = -np.inf  # vector unknown to the source (erased meanwhile)
            scores[q] = np.where(ids[q] >= 0, exact, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(scores), np.take_along_axis(ids, order, axis=1), -1)
    return scores, ids


#: Search filter of HNSW indexes with tombstones: every id but -1.
_NOT_TOMBSTONE = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.array([-1], dtype=np.int64)))


def _search_threads(
    index: faiss.Index, queries: np.ndarray, k: int, params: faiss.SearchParameters | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Search with one OpenMP thread for a few probes (the setting is per calling thread), all threads for batches."""
    if len(queries) >= SINGLE_THREAD_BELOW:
        return index.search(queries, k, params=params)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, k, params=params)
    finally:
        faiss.omp_set_num_threads(threads)


def _code_size(index: faiss.Index, dim: int) -> int:
    code_size = getattr(faiss.downcast_index(index), "code_size", 0)
    return int(code_size) if code_size else 4 * dim


def _faiss_message(exc: BaseException) -> str:
    """Return the reason of a FAISS error without its C++ location ("Error in f() at file.cpp:12: reason")."""
    text = " ".join(str(exc).split())
    match = re.search(r"at \S+:\d+: (.*)", text)
    return match.group(1) if match else text
