"""The one factory of vector indexes: open the backend a deployment is configured for (a FAISS file in the
data home by default, Milvus when ``FACETRACE_VECTOR_URL`` is set), build new FAISS indexes from a plan,
and load or reseal FAISS files for the tools that read them directly (doctor, key rotation).

Nothing else constructs an index class, so callers work with :class:`~facetrace.index.base.VectorIndex`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from facetrace.config import Settings
from facetrace.crypto import Keyring
from facetrace.errors import ConfigError
from facetrace.index.base import VectorIndex
from facetrace.index.faiss_index import (
    COMPACT_SHARE,
    FaissIndex,
    IndexCorrupt,
    IndexPlan,
    choose_plan,
    memory_budget_bytes,
    upgrade_plan,
)

log = logging.getLogger(__name__)

__all__ = [
    "IndexCorrupt",
    "IndexPlan",
    "check_plan",
    "configured_factory",
    "faiss_index_path",
    "load_faiss_file",
    "new_faiss_index",
    "open_vector_index",
    "plan_for",
    "rebuild_plan_for",
    "reseal_faiss_file",
]


def faiss_index_path(settings: Settings, model_id: str) -> Path:
    """Return the FAISS index file of ``model_id`` in the data home."""
    return settings.index_dir / f"faces-{re.sub(r'[^A-Za-z0-9.+-]+', '_', model_id)}.faiss"


def configured_factory(settings: Settings) -> str | None:
    """Return the configured FAISS factory string, or None for the automatic choice by size."""
    factory = (settings.index_factory or "").strip()
    return None if not factory or factory.lower() == "auto" else factory


@lru_cache(maxsize=32)
def _check_factory(factory: str, dim: int) -> None:
    try:
        FaissIndex(dim, factory.replace("{nlist}", "1024"))
    except ValueError as exc:
        raise ConfigError(f"{exc} (FACETRACE_INDEX_FACTORY or --factory)") from None


def plan_for(settings: Settings, n: int, dim: int = 128) -> IndexPlan:
    """Return the FAISS index plan for ``n`` templates under ``settings`` (factory, memory, nprobe).

    Raises:
        ConfigError: the configured factory string is not a valid FAISS index factory.
    """
    if (factory := configured_factory(settings)) is not None:
        _check_factory(factory, dim)
    plan = choose_plan(
        n,
        dim,
        factory=configured_factory(settings),
        memory_budget=memory_budget_bytes(settings.index_memory_mb),
        nprobe=settings.index_nprobe,
        efsearch=settings.index_efsearch,
    )
    plan.configured = configured_factory(settings)
    return plan


def rebuild_plan_for(settings: Settings, index: VectorIndex, n: int) -> IndexPlan | None:
    """Return the plan to rebuild ``index`` into for ``n`` templates, or None when it should stay
    (always None for a backend that maintains its own index, such as Milvus).

    A rebuild is due when a configured factory (``FACETRACE_INDEX_FACTORY``) differs from the one the
    index was built from, or when the gallery outgrew an automatic index
    (:func:`facetrace.index.faiss_index.upgrade_plan`). An index built with an explicit
    ``facetrace index rebuild --factory`` is kept while no factory is configured.
    """
    current = index.plan
    if current is None:
        return None
    configured = configured_factory(settings)
    if configured is not None and configured != current.configured:
        return plan_for(settings, n, index.dim)
    if index.tombstone_share > COMPACT_SHARE:
        return replace(current, planned_for=n)  # same index, without the erased templates' nodes
    plan = upgrade_plan(current, n, index.dim, memory_budget=memory_budget_bytes(settings.index_memory_mb))
    if plan is not None:
        plan.configured = current.configured
        if settings.index_nprobe and plan.nlist:
            plan.nprobe = settings.index_nprobe
        if settings.index_efsearch and plan.hnsw_m:
            plan.efsearch = settings.index_efsearch
    return plan


def open_vector_index(settings: Settings, model_id: str, *, expected_count: int = 0, dim: int = 128) -> VectorIndex:
    """Open the templates of ``model_id``: Milvus when ``settings.vector_url`` is set, else the FAISS file.

    A missing or unreadable FAISS file gives a new, empty index planned for ``expected_count``
    templates (the caller fills it from the database). Raises ConfigError for a bad vector URL or an
    unreachable Milvus.
    """
    if settings.vector_url:
        # Imported only when configured: pymilvus is an optional, heavy dependency.
        from facetrace.index.milvus_index import MilvusIndex

        return MilvusIndex.from_url(settings.vector_url, model_id=model_id, dim=dim, home=settings.home)
    path = faiss_index_path(settings, model_id)
    try:
        index = FaissIndex.load(path, settings.keyring)
    except FileNotFoundError:
        # A new, empty gallery has no index yet: only a missing index over stored faces is news.
        level = logging.WARNING if expected_count else logging.DEBUG
        log.log(level, "index %s missing: rebuilding from the database", path.name)
    except IndexCorrupt as exc:
        log.warning("index corrupt (%s): rebuilding from the database", exc)
    else:
        index.set_nprobe(settings.index_nprobe)
        index.set_efsearch(settings.index_efsearch)
        return index
    return FaissIndex(dim, path=path, plan=plan_for(settings, expected_count, dim), keyring=settings.keyring)


def new_faiss_index(settings: Settings, plan: IndexPlan, dim: int, *, path: Path | None = None) -> VectorIndex:
    """Return a new, empty FAISS index of ``plan``, saved at ``path`` (sealed with the deployment's keys)
    when given, else kept in memory only.

    Raises:
        ValueError: the plan's factory string is not a valid FAISS index factory.
    """
    return FaissIndex(dim, path=path, plan=plan, keyring=settings.keyring if path is not None else None)


def check_plan(plan: IndexPlan, dim: int) -> None:
    """Check that an index of ``plan`` can be built, before any work is done for it.

    Raises:
        ConfigError: the plan's factory string is not a valid FAISS index factory.
    """
    try:
        FaissIndex(dim, plan=plan)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_faiss_file(path: Path, keyring: Keyring | None = None) -> FaissIndex:
    """Read the FAISS index file at ``path`` as it is, without repairing it (see :meth:`FaissIndex.load`).

    Raises:
        FileNotFoundError: no index file.
        IndexCorrupt: the file or its parameters cannot be read or authenticated.
    """
    return FaissIndex.load(path, keyring)


def reseal_faiss_file(path: Path, keyring: Keyring) -> None:
    """Write the FAISS index file at ``path`` again, sealed with ``keyring``'s current key.

    Raises:
        FileNotFoundError: no index file.
        IndexCorrupt: the file cannot be read with ``keyring``'s keys.
    """
    index = FaissIndex.load(path, keyring)
    index.keyring = keyring
    index.save()
