"""The gallery: enrolled persons, their faces in the database, and the vector index over them.

The database is the source of truth. The index is checked against it whenever it is opened
and whenever another process changed the gallery (``gallery_version``): faces missing from
the index are added, faces no longer in the database are removed, and a missing or corrupt
index file is rebuilt from the database. Each repair is logged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from facetrace.config import Settings
from facetrace.crypto import DecryptionError
from facetrace.errors import ConfigError, FacetraceError, ImageError, NoFaceError, NotFoundError, disk_full_error
from facetrace.faults import fault_point
from facetrace.gallery.calibration import Calibration
from facetrace.gallery.scoring import CohortScorer, rank_persons
from facetrace.gallery.sources import EnrollItem
from facetrace.index.backends import configured_factory, faiss_index_path, open_vector_index, plan_for, rebuild_plan_for
from facetrace.index.base import VectorIndex
from facetrace.index.faiss_index import FaissIndex, IndexPlan
from facetrace.index.milvus_index import MilvusIndex
from facetrace.store.db import Database
from facetrace.store.media import MediaStore, sha256_bytes
from facetrace.store.models import Face, Image, Person
from facetrace.vision.decode import decode_image
from facetrace.vision.parallel import analyze_paths
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.vision.pipeline import FaceAnalyzer, get_analyzer

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, int], None]  # done, total, errors


@dataclass
class EnrollOutcome:
    """What one enrollment run did."""

    persons_created: int = 0
    images_enrolled: int = 0
    images_skipped: int = 0  # already enrolled (idempotent rerun)
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "persons_created": self.persons_created,
            "images_enrolled": self.images_enrolled,
            "images_skipped": self.images_skipped,
            "errors": self.errors,
            "error_count": len(self.errors),
        }


@dataclass(frozen=True)
class _DecisionContext:
    """What every probe of one search is decided against."""

    n_persons: int
    threshold: float
    header: dict[str, Any]  # the "gallery" and "policy" parts of a search result


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text)


class Gallery:
    """Enroll, search, compare and erase, over one database, media folder and index."""

    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(settings.db_url, keyring=settings.keyring)
        self.media = MediaStore(settings.media_dir, keyring=settings.keyring)
        self._analyzer: FaceAnalyzer | None = None
        self._calibration: Calibration | None = None
        self._index: VectorIndex | None = None
        self._enrolling = 0  # enrollments of this process between their commit and their index add
        self._rebuild_thread: threading.Thread | None = None
        self._rebuild_failed_at = -1e9
        self._person_of: dict[int, int] = {}
        self._version = -1
        self._lock = threading.RLock()

    # -- models -----------------------------------------------------------------------------
    @property
    def analyzer_options(self) -> dict[str, Any]:
        return {
            "detector": self.settings.detector,
            "max_pixels": self.settings.max_pixels,
            "detect_max_side": self.settings.detect_max_side,
            "embedder_name": self.settings.embedder,
        }

    @property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            self._analyzer = get_analyzer(**self.analyzer_options)  # type: ignore[arg-type]
        return self._analyzer

    @property
    def model_id(self) -> str:
        return self.analyzer.model_id

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = Calibration.load(self.settings.calibration_path)
            if not self.calibrated:
                log.warning(
                    "the calibration is for model %s, not %s: no candidate will be called a match until "
                    "`facetrace calibrate` is run for this model",
                    self._calibration.model_id,
                    self.model_id,
                )
        return self._calibration

    @property
    def scorer(self) -> CohortScorer:
        """The score normaliser of the gallery's model (inactive when no cohort ships for it)."""
        return CohortScorer.for_model(self.model_id)

    @property
    def calibrated(self) -> bool:
        """Whether the calibration in use was built for the gallery's model (else no match is ever declared)."""
        return self.calibration.model_id == self.model_id

    # -- index ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        """The FAISS index file of the current model (not used when ``vector_url`` points to Milvus)."""
        return faiss_index_path(self.settings, self.model_id)

    @property
    def _dim(self) -> int:
        return int(getattr(self.analyzer.embedder, "dim", 128))

    def index(self) -> VectorIndex:
        """Return the index, opened and brought in line with the database if needed.

        Raises:
            ConfigError: the configured vector database cannot be opened.
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

    def _open_index(self) -> VectorIndex:
        if self._index is not None:
            return self._index
        index = open_vector_index(self.settings, self.model_id, expected_count=self._face_count(), dim=self._dim)
        if isinstance(index, FaissIndex):
            index.vector_source = self._vectors  # exact re-ranking of compressed codes
        return index

    def _verified(self, index: VectorIndex) -> VectorIndex:
        """Return ``index``, or a new empty one of the same plan (filled from the database by the sync) when a
        sample of its exact templates differs from the database's: a file can load and hold the right ids
        while its vectors are damaged (bit rot). ``facetrace doctor`` checks many more."""
        if not isinstance(index, FaissIndex) or not index.plan.exact_codes or not len(index):
            return index
        held = index.ids()
        sample = np.sort(np.random.default_rng().choice(held, size=min(16, len(held)), replace=False))
        stored = self._vectors(sample)
        known = ~np.isnan(stored[:, 0])  # ids erased from the database are the sync's business
        try:
            found = index.vectors(sample[known])
        except KeyError:
            return index
        with np.errstate(all="ignore"):  # damaged bytes may decode to huge floats or NaN
            cosine = np.sum(found.astype(np.float64) * stored[known], axis=1)
        if np.all(np.abs(np.nan_to_num(cosine, nan=-1.0) - 1.0) <= 1e-4):
            return index
        log.warning("index %s holds damaged templates: rebuilding it from the database", self.index_path.name)
        fresh = FaissIndex(self._dim, path=index.path, plan=index.plan, keyring=self.settings.keyring)
        fresh.vector_source = self._vectors
        return fresh

    def _face_count(self) -> int:
        with self.db.sessions() as session:
            count = session.execute(
                select(func.count(Face.id)).where(Face.model_id == self.model_id, Face.person_id.is_not(None))
            ).scalar()
        return int(count or 0)

    def _face_rows(self) -> list[tuple[int, int]]:
        with self.db.sessions() as session:
            rows = session.execute(
                select(Face.id, Face.person_id).where(Face.model_id == self.model_id, Face.person_id.is_not(None))
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
        elif isinstance(index, FaissIndex) and index.path is not None and not index.path.exists():
            self._save_or_warn(index)

    def _fill_index(self, index: VectorIndex, face_ids: np.ndarray, progress: ProgressFn | None = None) -> None:
        """Add the database templates ``face_ids`` to ``index``, training it first on a sample if it needs it."""
        if index.needs_training:
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(face_ids, size=min(len(face_ids), index.training_size()), replace=False))
            vectors = self._vectors(sample)
            index.train(vectors[~np.isnan(vectors[:, 0])])
        done = 0
        for start in range(0, len(face_ids), 20000):
            chunk = face_ids[start : start + 20000]
            vectors = self._vectors(chunk)
            known = ~np.isnan(vectors[:, 0])  # erased since the ids were read
            index.add(chunk[known], vectors[known])
            done += len(chunk)
            if progress:
                progress(done, len(face_ids), 0)
            if len(face_ids) > 100_000:
                log.info("indexed %d/%d faces", done, len(face_ids))

    def _vectors(self, face_ids: np.ndarray) -> np.ndarray:
        """Return the stored templates of ``face_ids`` in order; rows of NaN for ids not in the database."""
        out = np.full((len(face_ids), self._dim), np.nan, dtype=np.float32)
        if not len(face_ids):
            return out
        with self.db.sessions() as session:
            rows = dict(session.execute(select(Face.id, Face.embedding).where(Face.id.in_(face_ids.tolist()))).all())
        for n, face_id in enumerate(face_ids.tolist()):
            if (blob := rows.get(int(face_id))) is not None:
                out[n] = np.frombuffer(blob, dtype=np.float32)
        return out

    def _maybe_grow_index(self, index: VectorIndex) -> None:
        """Start a background rebuild when the gallery outgrew its FAISS index type (or the configured
        factory changed); the current index keeps answering until the new one replaces it."""
        if not isinstance(index, FaissIndex) or not self.settings.index_auto_rebuild:
            return
        if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
            return
        if time.monotonic() - self._rebuild_failed_at < 600:
            return  # the last try failed: not again on every search
        plan = rebuild_plan_for(self.settings, index, len(index))
        if plan is None:
            return
        if plan.configured != index.plan.configured:
            reason = f"FACETRACE_INDEX_FACTORY is {plan.configured}"
        elif plan.factory == index.factory and index.tombstone_share:
            reason = f"{index.tombstone_share:.0%} of its graph nodes are erased templates"
        else:
            reason = f"it no longer suits {len(index)} faces"
        log.warning("index %s: %s; rebuilding it as %s in the background", index.factory, reason, plan.factory)
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
        new = FaissIndex(self._dim, path=self.index_path, plan=plan, keyring=self.settings.keyring)
        new.vector_source = self._vectors
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
                if isinstance(index, MilvusIndex):
                    index.clear()
                self._index, self._version = index, -1
                return len(self.index())
        self.wait_for_index_rebuild()
        settings = self.settings
        if factory is not None:
            settings = settings.model_copy(update={"index_factory": factory})
        plan = plan_for(settings, self._face_count(), self._dim)
        if factory is not None and configured_factory(settings) is None:
            plan.configured = None
        try:
            FaissIndex(self._dim, plan=plan)  # check the factory before reading the database
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
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
        if not vector_url.startswith(("milvus://", "milvus+http://", "milvus+https://", "milvus-lite://")):
            raise ConfigError("migrate to a milvus://host:port/collection or milvus-lite:///path/file.db URL")
        if vector_url == self.settings.vector_url:
            raise ConfigError("that vector URL is the current index already")
        started = time.perf_counter()
        with self._lock:
            source = self.index()
            source_ids = np.unique(source.ids())
        target = open_vector_index(self.settings.model_copy(update={"vector_url": vector_url}), self.model_id)
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
                vectors = self._vectors(np.sort(sample))
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

    # -- enrollment -------------------------------------------------------------------------
    def enroll(
        self,
        items: list[EnrollItem],
        *,
        progress: ProgressFn | None = None,
        workers: int | None = None,
        nice: int = 0,
    ) -> EnrollOutcome:
        """Enroll each item's images; return what was done and the per-file errors.

        Idempotent and resumable: an image already enrolled for the person (same sha256) is
        skipped, and each image is committed on its own, so a rerun after an interruption
        finishes the job without duplicates.
        """
        outcome = EnrollOutcome()
        self.index()  # open and sync first, so new faces go straight into it
        todo: list[tuple[EnrollItem, Path, bytes, str]] = []
        total = sum(len(item.images) for item in items)
        done = 0
        existing = self._enrolled_pairs({item.external_id for item in items})
        for item in items:
            for path in item.images:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    reason = f"cannot read ({exc.strerror})"
                    outcome.errors.append({"file": str(path), "person": item.external_id, "error": reason})
                    done += 1
                    continue
                digest = sha256_bytes(data)
                if (item.external_id, digest) in existing:
                    outcome.images_skipped += 1
                    done += 1
                    continue
                existing.add((item.external_id, digest))
                todo.append((item, path, data, digest))
        if progress:
            progress(done, total, len(outcome.errors))
        results = analyze_paths(
            [t[1] for t in todo],
            workers=self.settings.workers if workers is None else workers,
            largest_only=True,
            options=self.analyzer_options,
            nice=nice,  # > 0 for a server's background import: searches keep the cores first
        )
        try:
            for (item, path, data, digest), result in zip(todo, results, strict=True):
                done += 1
                error = self._enroll_one(item, path, data, digest, result, outcome)
                if error:
                    outcome.errors.append({"file": str(path), "person": item.external_id, "error": error})
                if progress:
                    progress(done, total, len(outcome.errors))
        except Exception as exc:
            # A full disk stops the whole run (the next image would fail too). What was committed stays
            # enrolled, the failed image was rolled back: a rerun of the same command finishes the job.
            if (full := disk_full_error(exc, str(self.settings.home))) is None:
                raise
            raise type(full)(
                f"{full.message} ({outcome.images_enrolled} image(s) were enrolled before it filled; "
                "a rerun skips them)"
            ) from None
        finally:
            fault_point("enroll.before_index_save")
            with self._lock:
                self._save_or_warn(self._index)
        return outcome

    @staticmethod
    def _save_or_warn(index: VectorIndex | None) -> None:
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
            log.warning("index not saved (%s): it is brought in line with the database when next opened", exc)

    def _enrolled_pairs(self, external_ids: set[str]) -> set[tuple[str, str]]:
        """Return the (external id, image sha256) pairs already enrolled for these persons only
        (not the whole gallery: an API upload for one person must not read millions of rows)."""
        wanted = sorted(external_ids)
        pairs: set[tuple[str, str]] = set()
        with self.db.sessions() as session:
            for start in range(0, len(wanted), 500):
                rows = session.execute(
                    select(Person.external_id, Image.sha256)
                    .join(Image, Image.person_id == Person.id)
                    .where(Person.external_id.in_(wanted[start : start + 500]))
                )
                pairs.update((a, b) for a, b in rows)
        return pairs

    def _enroll_one(
        self,
        item: EnrollItem,
        path: Path,
        data: bytes,
        digest: str,
        result: list[DetectedFace] | FacetraceError,
        outcome: EnrollOutcome,
    ) -> str | None:
        """Store one analysed image (see :meth:`_enroll_image`); searches meanwhile use the index as it is."""
        with self._lock:
            self._enrolling += 1
        try:
            return self._enroll_image(item, path, data, digest, result, outcome)
        finally:
            with self._lock:
                self._enrolling -= 1

    def _enroll_image(
        self,
        item: EnrollItem,
        path: Path,
        data: bytes,
        digest: str,
        result: list[DetectedFace] | FacetraceError,
        outcome: EnrollOutcome,
    ) -> str | None:
        if isinstance(result, FacetraceError):
            return result.message
        if not result:
            return "no face found"
        face = result[0]
        if face.quality.score < self.settings.min_quality:
            return f"face quality {face.quality.score:.0f} is below the minimum {self.settings.min_quality:.0f}"
        height, width = _image_size(data)
        _, rel = self.media.put(data, path.suffix or ".jpg")
        fault_point("enroll.after_media")
        # Another worker (another process or machine on a shared database) may create the same person or
        # enroll the same image between our check and our commit: the unique constraints refuse the second
        # write, and we then take the other worker's person, or count the image as already enrolled.
        for attempt in range(3):
            try:
                created, face_row, person_id = self._commit_face(item, rel, path.name, digest, width, height, face)
                break
            except IntegrityError:
                if self._image_enrolled(item.external_id, digest):
                    outcome.images_skipped += 1
                    return None
                if attempt == 2:
                    raise
        fault_point("enroll.after_commit")
        outcome.persons_created += created
        outcome.images_enrolled += 1
        with self._lock:
            # A search in another thread may already have synced this face in from the database.
            if self._index is not None and face_row.id not in self._person_of:
                self._index.add(np.array([face_row.id]), face.embedding[None, :])
                self._person_of[face_row.id] = person_id
                self._version = self.db.gallery_version()
        return None

    def _commit_face(
        self, item: EnrollItem, rel: str, name: str, digest: str, width: int, height: int, face: DetectedFace
    ) -> tuple[int, Face, int]:
        """Store one image and its face (creating the person if needed) in one transaction; return
        (persons created, the face row, the person id). Raises IntegrityError when another worker won a race."""
        created = 0
        with self.db.session() as session:
            person = session.execute(select(Person).where(Person.external_id == item.external_id)).scalar()
            if person is None:
                person = Person(
                    external_id=item.external_id,
                    name=item.name,
                    attributes=item.attributes,
                    source=item.source,
                    legal_basis=item.legal_basis,
                    collected_at=item.collected_at,
                    retain_until=item.retain_until,
                )
                session.add(person)
                session.flush()
                created = 1
            elif item.retain_until is not None and person.retain_until != item.retain_until:
                person.retain_until = item.retain_until  # a later import may set or change the date
            face_row = self._add_image(session, person, rel, name, digest, width, height, face)
            self.db.bump_gallery_version(session)
            return created, face_row, person.id

    def _image_enrolled(self, external_id: str, digest: str) -> bool:
        with self.db.sessions() as session:
            found = session.execute(
                select(Image.id)
                .join(Person, Image.person_id == Person.id)
                .where(Person.external_id == external_id, Image.sha256 == digest)
            ).first()
        return found is not None

    @staticmethod
    def _add_image(
        session: Any, person: Person, rel: str, name: str, digest: str, width: int, height: int, face: DetectedFace
    ) -> Face:
        image = Image(
            person_id=person.id, sha256=digest, media_path=rel, original_name=name[:500], width=width, height=height
        )
        session.add(image)
        session.flush()
        row = Face.from_detection(face, image_id=image.id, person_id=person.id)
        session.add(row)
        session.flush()
        return row

    def _save_index(self) -> None:
        with self._lock:
            self._save_or_warn(self._index)

    # -- search -----------------------------------------------------------------------------
    def gallery_size(self) -> int:
        """Return the number of persons with at least one template of the current model."""
        with self._lock:
            self.index()
            return len(set(self._person_of.values()))

    def detect(self, data: bytes, name: str = "image") -> list[DetectedFace]:
        """Return every face in encoded image ``data``. Raises ImageError for bad images."""
        image = decode_image(data, max_pixels=self.settings.max_pixels, name=name)
        return self.analyzer.analyze(image)

    def search(self, data: bytes, *, name: str = "image", top_k: int = 5) -> dict[str, Any]:
        """Search every face of an encoded image; return the JSON-ready result.

        Raises:
            ImageError: the data is not a usable image.
        """
        faces = self.detect(data, name)
        return {"image": name, **self.search_faces(faces, top_k=top_k)}

    def search_faces(self, faces: list[DetectedFace], *, top_k: int = 5) -> dict[str, Any]:
        """Search already analysed faces; return gallery facts and, per face, its candidates."""
        context = self._decision_context()
        hits = self._hits([f.embedding for f in faces], top_k)
        out_faces = [
            self._face_result(face, face_hits, context.threshold, context.n_persons)
            for face, face_hits in zip(faces, hits, strict=True)
        ]
        return {**context.header, "faces": out_faces}

    def _decision_context(self) -> _DecisionContext:
        """Return the gallery size, the policy threshold and the JSON header that explains it."""
        with self._lock:  # an enrollment in another thread may be adding to _person_of
            self.index()
            n_persons = len(set(self._person_of.values()))
        policy = self.settings.policy_fpir
        threshold = self.calibration.threshold(policy, max(1, n_persons))
        header = {
            "gallery": {"persons": n_persons, "model_id": self.model_id},
            "policy": {
                "target_fpir": policy,
                "threshold": round(threshold, 4),
                "calibrated": self.calibrated,
                "min_quality": self.settings.min_quality,
                "explanation": (
                    f"a candidate is a match when its score is at least {threshold:.4f}: at that score, "
                    f"a search of this gallery of {n_persons} persons for someone not in it returns a "
                    f"candidate this strong {policy:.2%} of the time"
                ),
            },
        }
        return _DecisionContext(n_persons, threshold, header)

    def _hits(self, embeddings: list[np.ndarray], top_k: int) -> list[list[Any]]:
        """Return, per probe template, up to ``top_k`` ranked person hits from the index."""
        # Under the lock: FAISS must not search while another thread adds to the same index.
        with self._lock:
            index = self.index()
            if not embeddings or not len(index):
                return [[] for _ in embeddings]
            k = min(len(index), max(4 * top_k, top_k + 20))
            scores, ids = index.search(np.vstack(embeddings), k)
            found = np.unique(ids[ids >= 0])
            vectors_of = dict(zip(found.tolist(), self._vectors(found), strict=True))
            return [
                rank_persons(embeddings[n], scores[n], ids[n], self._person_of, vectors_of, self.scorer, top_k)
                for n in range(len(embeddings))
            ]

    def _face_result(self, face: DetectedFace, hits: list[Any], threshold: float, n_persons: int) -> dict[str, Any]:
        return {**face.as_dict(), **self._decisions(face.quality.score, hits, threshold, n_persons)}

    def _decisions(self, quality: float, hits: list[Any], threshold: float, n_persons: int) -> dict[str, Any]:
        """Return ``quality_ok``, the calibrated ``candidates`` and the ``match`` of one probe
        (a face, or a video track's template with the quality of its best face)."""
        persons = self._persons({h.person_id for h in hits})
        quality_ok = quality >= self.settings.min_quality
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            person = persons[hit.person_id]
            fmr = self.calibration.fmr(hit.score)
            fpir = self.calibration.fpir(hit.score, max(1, n_persons))
            above = hit.score >= threshold
            is_match = above and quality_ok and rank == 1 and self.calibrated
            if not self.calibrated:
                reason = f"no calibration for model {self.model_id}: scores cannot be turned into match decisions"
            elif not above:
                reason = f"score {hit.score:.4f} below the threshold {threshold:.4f}"
            elif not quality_ok:
                reason = f"probe quality {quality:.0f} below the minimum {self.settings.min_quality:.0f}"
            elif rank > 1:
                reason = "above the threshold but not the best candidate"
            else:
                reason = f"score {hit.score:.4f} at or above the threshold {threshold:.4f}"
            candidates.append(
                {
                    "rank": rank,
                    "person": person,
                    "face_id": hit.face_id,
                    "score": round(hit.score, 4),
                    "similarity": round(getattr(hit, "raw", hit.score), 4),
                    "fmr": fmr,
                    "fpir": fpir,
                    "fpir_extrapolated": self.calibration.extrapolated(hit.score),
                    "match": is_match,
                    "reason": reason,
                }
            )
        match = candidates[0]["person"]["external_id"] if candidates and candidates[0]["match"] else None
        return {"quality_ok": quality_ok, "candidates": candidates, "match": match}

    def _persons(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        with self.db.sessions() as session:
            rows = session.execute(select(Person).where(Person.id.in_(ids))).scalars()
            return {p.id: {"id": p.id, "external_id": p.external_id, "name": p.name} for p in rows}

    # -- video ------------------------------------------------------------------------------
    def search_video(
        self,
        source: str | Path | bytes,
        *,
        name: str | None = None,
        top_k: int = 5,
        progress: ProgressFn | None = None,
        cancel: Any = None,
        workers: int | None = None,
        isolate: bool = False,
    ) -> dict[str, Any]:
        """Find, track and search every person in a video; see :func:`facetrace.gallery.video.search_video`."""
        from facetrace.gallery.video import search_video

        return search_video(
            self, source, name=name, top_k=top_k, progress=progress, cancel=cancel, workers=workers, isolate=isolate
        )

    def enroll_video(
        self,
        item: EnrollItem,
        source: str | Path,
        *,
        progress: ProgressFn | None = None,
        cancel: Any = None,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """Enroll the best faces of a video's longest track; see :func:`facetrace.gallery.video.enroll_video`."""
        from facetrace.gallery.video import enroll_video

        return enroll_video(self, item, source, progress=progress, cancel=cancel, workers=workers)

    # -- compare ----------------------------------------------------------------------------
    def compare(self, a: bytes, b: bytes, *, names: tuple[str, str] = ("A", "B")) -> dict[str, Any]:
        """1:1 verification of the largest face in each image.

        Raises:
            ImageError: either input is not a usable image.
            NoFaceError: no face in one of them.
        """
        faces = []
        for data, name in zip((a, b), names, strict=True):
            found = self.detect(data, name)
            if not found:
                raise NoFaceError(f"{name}: no face found")
            faces.append(found[0])
        similarity = float(np.dot(faces[0].embedding, faces[1].embedding))
        score = float(self.scorer.scores(faces[0].embedding[None, :], faces[1].embedding[None, :])[0, 0])
        fmr = self.calibration.fmr(score)
        threshold = self.calibration.threshold(self.settings.verify_fmr, 1)
        return {
            "score": round(score, 4),
            "similarity": round(similarity, 4),
            "fmr": fmr,
            "threshold": round(threshold, 4),
            "target_fmr": self.settings.verify_fmr,
            "match": score >= threshold and self.calibrated,
            "calibrated": self.calibrated,
            "faces": [f.as_dict() for f in faces],
        }

    # -- persons ----------------------------------------------------------------------------
    def list_persons(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        query: str | None = None,
        source: str | None = None,
        legal_basis: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return persons ordered by external id, with their face counts; ``query`` matches a part of
        the name or external id, ``source`` and ``legal_basis`` match exactly."""
        with self.db.sessions() as session:
            stmt = (
                select(Person, func.count(Face.id))
                .outerjoin(Face, Face.person_id == Person.id)
                .group_by(Person.id)
                .order_by(Person.external_id)
            )
            if query:
                like = f"%{query}%"
                stmt = stmt.where(Person.name.ilike(like) | Person.external_id.ilike(like))
            if source is not None:
                stmt = stmt.where(Person.source == source)
            if legal_basis is not None:
                stmt = stmt.where(Person.legal_basis == legal_basis)
            rows = session.execute(stmt.offset(offset).limit(limit)).all()
            return [{**_person_dict(p), "faces": int(n)} for p, n in rows]

    def get_person(self, external_id: str) -> dict[str, Any]:
        """Return one person with their images and faces. Raises NotFoundError."""
        with self.db.sessions() as session:
            person = session.execute(select(Person).where(Person.external_id == external_id)).scalar()
            if person is None:
                raise NotFoundError(f"no person with id {external_id!r}")
            images = []
            for image in person.images:
                images.append(
                    {
                        "id": image.id,
                        "sha256": image.sha256,
                        "original_name": image.original_name,
                        "width": image.width,
                        "height": image.height,
                        "faces": [
                            {"id": f.id, "box": f.box, "quality": round(f.quality, 1), "model_id": f.model_id}
                            for f in image.faces
                        ],
                    }
                )
            return {**_person_dict(person), "images": images}

    def delete_person(self, external_id: str) -> dict[str, Any]:
        """Erase a person: database rows, index entries and media files. Raises NotFoundError."""
        # Open the index first: otherwise a fresh process would leave the erased templates in the file.
        self.index()
        with self.db.session() as session:
            person = session.execute(select(Person).where(Person.external_id == external_id)).scalar()
            if person is None:
                raise NotFoundError(f"no person with id {external_id!r}")
            face_ids = [f.id for img in person.images for f in img.faces]
            media = [img.media_path for img in person.images]
            session.delete(person)
            self.db.bump_gallery_version(session)
        self.forget_faces(face_ids)
        with self.db.sessions() as session:
            still_used = set(session.execute(select(Image.media_path).where(Image.media_path.in_(media))).scalars())
        removed = sum(self.media.delete(rel) for rel in media if rel not in still_used)
        self.db.purge_deleted(("persons", "images", "faces"))  # PostgreSQL: VACUUM them
        return {"external_id": external_id, "faces_removed": len(face_ids), "media_files_removed": removed}

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

    def iter_faces(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (face id, person id, embedding) for every gallery face of the current model."""
        with self.db.sessions() as session:
            rows = session.execute(
                select(Face.id, Face.person_id, Face.embedding).where(
                    Face.model_id == self.model_id, Face.person_id.is_not(None)
                )
            )
            for fid, pid, emb in rows:
                yield int(fid), int(pid or 0), np.frombuffer(emb, dtype=np.float32)

    def stats(self) -> dict[str, Any]:
        index = self.index()
        with self.db.sessions() as session:
            persons = session.execute(select(func.count(Person.id))).scalar() or 0
            images = session.execute(select(func.count(Image.id))).scalar() or 0
            faces = session.execute(select(func.count(Face.id))).scalar() or 0
        db_bytes = 0
        if self.db.url.startswith("sqlite:///"):
            db_file = Path(self.db.url.removeprefix("sqlite:///"))
            db_bytes = sum(p.stat().st_size for p in db_file.parent.glob(db_file.name + "*") if p.is_file())
        index_bytes = self.index_path.stat().st_size if self.index_path.exists() else 0
        return {
            "home": str(self.settings.home),
            "database": self.db.safe_url,
            "persons": int(persons),
            "images": int(images),
            "faces": int(faces),
            "model_id": self.model_id,
            "index": index.describe(),
            "disk_bytes": {"database": db_bytes, "index": index_bytes, "media": self.media.usage_bytes()},
        }

    def close(self) -> None:
        if not self.wait_for_index_rebuild(0):
            log.warning("waiting for the index rebuild to finish")
            self.wait_for_index_rebuild()
        self._save_index()
        if self._index is not None:
            self._index.close()
        self.db.dispose()


def _person_dict(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "external_id": person.external_id,
        "name": person.name,
        "metadata": person.attributes,
        "source": person.source,
        "legal_basis": person.legal_basis,
        "collected_at": person.collected_at.isoformat() if person.collected_at else None,
        "retain_until": _iso_utc(person.retain_until),
    }


def _iso_utc(value: Any) -> str | None:
    """Return ISO text in UTC for an aware or (SQLite: naive, stored as UTC) datetime, or None."""
    if value is None:
        return None
    from datetime import UTC

    return str((value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat())


def _image_size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return img.size[1], img.size[0]
    except Exception as exc:  # decoded fine in the worker; be defensive anyway
        raise ImageError(str(exc)) from None
