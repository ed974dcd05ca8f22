"""The gallery: enrolled persons, their faces in the database, and the vector index over them.

:class:`Gallery` is the package's public face; it wires the parts, each in its own module:

- :mod:`~facetrace.gallery.analysis`: the face model, analysing images here or in worker processes;
- :mod:`~facetrace.gallery.index_keeper`: the vector index, kept in line with the database (the truth);
- :mod:`~facetrace.gallery.enrollment`: storing images and their faces, for persons and for cases;
- :mod:`~facetrace.gallery.decision`: scores to calibrated match decisions (pure);
- :mod:`~facetrace.gallery.results`: the typed results (``to_dict()`` at the edges);
- :mod:`~facetrace.gallery.persons` and :mod:`~facetrace.gallery.video`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrace.config import Settings
from facetrace.errors import NoFaceError, NotFoundError
from facetrace.gallery import persons, video
from facetrace.gallery.analysis import AnalysisPool, FaceModel
from facetrace.gallery.calibration import Calibration
from facetrace.gallery.decision import decide, search_policy
from facetrace.gallery.enrollment import Enroller, EnrollmentObserver, EnrollOutcome, ProgressFn, StoredImage
from facetrace.gallery.index_keeper import IndexKeeper
from facetrace.gallery.results import Comparison, FaceResult, Probe, SearchPolicy, SearchResult, TemplateSearch
from facetrace.gallery.scoring import CohortScorer
from facetrace.gallery.sources import EnrollItem
from facetrace.index.base import VectorIndex
from facetrace.store import settings_store
from facetrace.store.db import Database
from facetrace.store.media import MediaStore
from facetrace.store.models import Face, Image, Person
from facetrace.vision.decode import ImageInput
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.vision.pipeline import FaceAnalyzer
from facetrace.vision.video import CancelFn

log = logging.getLogger(__name__)


class Gallery:
    """Enroll, search, compare and erase, over one database, media folder and index.

    ``pool``: analyse the images of :meth:`detect` (searches, comparisons) in these worker processes
    (a server; the gallery closes it); ``on_enrolled``: told about every image an enrollment stores.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        pool: AnalysisPool | None = None,
        on_enrolled: EnrollmentObserver | None = None,
    ) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(settings.db_url, keyring=settings.keyring)
        self.media = MediaStore(settings.media_dir, keyring=settings.keyring)
        self.face_model = FaceModel(settings, pool)
        self.keeper = IndexKeeper(settings, self.db, self.face_model)
        self.enroller = Enroller(settings, self.db, self.media, self.face_model, self.keeper, on_enrolled)
        self._calibration: Calibration | None = None

    # -- models -----------------------------------------------------------------------------
    @property
    def pool(self) -> AnalysisPool | None:
        """The worker processes that analyse images, or None when they are analysed in this process."""
        return self.face_model.pool

    @property
    def analyzer_options(self) -> dict[str, Any]:
        """The options that build the face analyser (here or in worker processes)."""
        return self.face_model.options

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face analyser of this process, loaded on first use."""
        return self.face_model.analyzer

    @property
    def model_id(self) -> str:
        """The embedding model's identifier."""
        return self.face_model.model_id

    @property
    def dim(self) -> int:
        """The length of the model's templates."""
        return self.face_model.dim

    @property
    def calibration(self) -> Calibration:
        """The score calibration in use (loaded on first use; a warning when it is for another model)."""
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

    def analysis_workers_alive(self) -> int:
        """Return the live analysis worker processes (1 when images are analysed in this process)."""
        pool = self.face_model.pool
        return pool.alive() if pool is not None else 1

    # -- index ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        """The FAISS index file of the current model (not used when ``vector_url`` points to Milvus)."""
        return self.keeper.index_path

    def index(self) -> VectorIndex:
        """Return the index, opened and brought in line with the database if needed.

        Raises:
            ConfigError: the configured vector database cannot be opened.
        """
        return self.keeper.index()

    def loaded_index(self) -> VectorIndex | None:
        """Return the index when it is loaded in memory, else None (never loads it)."""
        return self.keeper.loaded_index()

    def index_consistency(self, *, lock_timeout: float = 0.5) -> tuple[bool, str]:
        """Return (ok, state) of the loaded index against the database; see :meth:`IndexKeeper.index_consistency`."""
        return self.keeper.index_consistency(lock_timeout=lock_timeout)

    def stored_templates(self, face_ids: np.ndarray) -> np.ndarray:
        """Return the database's templates of ``face_ids`` in order; rows of NaN for ids not in the database."""
        return self.keeper.vectors(face_ids)

    def wait_for_index_rebuild(self, timeout: float | None = None) -> bool:
        """Wait for a background index rebuild to finish; return True when none is running any more."""
        return self.keeper.wait_for_index_rebuild(timeout)

    def rebuild_index(self, *, factory: str | None = None, progress: ProgressFn | None = None) -> int:
        """Rebuild the index from the database; return how many faces it holds.

        Raises:
            ConfigError: the vector database cannot be opened, or ``factory`` is not a valid FAISS factory.
        """
        return self.keeper.rebuild_index(factory=factory, progress=progress)

    def migrate_index(self, vector_url: str, *, progress: ProgressFn | None = None, check: int = 100) -> dict[str, Any]:
        """Copy this model's templates into the Milvus database at ``vector_url``; return what was copied
        and a check against the current index (see :meth:`IndexKeeper.migrate_index`).

        Raises:
            ConfigError: ``vector_url`` is not a Milvus URL, is the current backend, or cannot be opened.
        """
        return self.keeper.migrate_index(vector_url, progress=progress, check=check)

    def forget_faces(self, face_ids: list[int]) -> None:
        """Take erased templates out of the index (already deleted from the database) and save it."""
        self.keeper.forget_faces(face_ids)

    # -- enrollment -------------------------------------------------------------------------
    def enroll(
        self,
        items: list[EnrollItem],
        *,
        progress: ProgressFn | None = None,
        workers: int | None = None,
        nice: int = 0,
    ) -> EnrollOutcome:
        """Enroll each item's image files; return what was done and the per-file errors.

        Idempotent and resumable: an image already enrolled for the person (same sha256) is
        skipped, and each image is committed on its own, so a rerun after an interruption
        finishes the job without duplicates.

        Raises:
            FacetraceError: the disk filled up (what was committed stays enrolled; a rerun finishes).
        """
        return self.enroller.enroll(items, progress=progress, workers=workers, nice=nice)

    def enroll_images(self, item: EnrollItem, images: list[ImageInput]) -> EnrollOutcome:
        """Enroll a few encoded images (uploads, a report's photos) of ``item``'s person, analysed in this
        thread; return the outcome, with per-image errors naming each :class:`ImageInput` by its name.

        Raises:
            FacetraceError: the disk filled up (what was committed stays enrolled; a rerun finishes).
        """
        return self.enroller.enroll_images(item, images)

    def store_case_image(
        self, session: Session, image: ImageInput, face: DetectedFace, *, digest: str | None = None
    ) -> StoredImage:
        """Store a case's photo and its face in the caller's transaction (never in the index); return the ids.

        Raises:
            ImageError: the image's header cannot be read.
        """
        return self.enroller.store_case_image(session, image, face, digest=digest)

    def store_plain_image(self, session: Session, image: ImageInput) -> int:
        """Store an image with no face to search (a mark's photo) in the caller's transaction; return its id.

        Raises:
            ImageError: the data is not a usable image.
        """
        return self.enroller.store_plain_image(session, image)

    # -- search -----------------------------------------------------------------------------
    def gallery_size(self) -> int:
        """Return the number of persons with at least one template of the current model."""
        return self.keeper.person_count()

    def detect(self, data: bytes, name: str = "image") -> list[DetectedFace]:
        """Return every face in encoded image ``data``.

        Raises:
            ImageError: the data is not a usable image.
            AnalysisUnavailable: a worker of the analysis pool died.
        """
        return self.face_model.detect(data, name)

    def search(self, data: bytes, *, name: str = "image", top_k: int = 5) -> SearchResult:
        """Search every face of an encoded image; return the decision for each.

        Raises:
            ImageError: the data is not a usable image.
        """
        faces = self.detect(data, name)
        found = self.search_faces(faces, top_k=top_k)
        return SearchResult(found.policy, found.faces, image=name)

    def search_faces(self, faces: list[DetectedFace], *, top_k: int = 5) -> SearchResult:
        """Search already analysed faces; return the policy and, per face, its decision."""
        found = self.search_templates([Probe(f.embedding, f.quality.score) for f in faces], top_k=top_k)
        results = tuple(FaceResult(f, d) for f, d in zip(faces, found.decisions, strict=True))
        return SearchResult(found.policy, results)

    def search_templates(self, probes: Sequence[Probe], *, top_k: int = 5) -> TemplateSearch:
        """Search templates (of faces, of video tracks, or stored in the database); return the policy and,
        per probe in order, its up to ``top_k`` candidates and calibrated decision.

        Raises:
            ConfigError: the configured vector database cannot be opened.
        """
        policy = self.search_policy()
        hits = self.keeper.hits([p.embedding for p in probes], top_k, self.scorer)
        known = persons.person_refs(self.db, {h.person_id for probe_hits in hits for h in probe_hits})
        decisions = tuple(
            decide(probe_hits, known, quality=probe.quality, policy=policy, calibration=self.calibration)
            for probe, probe_hits in zip(probes, hits, strict=True)
        )
        return TemplateSearch(policy, decisions)

    def search_policy(self) -> SearchPolicy:
        """Return what a search now is decided against: the gallery's size and the policy threshold."""
        return search_policy(
            self.calibration,
            persons=self.keeper.person_count(),
            model_id=self.model_id,
            # An admin may save another match FPIR (facetrace.store.settings_store): read it for each search.
            target_fpir=settings_store.effective(self.db, self.settings).policy_fpir,
            calibrated=self.calibrated,
            min_quality=self.settings.min_quality,
        )

    # -- video ------------------------------------------------------------------------------
    def search_video(
        self,
        source: str | Path | bytes,
        *,
        name: str | None = None,
        top_k: int = 5,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        workers: int | None = None,
        isolate: bool = False,
    ) -> dict[str, Any]:
        """Find, track and search every person in a video; see :func:`facetrace.gallery.video.search_video`."""
        return video.search_video(
            self, source, name=name, top_k=top_k, progress=progress, cancel=cancel, workers=workers, isolate=isolate
        )

    def enroll_video(
        self,
        item: EnrollItem,
        source: str | Path,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """Enroll the best faces of a video's longest track; see :func:`facetrace.gallery.video.enroll_video`."""
        return video.enroll_video(self, item, source, progress=progress, cancel=cancel, workers=workers)

    # -- compare ----------------------------------------------------------------------------
    def compare(self, a: bytes, b: bytes, *, names: tuple[str, str] = ("A", "B")) -> Comparison:
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
        threshold = self.calibration.threshold(self.settings.verify_fmr, 1)
        return Comparison(
            score=score,
            similarity=similarity,
            fmr=self.calibration.fmr(score),
            threshold=threshold,
            target_fmr=self.settings.verify_fmr,
            match=score >= threshold and self.calibrated,
            calibrated=self.calibrated,
            faces=(faces[0], faces[1]),
        )

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
        return persons.list_persons(
            self.db, offset=offset, limit=limit, query=query, source=source, legal_basis=legal_basis
        )

    def get_person(self, external_id: str) -> dict[str, Any]:
        """Return one person with their images and faces. Raises NotFoundError."""
        return persons.get_person(self.db, external_id)

    def delete_person(self, external_id: str) -> dict[str, Any]:
        """Erase a person: database rows, index entries and media files. Raises NotFoundError."""
        # Open the index first: otherwise a fresh process would leave the erased templates in the file.
        self.keeper.index()
        with self.db.session() as session:
            person = session.execute(select(Person).where(Person.external_id == external_id)).scalar()
            if person is None:
                raise NotFoundError(f"no person with id {external_id!r}")
            face_ids = [f.id for img in person.images for f in img.faces]
            media = [img.media_path for img in person.images]
            session.delete(person)
            self.db.bump_gallery_version(session)
        self.keeper.forget_faces(face_ids)
        with self.db.sessions() as session:
            still_used = set(session.execute(select(Image.media_path).where(Image.media_path.in_(media))).scalars())
        removed = sum(self.media.delete(rel) for rel in media if rel not in still_used)
        self.db.purge_deleted(("persons", "images", "faces"))  # PostgreSQL: VACUUM them
        return {"external_id": external_id, "faces_removed": len(face_ids), "media_files_removed": removed}

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
        """Return the gallery's counts, model, index description and disk use, JSON-ready."""
        index = self.keeper.index()
        with self.db.sessions() as session:
            n_persons = session.execute(select(func.count(Person.id))).scalar() or 0
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
            "persons": int(n_persons),
            "images": int(images),
            "faces": int(faces),
            "model_id": self.model_id,
            "index": index.describe(),
            "disk_bytes": {"database": db_bytes, "index": index_bytes, "media": self.media.usage_bytes()},
        }

    def close(self) -> None:
        """Stop the analysis workers, save and release the index, close the database."""
        self.face_model.close()
        self.keeper.close()
        self.db.dispose()
