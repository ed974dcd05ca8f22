"""Milvus vector backend (through ``pymilvus``): a Milvus server or cluster, or an embedded milvus-lite file.

Selected by ``FACETRACE_VECTOR_URL``:

* ``milvus://[user:password@]host[:19530]/collection`` (``milvus+https://`` for TLS); query
  parameters: ``db`` (database name), ``token`` (API key instead of user:password), ``index``
  (``HNSW`` default, ``IVF_FLAT``, ``FLAT``, ``AUTOINDEX``...), ``M``, ``efConstruction``, ``ef``,
  ``nlist``, ``nprobe``, ``metric`` (``IP`` default, or ``COSINE``), ``timeout`` (seconds a search or
  read may take, default 10) and ``write_timeout`` (inserts, deletes, flushes; default 120): a hung
  server gives a 503 after that long instead of holding the request;
* ``milvus-lite:///absolute/path/file.db`` or ``milvus-lite://relative/file.db`` (relative to the
  data home), with ``?collection=name``; milvus-lite supports ``FLAT`` (the default there).

What is stored: one entity per template, ``id`` (the face id of the facetrace database, primary key),
``vector`` (the 128-d template) and ``model_id``, in one partition per embedding model (templates of
different models are never compared). Everything else (persons, images, provenance) stays in the
database, which remains the source of truth: the gallery checks the collection against it and adds or
removes what differs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from facetrace.errors import ConfigError, FacetraceError
from facetrace.index.base import VectorSource

log = logging.getLogger(__name__)
DEFAULT_COLLECTION = "facetrace_faces"
BATCH = 5000  # entities per insert/upsert call (well under the 64 MB gRPC message limit)
MAX_TOPK = 16384  # Milvus's largest search limit
# Searches read this client's own writes ("Session"): "Strong" waits for the server's next time tick, 200 ms
# per search on a server. Another process's enrollment shows within about that long; erasures never need it,
# as the gallery reads every candidate's person from the database. Counts and id lists stay "Strong".
SEARCH_CONSISTENCY = "Session"
READ_TIMEOUT_S = 10.0  # a search, count or read of a healthy server takes milliseconds
WRITE_TIMEOUT_S = 120.0  # a flush of a large insert may take a minute
_T = TypeVar("_T")


class VectorStoreError(FacetraceError):
    """The vector database failed or cannot be reached."""

    code = "vector_store"
    status = 503


@dataclass
class MilvusTarget:
    """Where and how to reach one Milvus collection, parsed from a ``vector_url``."""

    uri: str
    collection: str
    lite: bool
    token: str = ""
    db_name: str = ""
    metric: str = "IP"
    index_type: str = "FLAT"
    index_params: dict[str, Any] = field(default_factory=dict)
    search_params: dict[str, Any] = field(default_factory=dict)
    safe_url: str = ""
    timeout: float = READ_TIMEOUT_S
    write_timeout: float = WRITE_TIMEOUT_S


def parse_vector_url(url: str, home: Path | None = None) -> MilvusTarget:
    """Return the target of a ``milvus://``, ``milvus+https://`` or ``milvus-lite://`` URL.

    Raises:
        ConfigError: unknown scheme, bad collection name or bad parameter.
    """
    scheme, _, rest = url.partition("://")
    if not rest:
        raise ConfigError(f"vector URL {url!r}: expected milvus://host:port/collection or milvus-lite:///path.db")
    location, _, query_text = rest.partition("?")
    query = {key: values[-1] for key, values in parse_qs(query_text).items()}
    metric = query.pop("metric", "IP").upper()
    if metric not in ("IP", "COSINE"):
        raise ConfigError(f"vector URL: metric must be IP or COSINE, not {metric!r}")
    if scheme == "milvus-lite":
        path = Path(unquote(location))
        if not path.is_absolute():
            path = (home or Path.cwd()) / path
        if path.suffix != ".db":
            raise ConfigError(f"vector URL: a milvus-lite file name must end in .db, not {path.name!r}")
        collection = query.pop("collection", DEFAULT_COLLECTION)
        target = MilvusTarget(
            uri=str(path), collection=collection, lite=True, metric=metric, safe_url=f"milvus-lite://{path}"
        )
    elif scheme in ("milvus", "milvus+http", "milvus+https"):
        parts = urlsplit(f"http://{location}")
        if not parts.hostname:
            raise ConfigError(f"vector URL {url!r}: no host")
        secure = scheme == "milvus+https" or query.pop("secure", "").lower() in ("1", "true", "yes")
        port = parts.port or 19530
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        token = query.pop("token", "") or (f"{user}:{password}" if user else "")
        collection = parts.path.strip("/") or DEFAULT_COLLECTION
        target = MilvusTarget(
            uri=f"{'https' if secure else 'http'}://{parts.hostname}:{port}",
            collection=collection,
            lite=False,
            token=token,
            db_name=query.pop("db", ""),
            metric=metric,
            safe_url=f"{scheme}://{parts.hostname}:{port}/{collection}",
        )
    else:
        raise ConfigError(f"vector URL: unknown scheme {scheme!r} (use milvus://, milvus+https:// or milvus-lite://)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", target.collection):
        raise ConfigError(f"vector URL: bad collection name {target.collection!r} (letters, digits and _)")
    _index_settings(target, query)
    return target


def _index_settings(target: MilvusTarget, query: dict[str, str]) -> None:
    index_type = query.pop("index", "FLAT" if target.lite else "HNSW").upper()
    try:
        target.timeout = float(query.pop("timeout", READ_TIMEOUT_S))
        target.write_timeout = float(query.pop("write_timeout", WRITE_TIMEOUT_S))
        if not (target.timeout > 0 and target.write_timeout > 0):
            raise ValueError("timeouts must be positive")
        if index_type == "HNSW":
            target.index_params = {
                "M": int(query.pop("M", 16)),
                "efConstruction": int(query.pop("efConstruction", 200)),
            }
            target.search_params = {"ef": int(query.pop("ef", 256))}
        elif index_type.startswith("IVF"):
            target.index_params = {"nlist": int(query.pop("nlist", 4096))}
            target.search_params = {"nprobe": int(query.pop("nprobe", 128))}
    except ValueError as exc:
        raise ConfigError(f"vector URL: bad parameter ({exc})") from None
    if query:
        raise ConfigError(f"vector URL: unknown parameter(s) {', '.join(sorted(query))}")
    target.index_type = index_type


def partition_name(model_id: str) -> str:
    """Return the partition holding the templates of ``model_id`` (Milvus names: letters, digits, _)."""
    return "m_" + re.sub(r"[^A-Za-z0-9_]", "_", model_id)[:200]


class _LiteNoise(logging.Filter):
    """Drop milvus-lite's harmless complaints: it lacks the AllocTimestamp call that pymilvus tries first
    (the embedded gRPC server logs a traceback, pymilvus a warning) before using a client-side timestamp."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Method not implemented" not in message and "mvccTs" not in message


_LITE_NOISE = _LiteNoise()


def _quiet_milvus_lite() -> None:
    for name in ("grpc._server", "pymilvus", "pymilvus.client.iterator.query_iterator"):
        logger = logging.getLogger(name)
        if _LITE_NOISE not in logger.filters:
            logger.addFilter(_LITE_NOISE)


@contextmanager
def _errors(what: str, where: str) -> Iterator[None]:
    import grpc
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        message = getattr(exc, "message", "") or str(exc)
        raise VectorStoreError(f"Milvus at {where}: {what} failed: {message}") from None
    except grpc.RpcError as exc:  # pymilvus passes some codes through unwrapped, a missed deadline among them
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = "no answer in time (the server is hung or overloaded)"
        else:
            message = f"{code.name if code else 'gRPC error'}: {exc.details() if isinstance(exc, grpc.Call) else exc}"
        raise VectorStoreError(f"Milvus at {where}: {what} failed: {message}") from None


class MilvusIndex:
    """The templates of one embedding model in one Milvus collection (one partition per model).

    Same behaviour as :class:`~facetrace.index.faiss_index.FaissIndex`: inner-product search over
    L2-normalised templates, add (idempotent: an upsert), remove by id, list ids, make durable.
    Milvus plans, builds and compacts its own index and stores exact vectors.
    """

    kind = "milvus"
    plan = None  # Milvus maintains its own index: never rebuilt by facetrace in the background
    tombstone_share = 0.0
    persisted = True  # every change is in the vector database
    # Milvus logs every insert and delete before answering: a flush (which seals segments, 3 s on a server,
    # and many small sealed segments slow it down) is for handovers only.
    writes_durable = True

    def __init__(self, target: MilvusTarget, *, model_id: str, dim: int = 128) -> None:
        """Connect, creating the collection and partition if needed.

        Raises:
            ConfigError: cannot connect, or the collection exists with another dimension.
        """
        from pymilvus import MilvusClient

        self.target = target
        self.dim = dim
        self.model_id = model_id
        self.partition = partition_name(model_id)
        # Every query also filters on the model: milvus-lite ignores partitions when counting.
        self._mine = f"model_id == {json.dumps(model_id)}"
        self._count: int | None = None
        if target.lite:
            Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
            # The embedded server's gRPC core logs harmless keepalive notices ("too_many_pings") on stderr.
            os.environ.setdefault("GRPC_VERBOSITY", "NONE")
            _quiet_milvus_lite()
        try:
            with _errors("connect", target.safe_url):
                self.client = MilvusClient(uri=target.uri, token=target.token, db_name=target.db_name, timeout=30)
            self._ensure_collection()
        except VectorStoreError as exc:
            raise ConfigError(exc.message) from None
        except Exception as exc:  # pymilvus raises other errors for a bad URI or an unusable lite file
            raise ConfigError(f"cannot open Milvus at {target.safe_url}: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_url(cls, url: str, *, model_id: str, dim: int = 128, home: Path | None = None) -> MilvusIndex:
        """Open the collection named by ``url`` (see :func:`parse_vector_url`). Raises ConfigError."""
        return cls(parse_vector_url(url, home), model_id=model_id, dim=dim)

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            with _errors(what, self.target.safe_url):
                return fn()
        except VectorStoreError:
            # The server failed (down, restarting): forget the cached count, so that the next len() (the
            # readiness check's) asks the server and reports the outage rather than a count from before it.
            self._count = None
            raise

    @contextmanager
    def _changing(self, what: str) -> Iterator[None]:
        """Run a change (upsert, delete) with Milvus errors as VectorStoreError; the cached count is forgotten
        afterwards, whether the change finished, failed half-way, or raced a count taken meanwhile."""
        try:
            with _errors(what, self.target.safe_url):
                yield
        finally:
            self._count = None

    def _ensure_collection(self) -> None:
        from pymilvus import DataType

        name = self.target.collection
        if self.client.has_collection(name):
            info = self.client.describe_collection(name)
            dims = [f.get("params", {}).get("dim") for f in info["fields"] if f["name"] == "vector"]
            if not dims or int(dims[0]) != self.dim:
                raise ConfigError(
                    f"Milvus collection {name!r} holds vectors of dimension {dims[0] if dims else '?'}, "
                    f"not {self.dim}: use another collection"
                )
        else:
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            schema.add_field("model_id", DataType.VARCHAR, max_length=100)
            index_params = self.client.prepare_index_params()
            index_params.add_index(
                field_name="vector",
                index_type=self.target.index_type,
                metric_type=self.target.metric,
                params=self.target.index_params,
            )
            self.client.create_collection(name, schema=schema, index_params=index_params, consistency_level="Strong")
            log.info("created Milvus collection %s (%s, %s)", name, self.target.index_type, self.target.metric)
        if not self.client.has_partition(name, self.partition):
            self.client.create_partition(name, self.partition)
        self.client.load_collection(name)  # idempotent; loads a new partition too (milvus-lite cannot load one alone)

    # -- content ------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._count is None:
            rows = self._call(
                "count",
                lambda: self.client.query(
                    self.target.collection,
                    filter=self._mine,
                    output_fields=["count(*)"],
                    partition_names=[self.partition],
                    consistency_level="Strong",
                    timeout=self.target.timeout,
                ),
            )
            self._count = int(rows[0]["count(*)"])
        return self._count

    @property
    def needs_training(self) -> bool:
        return False

    def training_size(self) -> int:
        """Return 0: Milvus builds its index itself."""
        return 0

    def train(self, vectors: np.ndarray) -> None:
        """Nothing to train (Milvus indexes the segments it seals)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the templates ``ids`` (an upsert: adding the same id twice keeps one)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.asarray(ids, dtype=np.int64)
        with self._changing("upsert"):
            for start in range(0, len(ids), BATCH):
                rows = [
                    {"id": int(i), "vector": v, "model_id": self.model_id}
                    for i, v in zip(ids[start : start + BATCH].tolist(), vectors[start : start + BATCH], strict=True)
                ]
                self.client.upsert(
                    self.target.collection, rows, partition_name=self.partition, timeout=self.target.write_timeout
                )

    def remove(self, ids: np.ndarray) -> int:
        """Delete the templates ``ids``; return how many were present.

        Milvus marks them deleted at once (no search returns them); compaction drops them from its
        storage (automatic on a server; see docs/scale.md).
        """
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        present = 0
        with self._changing("delete"):
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000].tolist()
                found = self.client.query(
                    self.target.collection,
                    filter=f"{self._mine} and id in {chunk}",
                    output_fields=["id"],
                    partition_names=[self.partition],
                    consistency_level="Strong",
                    timeout=self.target.timeout,
                )
                present += len(found)
                self.client.delete(
                    self.target.collection, ids=chunk, partition_name=self.partition, timeout=self.target.write_timeout
                )
        return present

    def set_vector_source(self, source: VectorSource) -> None:
        """Nothing to do: Milvus returns exact scores."""

    def clear(self) -> None:
        """Delete every template of this model (before a rebuild from the database)."""
        with self._changing("delete"):
            self.client.delete(
                self.target.collection,
                filter=self._mine,
                partition_name=self.partition,
                timeout=self.target.write_timeout,
            )

    def search(self, queries: np.ndarray, k: int, *, filter: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n_queries, k), best first; empty slots have id -1 and score -inf.

        ``filter``: an extra Milvus boolean expression on the stored fields (``id``, ``model_id``).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, MAX_TOPK))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(queries) == 0:
            return scores, ids
        inner: dict[str, Any] = dict(self.target.search_params)
        if "ef" in inner:
            inner["ef"] = max(int(inner["ef"]), k)  # HNSW returns at most ef candidates
        params = {"metric_type": self.target.metric, "params": inner}
        results = self._call(
            "search",
            lambda: self.client.search(
                self.target.collection,
                data=list(queries),
                limit=k,
                filter=f"{self._mine} and ({filter})" if filter else self._mine,
                output_fields=[],
                search_params=params,
                partition_names=[self.partition],
                consistency_level=SEARCH_CONSISTENCY,
                timeout=self.target.timeout,
            ),
        )
        for row, hits in enumerate(results):
            for col, hit in enumerate(hits[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def ids(self) -> np.ndarray:
        """Return every id of this model's partition, as int64."""
        found: list[int] = []
        with _errors("list ids", self.target.safe_url):
            iterator = self.client.query_iterator(
                self.target.collection,
                batch_size=10000,
                filter=self._mine,
                output_fields=["id"],
                partition_names=[self.partition],
                timeout=self.target.timeout,
            )
            try:
                while batch := iterator.next():
                    found.extend(int(row["id"]) for row in batch)
            finally:
                iterator.close()
        out = np.asarray(found, dtype=np.int64)
        self._count = len(out)
        return out

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Return the stored vectors of ``ids``, in order.

        Raises:
            KeyError: an id is not stored.
        """
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        position = {int(i): n for n, i in enumerate(ids)}
        for start in range(0, len(ids), 1000):
            chunk = [int(i) for i in ids[start : start + 1000]]
            with _errors("get", self.target.safe_url):
                rows = self.client.get(
                    self.target.collection,
                    ids=chunk,
                    output_fields=["vector"],
                    partition_names=[self.partition],
                    timeout=self.target.timeout,
                )
            for row in rows:
                out[position[int(row["id"])]] = np.asarray(row["vector"], dtype=np.float32)
            if len(rows) != len(set(chunk)):
                raise KeyError("id not stored in Milvus")
        return out

    def save(self) -> None:
        """Flush: make every insert and delete durable."""
        self._call("flush", lambda: self.client.flush(self.target.collection, timeout=self.target.write_timeout))

    def describe(self) -> dict[str, object]:
        """Return the backend, where it is, the partition, the size and the index, JSON-ready."""
        return {
            "backend": "milvus-lite" if self.target.lite else "milvus",
            "url": self.target.safe_url,
            "collection": self.target.collection,
            "partition": self.partition,
            "count": len(self),
            "dim": self.dim,
            "index_type": self.target.index_type,
            "metric": self.target.metric,
            "exact_search": self.target.index_type == "FLAT",
            "exact_scores": True,
        }

    def close(self) -> None:
        """Close the connection."""
        try:
            self.client.close()
        except Exception:  # closing is best effort; nothing is lost
            log.debug("closing Milvus client failed", exc_info=True)
