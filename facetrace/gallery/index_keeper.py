"""Keeping the vector index in line with the database, which is the source of truth.

When the index is opened it is checked against the database: faces missing from the index are
added, faces no longer in the database are removed, and a missing, corrupt or damaged index file is
rebuilt from the database. Each repair is logged. Afterwards, whenever another process changed the
gallery (``gallery_version``), the index *catches up*: the faces enrolled since (ids above the
highest one it holds, and a window below it for transactions that committed late) are added,
without reading every row again, so that a gallery of millions follows another process's import
at the cost of a few rows per change. Faces erased by another process stay in this process's index
until it is next opened (or rebuilt), but are never returned: every search reads its candidates'
person and template from the database, and a face erased there has no row. A FAISS index that the
gallery outgrew is rebuilt in the background while the current one keeps answering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, func, select

from facetrace.config import Settings
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
from facetrace.index.ids import id_differences, unique_ids
from facetrace.store.db import Database
from facetrace.store.models import Face

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, int], None]  # done, total, errors
ID_SLICE = 20_000  # face ids per query of templates by id
# Face ids are handed out in order but may commit out of order (PostgreSQL, several processes): a
# catch-up also looks this far below the highest id the index holds.
CATCH_UP_WINDOW = 10_000
# Up to this many templates the number of persons (for the calibration of each search) is counted
# again after every change; above it at most every PERSON_COUNT_SECONDS (a count over millions of
# rows; the FPIR of a gallery of millions does not move with a few more persons).
EXACT_PERSON_COUNT = 200_000
PERSON_COUNT_SECONDS = 30.0
# Above this many templates an enrollment's save of the index file is deferred (see IndexKeeper.save).
DEFER_SAVE_ABOVE = 200_000
SAVE_INTERVAL_SECONDS = 60.0
MILVUS_SCHEMES = ("milvus://", "milvus+http://", "milvus+https://", "milvus-lite://")


class IndexKeeper:
    """The vector index of the gallery's model, opened on first use and kept in line with the database.

    Every method is thread-safe: one lock guards the index (FAISS must not search while another
    thread adds to the same index) and what is known of what it holds.
    """

    def __init__(self, settings: Settings, db: Database, model: FaceModel) -> None:
        self.settings = settings
        self.db = db
        self.model = model
        self._index: VectorIndex | None = None
        self._rebuild_thread: threading.Thread | None = None
        self._rebuild_failed_at = -1e9
        self._version = -1  # the gallery version the index was last brought in line with
        self._cursor = 0  # the highest face id the index holds
        self._recent: set[int] = set()  # the ids it holds within CATCH_UP_WINDOW below the cursor
        self._persons: tuple[int, int, float] | None = None  # (version, persons, when counted)
        self._stored: tuple[int, int] | None = None  # (version, templates in the database) for readiness
        self._saved_at = -1e9
        self._person_counter: threading.Thread | None = None
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
            version = self.db.gallery_version()
            if self._index is None:
                # Kept aside until it is in line with the database: readiness says "loading" until then
                # (at 10M templates the sync takes a while), and an index left half-filled by an error (a
                # missing or wrong key) is dropped rather than saved over the index file at close.
                index = self._verified(self._open_index())
                self._sync_index(index)
                self._index = index
                self._version = version
            elif version != self._version:
                self._catch_up(self._index)
                self._version = version
            self._maybe_grow_index(self._index)  # cheap; enrollment and erasure change the size too
            return self._index

    def loaded_index(self) -> VectorIndex | None:
        """Return the index when it is loaded in memory, else None (never loads it)."""
        return self._index

    def index_consistency(self, *, lock_timeout: float = 0.5) -> tuple[bool, str]:
        """Return (ok, state) of the loaded index against the database, cheaply: a count, and a catch-up
        of the faces enrolled since the last search when the database is ahead (what the next search
        would do). Never loads the index. The database is counted outside the index lock (a count of
        millions of rows takes a while and searches need the lock), once per gallery version.

        The index must hold every template of the database. It may hold more: templates another process
        erased stay in it until it is reopened, and no search returns them. When the database moves on
        meanwhile (an enrollment committing right now) that is no failure either.
        """
        for attempt in range(2):
            if self._index is None:  # not loaded, or being loaded (then the lock is held for as long)
                return False, "loading: the index is being read and brought in line with the database"
            if not self._lock.acquire(timeout=lock_timeout):
                return True, "busy: the index is being brought in line with the database"
            try:
                index = self._index
                if index is None:
                    return False, "loading: the index is being read and brought in line with the database"
                self.index()  # the faces enrolled since the last search, if any
                held, version = len(index), self._version
            finally:
                self._lock.release()
            known = self._stored
            stored = known[1] if known is not None and known[0] == version else self.face_count()
            current = self.db.gallery_version()
            if current != version:
                return True, "catching up: the database changed since the index was last brought in line"
            self._stored = (version, stored)  # counted at this version: valid until the gallery changes
            if held == stored:
                return True, "loaded, in line with the database"
            if held > stored:
                return True, "loaded; it still holds templates erased by another process, which searches skip"
            if attempt == 0:
                time.sleep(0.2)  # an enrollment in another thread may be adding its template right now
        log.error("readiness: the index holds %d templates, the database %d at the same version", held, stored)
        return False, "damaged: the index and the database disagree on the templates they hold"

    def _open_index(self) -> VectorIndex:
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

    def _gallery_faces(self) -> tuple[ColumnElement[bool], ...]:
        """The conditions of this model's gallery faces (case faces have no person)."""
        return Face.model_id == self.model.model_id, Face.person_id.is_not(None)

    def face_count(self) -> int:
        """Return the number of gallery templates of the current model in the database."""
        with self.db.sessions() as session:
            count = session.execute(select(func.count(Face.id)).where(*self._gallery_faces())).scalar()
        return int(count or 0)

    def _face_ids(self, above: int = 0) -> np.ndarray:
        """Return the ids of this model's gallery faces in the database (those above ``above``), sorted."""
        with self.db.sessions() as session:
            rows = session.execute(
                select(Face.id).where(*self._gallery_faces(), Face.id > above).order_by(Face.id)
            ).scalars()
            return np.fromiter(rows, dtype=np.int64)

    def _note_held(self, ids: np.ndarray) -> None:
        """Record that the index now holds ``ids`` (sorted or not): the cursor and the window below it."""
        if len(ids):
            self._cursor = max(self._cursor, int(ids.max()))
        floor = self._cursor - CATCH_UP_WINDOW
        self._recent = {i for i in self._recent if i > floor} | {int(i) for i in ids[ids > floor]}

    def _holds(self, face_id: int) -> bool:
        """Whether the index holds ``face_id`` (as far as this process knows; see the module docstring)."""
        return face_id <= self._cursor - CATCH_UP_WINDOW or face_id in self._recent

    def _catch_up(self, index: VectorIndex) -> None:
        """Add the faces enrolled (by any process) since the index was last brought in line."""
        window = self._face_ids(above=max(0, self._cursor - CATCH_UP_WINDOW))
        new = np.array([i for i in window.tolist() if not self._holds(i)], dtype=np.int64)
        if len(new):
            self._fill_index(index, new)
            self._note_held(new)

    def _sync_index(self, index: VectorIndex) -> None:
        # The index is read before the database: a face that another worker commits and indexes in
        # between is then at worst "missing" (added again: harmless), never "extra" (removed: lost).
        held = index.ids()
        db_ids = self._face_ids()
        self._cursor, self._recent = 0, set()
        self._note_held(db_ids)
        missing, extra = id_differences(db_ids, held)
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
        rows: dict[int, bytes | None] = {}
        with self.db.sessions() as session:
            # In slices: a training sample of 262,144 ids in one IN list passes SQLite's limit on variables.
            for start in range(0, len(face_ids), ID_SLICE):
                ids = face_ids[start : start + ID_SLICE].tolist()
                for face_id, stored in session.execute(select(Face.id, Face.embedding).where(Face.id.in_(ids))):
                    rows[int(face_id)] = stored
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
        ids = self._face_ids()
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
                index = self._index if self._index is not None else self._open_index()
                index.clear()
                version = self.db.gallery_version()
                self._sync_index(index)  # fills it again from the database
                self._index, self._version = index, version
                return len(index)
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
            source_ids = unique_ids(source.ids())
        target = open_vector_index(self.settings.model_copy(update={"vector_url": vector_url}), self.model.model_id)
        try:
            missing, extra = id_differences(source_ids, target.ids())
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
        """Return the number of persons with at least one template of this model, counted in the database:
        again after every change of a gallery of up to EXACT_PERSON_COUNT templates; above, a count older
        than PERSON_COUNT_SECONDS is renewed in the background while searches use it (a count over
        millions of rows takes seconds; the FPIR of a gallery of millions does not move with a few more
        persons)."""
        with self._lock:
            held = len(self.index())
            version, cached = self._version, self._persons
        if cached is None or (cached[0] != version and held <= EXACT_PERSON_COUNT):
            return self._count_persons(version)
        if cached[0] != version and time.monotonic() - cached[2] >= PERSON_COUNT_SECONDS:
            with self._lock:
                counting = self._person_counter is not None and self._person_counter.is_alive()
                if not counting:
                    self._person_counter = threading.Thread(
                        target=self._count_persons, args=(version,), name="facetrace-person-count", daemon=True
                    )
                    self._person_counter.start()
        return cached[1]

    def _count_persons(self, version: int) -> int:
        with self.db.sessions() as session:
            count = session.execute(
                select(func.count(func.distinct(Face.person_id))).where(*self._gallery_faces())
            ).scalar()
        self._persons = (version, int(count or 0), time.monotonic())
        return int(count or 0)

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
        # Each candidate's person and template from the database: a face erased there (by any process)
        # has no row and is left out, whatever this process's index still holds.
        person_of, vectors_of = self._candidates(np.unique(ids[ids >= 0]))
        return [
            rank_persons(embeddings[n], scores[n], ids[n], person_of, vectors_of, scorer, top_k)
            for n in range(len(embeddings))
        ]

    def _candidates(self, face_ids: np.ndarray) -> tuple[dict[int, int], dict[int, np.ndarray]]:
        """Return the person and the template of each gallery face of ``face_ids`` still in the database."""
        if not len(face_ids):
            return {}, {}
        with self.db.sessions() as session:
            rows = session.execute(
                select(Face.id, Face.person_id, Face.embedding).where(
                    Face.id.in_(face_ids.tolist()), Face.person_id.is_not(None)
                )
            ).all()
        person_of = {int(fid): int(pid or 0) for fid, pid, _ in rows}
        vectors_of = {int(fid): np.frombuffer(blob, dtype=np.float32) for fid, _, blob in rows}
        return person_of, vectors_of

    # -- changes by enrollment and erasure --------------------------------------------------
    def add_enrolled(self, face_id: int, embedding: np.ndarray) -> None:
        """Add a template just committed to the database to the loaded index (not saved: see :meth:`save`).
        Nothing to do when no index is loaded, or when a search already caught it up from the database.
        The gallery version is left as it is: another process's changes since are caught up by the next
        search."""
        with self._lock:
            if self._index is not None and not self._holds(face_id):
                self._index.add(np.array([face_id]), embedding[None, :])
                self._note_held(np.array([face_id]))

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
            self._recent.difference_update(ids.tolist())
            if not self._index.writes_durable:  # an erased template must not stay in the index file
                self._index.save()

    def save(self, *, disk_known_full: bool = False, soon: bool = False) -> None:
        """Save the loaded index, if any; on a full disk keep the old file and go on (see :meth:`_save_or_warn`).
        ``disk_known_full``: the caller already reports the full disk (one line): the failed save is only logged
        at INFO then. ``soon``: an index of more than DEFER_SAVE_ABOVE templates saved less than
        SAVE_INTERVAL_SECONDS ago is saved by a later call (or at close) instead: writing a file of hundreds of
        megabytes after each enrollment would cost more than the enrollment. The database is the truth; a
        process that stops first adds the missing templates from it when the index is next opened. With
        ``soon``, an index whose every write is already durable (Milvus) is not saved at all.

        Raises:
            Exception: the save failed for another reason than a full disk.
        """
        with self._lock:
            index = self._index
            if soon and index is not None and index.writes_durable:
                return
            recently = time.monotonic() - self._saved_at < SAVE_INTERVAL_SECONDS
            if soon and recently and index is not None and len(index) > DEFER_SAVE_ABOVE:
                return
            self._save_or_warn(index, logging.INFO if disk_known_full else logging.WARNING)
            self._saved_at = time.monotonic()

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
        try:
            self.save()
        except FacetraceError as exc:  # the vector database is away: what it holds is rebuilt from the database
            log.error("the index could not be saved when closing: %s", exc.message)
        if self._index is not None:
            self._index.close()
