"""Keeping the vector index in line with the database, which is the source of truth.

The index is checked against the database whenever it is opened and whenever another process
changed the gallery (``gallery_version``): faces missing from the index are added, faces no longer
in the database are removed, and a missing, corrupt or damaged index file is rebuilt from the
database. Each repair is logged. A FAISS index that the gallery outgrew is rebuilt in the
background while the current one keeps answering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from facetrace.config import Settings
from facetrace.crypto import DecryptionError
from facetrace.errors import ConfigError, FacetraceError, disk_full_error
from facetrace.faults import fault_point
from facetrace.gallery.analysis import FaceModel
from facetrace.gallery.scoring import CohortScorer, PersonHit, rank_persons
from facetrace.index.backends import (
    IndexPlan,
    check_plan,
    configured_factory,
    faiss_index_path,
    new_faiss_index,
    open_vector_index,
    plan_for,
    rebuild_plan_for,
)
from facetrace.index.base import VectorIndex
from facetrace.index.checks import templates_intact
from facetrace.store.db import Database
from facetrace.store.models import Face

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, int], None]  # done, total, errors
MILVUS_SCHEMES = ("milvus://", "milvus+http://", "milvus+https://", "milvus-lite://")


class IndexKeeper:
    """The vector index of the gallery's model, opened on first use and kept in line with the database.

    Every method is thread-safe: one lock guards the index (FAISS must not search while another
    thread adds to the same index) and the map from face ids to person ids.
    """

    def __init__(self, settings: Settings, db: Database, model: FaceModel) -> None:
        self.settings = settings
        self.db = db
        self.model = model
        self._index: VectorIndex | None = None
        self._enrolling = 0  # enrollments of this process between their commit and their index add
        self._rebuild_thread: threading.Thread | None = None
        self._rebuild_failed_at = -1e9
        self._person_of: dict[int, int] = {}
        self._version = -1
        self._lock = threading.RLock()

    @property
    def index_path(self) -> Path:
        """The FAISS index file of the current model (not used when ``vector_url`` points to Milvus)."""
        return faiss_index_path(self.settings, self.model.model_id)

    # -- opening and syncing ----------------------------------------------------------------
    def index(self) -> VectorIndex:
        """Return the index, opened and brought in line with the database if needed.

        Raises:
            ConfigError: the configured vector database cannot be opened.
            DecryptionError: a template cannot be decrypted (a key is missing or wrong).
        """
        with self._lock:
            if self._index is not None and self._enrolling:
                # An enrollment of this process is between committing a template and adding it here: the
                # database looks ahead, and syncing now would re-read every template row and rewrite the
                # index file for the one template the enrollment adds itself (under a bulk import, once per
                # search, with the lock held; measured with bench/api_load.py). The next search catches up.
                return self._index
            version = self.db.gallery_version()
            if self._index is None or version != self._version:
                self._index = self._open_index() if self._index is not None else self._verified(self._open_index())
                try:
                    self._sync_index(self._index)
                except DecryptionError:
                    # A key is missing or wrong: drop the half-filled index, so that closing the gallery
                    # does not save it over the index file.
                    self._index = None
                    raise
                self._version = version
            self._maybe_grow_index(self._index)  # cheap; enrollment and erasure change the size too
            return self._index

    def loaded_index(self) -> VectorIndex | None:
        """Return the index when it is loaded in memory, else None (never loads it)."""
        return self._index

    def index_consistency(self, *, lock_timeout: float = 0.5) -> tuple[bool, str]:
        """Return (ok, state) of the loaded index against the database, cheaply: one grouped count.

        The index must hold exactly the database's templates when both are at the same gallery
        version; when the database is ahead (an enrollment committed, its template about to be
        added, or another process enrolled) the index catches up with the next search, so that is
        no failure. Never loads or syncs the index itself.
        """
        for attempt in range(2):
            if not self._lock.acquire(timeout=lock_timeout):
                return True, "busy: the index is being brought in line with the database"
            try:
                index = self._index
                if index is None:
                    return False, "loading: the index is not in memory yet"
                held, version = len(index), self._version
                stored = self.face_count()
                current = self.db.gallery_version()
            finally:
                self._lock.release()
            if current != version:
                return True, "catching up: the database changed since the index was last brought in line"
            if held == stored:
                return True, "loaded, in line with the database"
            if attempt == 0:
                time.sleep(0.2)  # an enrollment in another thread may be adding its template right now
        log.error("readiness: the index holds %d templates, the database %d at the same version", held, stored)
        return False, "damaged: the index and the database disagree on the templates they hold"

    def _open_index(self) -> VectorIndex:
        if self._index is not None:
            return self._index
        index = open_vector_index(
            self.settings, self.model.model_id, expected_count=self.face_count(), dim=self.model.dim
        )
        index.set_vector_source(self.vectors)  # exact re-ranking of compressed codes
        return index

    def _verified(self, index: VectorIndex) -> VectorIndex:
        """Return ``index``, emptied (to be filled from the database by the sync) when a sample of its exact
        templates differs from the database's. ``facetrace doctor`` checks many more."""
        if index.plan is None or not index.plan.exact_codes or not len(index):
            return index
        held = index.ids()
        sample = np.sort(np.random.default_rng().choice(held, size=min(16, len(held)), replace=False))
        stored = self.vectors(sample)
        known = ~np.isnan(stored[:, 0])  # ids erased from the database are the sync's business
        try:
            intact = templates_intact(index, sample[known], stored[known])
        except KeyError:
            return index
        if np.all(intact):
            return index
        log.warning("index %s holds damaged templates: rebuilding it from the database", self.index_path.name)
        index.clear()
        return index

    def face_count(self) -> int:
        """Return the number of gallery templates of the current model in the database."""
        with self.db.sessions() as session:
            count = session.execute(
                select(func.count(Face.id)).where(Face.model_id == self.model.model_id, Face.person_id.is_not(None))
            ).scalar()
        return int(count or 0)

    def _face_rows(self) -> list[tuple[int, int]]:
        with self.db.sessions() as session:
            rows = session.execute(
                select(Face.id, Face.person_id).where(Face.model_id == self.model.model_id, Face.person_id.is_not(None))
            ).all()
        return [(int(a), int(b or 0)) for a, b in rows]

    def _sync_index(self, index: VectorIndex) -> None:
        # The index is read before the database: a face that another worker commits and indexes in
        # between is then at worst "missing" (added again: harmless), never "extra" (removed: lost).
        held = index.ids()
        rows = self._face_rows()
        self._person_of = dict(rows)
        db_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        missing = np.setdiff1d(db_ids, held)
        extra = np.setdiff1d(held, db_ids)
        if len(extra):
            index.remove(extra)
        if len(missing):
            self._fill_index(index, missing)
        if len(missing) or len(extra):
            level = logging.WARNING if len(held) or len(extra) else logging.INFO
            log.log(
                level, "index brought in line with the database: %d face(s) added, %d removed", len(missing), len(extra)
            )
            self._save_or_warn(index)
        elif not index.persisted:
            self._save_or_warn(index)

    def _fill_index(self, index: VectorIndex, face_ids: np.ndarray, progress: ProgressFn | None = None) -> None:
        """Add the database templates ``face_ids`` to ``index``, training it first on a sample if it needs it."""
        if index.needs_training:
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(face_ids, size=min(len(face_ids), index.training_size()), replace=False))
            vectors = self.vectors(sample)
            index.train(vectors[~np.isnan(vectors[:, 0])])
        done = 0
        for start in range(0, len(face_ids), 20000):
            chunk = face_ids[start : start + 20000]
            vectors = self.vectors(chunk)
            known = ~np.isnan(vectors[:, 0])  # erased since the ids were read
            index.add(chunk[known], vectors[known])
            done += len(chunk)
            if progress:
                progress(done, len(face_ids), 0)
            if len(face_ids) > 100_000:
                log.info("indexed %d/%d faces", done, len(face_ids))

    def vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """Return the stored templates of ``face_ids`` in order; rows of NaN for ids not in the database."""
        out = np.full((len(face_ids), self.model.dim), np.nan, dtype=np.float32)
        if not len(face_ids):
            return out
        with self.db.sessions() as session:
            rows = dict(session.execute(select(Face.id, Face.embedding).where(Face.id.in_(face_ids.tolist()))).all())
        for n, face_id in enumerate(face_ids.tolist()):
            if (blob := rows.get(int(face_id))) is not None:
                out[n] = np.frombuffer(blob, dtype=np.float32)
        return out

    # -- growing and rebuilding -------------------------------------------------------------
    def _maybe_grow_index(self, index: VectorIndex) -> None:
        """Start a background rebuild when the gallery outgrew its FAISS index type (or the configured
        factory changed); the current index keeps answering until the new one replaces it."""
        current = index.plan
        if current is None or not self.settings.index_auto_rebuild:
            return  # a vector database maintains its own index
        if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
            return
        if time.monotonic() - self._rebuild_failed_at < 600:
            return  # the last try failed: not again on every search
        plan = rebuild_plan_for(self.settings, index, len(index))
        if plan is None:
            return
        if plan.configured != current.configured:
            reason = f"FACETRACE_INDEX_FACTORY is {plan.configured}"
        elif plan.factory == current.factory and index.tombstone_share:
            reason = f"{index.tombstone_share:.0%} of its graph nodes are erased templates"
        else:
            reason = f"it no longer suits {len(index)} faces"
        log.warning("index %s: %s; rebuilding it as %s in the background", current.factory, reason, plan.factory)
        self._rebuild_thread = threading.Thread(
            target=self._rebuild_in_background, args=(plan,), name="facetrace-index-rebuild", daemon=True
        )
        self._rebuild_thread.start()

    def _rebuild_in_background(self, plan: IndexPlan) -> None:
        try:
            self._build_and_swap(plan)
        except FacetraceError as exc:  # e.g. a bad configuration: one line, no traceback
            self._rebuild_failed_at = time.monotonic()
            log.error("background index rebuild failed: %s", exc.message)
        except Exception:  # the old index still answers; tried again in 10 minutes
            self._rebuild_failed_at = time.monotonic()
            log.exception("background index rebuild failed")

    def wait_for_index_rebuild(self, timeout: float | None = None) -> bool:
        """Wait for a background index rebuild to finish; return True when none is running any more."""
        thread = self._rebuild_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _build_and_swap(self, plan: IndexPlan, progress: ProgressFn | None = None) -> int:
        """Build a FAISS index of ``plan`` from the database while the current one keeps answering, then
        replace it (and its file, atomically); return how many faces it holds."""
        started = time.perf_counter()
        ids = np.fromiter((r[0] for r in self._face_rows()), dtype=np.int64)
        new = new_faiss_index(self.settings, plan, self.model.dim, path=self.index_path)
        new.set_vector_source(self.vectors)
        if len(ids):
            self._fill_index(new, ids, progress)
        fault_point("rebuild.before_save")
        with self._lock:
            version = self.db.gallery_version()
            self._sync_index(new)  # changes made while it was being built
            new.save()
            old, self._index, self._version = self._index, new, version
        if old is not None and old is not new:
            old.close()
        log.warning("index rebuilt as %s: %d faces in %.1fs", plan.factory, len(new), time.perf_counter() - started)
        return len(new)

    def rebuild_index(self, *, factory: str | None = None, progress: ProgressFn | None = None) -> int:
        """Rebuild the index from the database; return how many faces it holds.

        FAISS: a new index (``factory``, else the configured or automatic choice for the gallery's size)
        is built while the current one keeps answering, then replaces it. ``factory="auto"`` returns to
        the automatic choice. Milvus: this model's templates are deleted and inserted again.

        Raises:
            ConfigError: the vector database cannot be opened, or ``factory`` is not a valid FAISS factory.
        """
        if self.settings.vector_url:
            with self._lock:
                index = self._open_index()
                index.clear()
                self._index, self._version = index, -1
                return len(self.index())
        self.wait_for_index_rebuild()
        settings = self.settings
        if factory is not None:
            settings = settings.model_copy(update={"index_factory": factory})
        plan = plan_for(settings, self.face_count(), self.model.dim)
        if factory is not None and configured_factory(settings) is None:
            plan.configured = None
        check_plan(plan, self.model.dim)  # before reading the database
        return self._build_and_swap(plan, progress)

    def migrate_index(self, vector_url: str, *, progress: ProgressFn | None = None, check: int = 100) -> dict[str, Any]:
        """Copy this model's templates into the vector database at ``vector_url`` (Milvus); return what was
        copied and a check against the current index.

        The exact float32 templates come from the database (a compressed FAISS index holds only
        approximations); the face ids are those of the current index, brought in line with the database
        first. Idempotent: templates already at the target are kept, ones no longer in the gallery are
        removed. The check searches ``check`` stored templates in both indexes and compares the best hits.

        Raises:
            ConfigError: ``vector_url`` is not a Milvus URL, is the current backend, or cannot be opened.
        """
        if not vector_url.startswith(MILVUS_SCHEMES):
            raise ConfigError("migrate to a milvus://host:port/collection or milvus-lite:///path/file.db URL")
        if vector_url == self.settings.vector_url:
            raise ConfigError("that vector URL is the current index already")
        started = time.perf_counter()
        with self._lock:
            source = self.index()
            source_ids = np.unique(source.ids())
        target = open_vector_index(self.settings.model_copy(update={"vector_url": vector_url}), self.model.model_id)
        try:
            held = np.unique(target.ids())
            missing = np.setdiff1d(source_ids, held)
            extra = np.setdiff1d(held, source_ids)
            if len(extra):
                target.remove(extra)
            if len(missing):
                self._fill_index(target, missing, progress)
            target.save()
            sample = np.random.default_rng(0).choice(source_ids, size=min(check, len(source_ids)), replace=False)
            agree = 0
            if len(sample):
                vectors = self.vectors(np.sort(sample))
                vectors = vectors[~np.isnan(vectors[:, 0])]
                with self._lock:
                    _, source_hits = source.search(vectors, 1)
                _, target_hits = target.search(vectors, 1)
                agree = int((source_hits[:, 0] == target_hits[:, 0]).sum())
            result = {
                "target": target.describe(),
                "faces": int(len(source_ids)),
                "copied": int(len(missing)),
                "already_there": int(len(source_ids) - len(missing)),
                "removed_from_target": int(len(extra)),
                "target_count": len(target),
                "check": {"searched": int(len(sample)), "same_best_hit": agree},
                "seconds": round(time.perf_counter() - started, 1),
            }
        finally:
            target.close()
        return result

    # -- searching --------------------------------------------------------------------------
    def person_count(self) -> int:
        """Return the number of persons with at least one template in the index (opened and synced first)."""
        with self._lock:  # an enrollment in another thread may be adding to _person_of
            self.index()
            return len(set(self._person_of.values()))

    def hits(self, embeddings: list[np.ndarray], top_k: int, scorer: CohortScorer) -> list[list[PersonHit]]:
        """Return, per probe template, up to ``top_k`` ranked person hits from the index, best first.

        Raises:
            ConfigError: the configured vector database cannot be opened.
        """
        # Under the lock: FAISS must not search while another thread adds to the same index.
        with self._lock:
            index = self.index()
            if not embeddings or not len(index):
                return [[] for _ in embeddings]
            k = min(len(index), max(4 * top_k, top_k + 20))
            scores, ids = index.search(np.vstack(embeddings), k)
            found = np.unique(ids[ids >= 0])
            vectors_of = dict(zip(found.tolist(), self.vectors(found), strict=True))
            return [
                rank_persons(embeddings[n], scores[n], ids[n], self._person_of, vectors_of, scorer, top_k)
                for n in range(len(embeddings))
            ]

    # -- changes by enrollment and erasure --------------------------------------------------
    @contextmanager
    def enrolling(self) -> Iterator[None]:
        """Mark an enrollment of this process as under way: until it ends, searches use the index as it is
        rather than bringing it in line with a database that is ahead by the template being added."""
        with self._lock:
            self._enrolling += 1
        try:
            yield
        finally:
            with self._lock:
                self._enrolling -= 1

    def add_enrolled(self, face_id: int, person_id: int, embedding: np.ndarray) -> None:
        """Add a template just committed to the database to the loaded index (not saved: see :meth:`save`).
        Nothing to do when no index is loaded, or when a search already synced it in from the database."""
        with self._lock:
            if self._index is not None and face_id not in self._person_of:
                self._index.add(np.array([face_id]), embedding[None, :])
                self._person_of[face_id] = person_id
                self._version = self.db.gallery_version()

    def forget_faces(self, face_ids: list[int]) -> None:
        """Take erased templates out of the index (already deleted from the database) and save it.

        Idempotent: ids the index does not hold are ignored. An index not opened yet is opened, which
        brings it in line with the database and so drops them too.
        """
        with self._lock:
            if self._index is None:
                self.index()
                return
            ids = np.array(sorted(set(face_ids)), dtype=np.int64)
            if len(ids):
                self._index.remove(ids)
            for fid in ids.tolist():
                self._person_of.pop(fid, None)
            self._index.save()
            self._version = self.db.gallery_version()

    def save(self, *, disk_known_full: bool = False) -> None:
        """Save the loaded index, if any; on a full disk keep the old file and go on (see :meth:`_save_or_warn`).
        ``disk_known_full``: the caller already reports the full disk (one line): the failed save is only logged
        at INFO then.

        Raises:
            Exception: the save failed for another reason than a full disk.
        """
        with self._lock:
            self._save_or_warn(self._index, logging.INFO if disk_known_full else logging.WARNING)

    @staticmethod
    def _save_or_warn(index: VectorIndex | None, level: int = logging.WARNING) -> None:
        """Save ``index``; on a full disk keep the old file and go on with the index in memory (the database
        is the truth: the next open adds the missing templates from it). A full disk stops writes (and
        must not hide an enrollment's own outcome), not searches."""
        if index is None:
            return
        try:
            index.save()
        except Exception as exc:  # FAISS reports a failed write as a RuntimeError
            if disk_full_error(exc) is None:
                raise
            log.log(level, "index not saved (%s): it is brought in line with the database when next opened", exc)

    def close(self) -> None:
        """Wait for a background rebuild, save the index and release it."""
        if not self.wait_for_index_rebuild(0):
            log.warning("waiting for the index rebuild to finish")
            self.wait_for_index_rebuild()
        self.save()
        if self._index is not None:
            self._index.close()
