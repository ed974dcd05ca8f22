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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from facetrace.config import Settings
from facetrace.errors import FacetraceError, ImageError, NoFaceError, NotFoundError
from facetrace.gallery.calibration import Calibration
from facetrace.gallery.scoring import rank_persons
from facetrace.gallery.sources import EnrollItem
from facetrace.index.faiss_index import FaissIndex, IndexCorrupt
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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text)


class Gallery:
    """Enroll, search, compare and erase, over one database, media folder and index."""

    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(settings.db_url)
        self.media = MediaStore(settings.media_dir)
        self._analyzer: FaceAnalyzer | None = None
        self._calibration: Calibration | None = None
        self._index: FaissIndex | None = None
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
        return self._calibration

    # -- index ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.settings.index_dir / f"faces-{_slug(self.model_id)}.faiss"

    def index(self) -> FaissIndex:
        """Return the index, opened and brought in line with the database if needed."""
        with self._lock:
            version = self.db.gallery_version()
            if self._index is None or version != self._version:
                self._index = self._open_index()
                self._sync_index(self._index)
                self._version = version
            return self._index

    def _open_index(self) -> FaissIndex:
        if self._index is not None:
            return self._index
        try:
            return FaissIndex.load(self.index_path)
        except FileNotFoundError:
            log.warning("index %s missing: rebuilding from the database", self.index_path.name)
        except IndexCorrupt as exc:
            log.warning("index corrupt (%s): rebuilding from the database", exc)
        return FaissIndex(128, self.settings.index_factory or "Flat", self.index_path)

    def _face_rows(self) -> list[tuple[int, int]]:
        with self.db.sessions() as session:
            rows = session.execute(
                select(Face.id, Face.person_id).where(Face.model_id == self.model_id, Face.person_id.is_not(None))
            ).all()
        return [(int(a), int(b or 0)) for a, b in rows]

    def _sync_index(self, index: FaissIndex) -> None:
        rows = self._face_rows()
        self._person_of = dict(rows)
        db_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        held = index.ids()
        missing = np.setdiff1d(db_ids, held)
        extra = np.setdiff1d(held, db_ids)
        if len(extra):
            index.remove(extra)
        if len(missing):
            for chunk in np.array_split(missing, max(1, len(missing) // 20000)):
                index.add(chunk, self._vectors(chunk))
        if len(missing) or len(extra):
            log.warning(
                "index brought in line with the database: %d face(s) added, %d removed", len(missing), len(extra)
            )
            index.save()
        elif not self.index_path.exists():
            index.save()

    def _vectors(self, face_ids: np.ndarray) -> np.ndarray:
        with self.db.sessions() as session:
            rows = dict(session.execute(select(Face.id, Face.embedding).where(Face.id.in_(face_ids.tolist()))).all())
        return np.vstack([np.frombuffer(rows[int(i)], dtype=np.float32) for i in face_ids])

    def rebuild_index(self) -> int:
        """Rebuild the index from the database; return how many faces it holds."""
        with self._lock:
            self.index_path.unlink(missing_ok=True)
            self._index = None
            self._version = -1
            return len(self.index())

    # -- enrollment -------------------------------------------------------------------------
    def enroll(
        self, items: list[EnrollItem], *, progress: ProgressFn | None = None, workers: int | None = None
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
        existing = self._enrolled_pairs()
        for item in items:
            for path in item.images:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    outcome.errors.append({"file": str(path), "error": f"cannot read ({exc.strerror})"})
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
        )
        try:
            for (item, path, data, digest), result in zip(todo, results, strict=True):
                done += 1
                error = self._enroll_one(item, path, data, digest, result, outcome)
                if error:
                    outcome.errors.append({"file": str(path), "person": item.external_id, "error": error})
                if progress:
                    progress(done, total, len(outcome.errors))
        finally:
            self._save_index()
        return outcome

    def _enrolled_pairs(self) -> set[tuple[str, str]]:
        with self.db.sessions() as session:
            rows = session.execute(select(Person.external_id, Image.sha256).join(Image, Image.person_id == Person.id))
            return {(a, b) for a, b in rows}

    def _enroll_one(
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
                )
                session.add(person)
                session.flush()
                outcome.persons_created += 1
            face_row = self._add_image(session, person, rel, path.name, digest, width, height, face)
            self.db.bump_gallery_version(session)
        outcome.images_enrolled += 1
        with self._lock:
            if self._index is not None:
                self._index.add(np.array([face_row.id]), face.embedding[None, :])
                self._person_of[face_row.id] = person.id
                self._version = self.db.gallery_version()
        return None

    @staticmethod
    def _add_image(
        session: Any, person: Person, rel: str, name: str, digest: str, width: int, height: int, face: DetectedFace
    ) -> Face:
        image = Image(
            person_id=person.id, sha256=digest, media_path=rel, original_name=name[:500], width=width, height=height
        )
        session.add(image)
        session.flush()
        row = Face(
            image_id=image.id,
            person_id=person.id,
            box=list(face.box),
            landmarks=[list(p) for p in face.landmarks],
            detector=face.detector,
            quality=face.quality.score,
            quality_detail=face.quality.as_dict(),
            model_id=face.model_id,
            embedding=np.asarray(face.embedding, dtype=np.float32).tobytes(),
        )
        session.add(row)
        session.flush()
        return row

    def _save_index(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.save()

    # -- search -----------------------------------------------------------------------------
    def gallery_size(self) -> int:
        """Return the number of persons with at least one template of the current model."""
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
        index = self.index()
        n_persons = len(set(self._person_of.values()))
        policy = self.settings.policy_fpir
        threshold = self.calibration.threshold(policy, max(1, n_persons))
        out_faces = []
        if faces and len(index):
            k = min(len(index), max(4 * top_k, top_k + 20))
            scores, ids = index.search(np.vstack([f.embedding for f in faces]), k)
        for number, face in enumerate(faces):
            hits = rank_persons(scores[number], ids[number], self._person_of, top_k) if len(index) else []
            out_faces.append(self._face_result(face, hits, threshold, n_persons))
        return {
            "gallery": {"persons": n_persons, "model_id": self.model_id},
            "policy": {
                "target_fpir": policy,
                "threshold": round(threshold, 4),
                "min_quality": self.settings.min_quality,
                "explanation": (
                    f"a candidate is a match when its score is at least {threshold:.3f}: at that score, "
                    f"a search of this gallery of {n_persons} persons for someone not in it returns a "
                    f"candidate this strong {policy:.2%} of the time"
                ),
            },
            "faces": out_faces,
        }

    def _face_result(self, face: DetectedFace, hits: list[Any], threshold: float, n_persons: int) -> dict[str, Any]:
        persons = self._persons({h.person_id for h in hits})
        quality_ok = face.quality.score >= self.settings.min_quality
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            person = persons[hit.person_id]
            fmr = self.calibration.fmr(hit.score)
            fpir = self.calibration.fpir(hit.score, max(1, n_persons))
            above = hit.score >= threshold
            is_match = above and quality_ok and rank == 1
            if not above:
                reason = f"score {hit.score:.3f} below the threshold {threshold:.3f}"
            elif not quality_ok:
                reason = f"probe quality {face.quality.score:.0f} below the minimum {self.settings.min_quality:.0f}"
            elif rank > 1:
                reason = "above the threshold but not the best candidate"
            else:
                reason = f"score {hit.score:.3f} at or above the threshold {threshold:.3f}"
            candidates.append(
                {
                    "rank": rank,
                    "person": person,
                    "face_id": hit.face_id,
                    "score": round(hit.score, 4),
                    "fmr": fmr,
                    "fpir": fpir,
                    "fpir_extrapolated": self.calibration.extrapolated(hit.score),
                    "match": is_match,
                    "reason": reason,
                }
            )
        match = candidates[0]["person"]["external_id"] if candidates and candidates[0]["match"] else None
        return {**face.as_dict(), "quality_ok": quality_ok, "candidates": candidates, "match": match}

    def _persons(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        with self.db.sessions() as session:
            rows = session.execute(select(Person).where(Person.id.in_(ids))).scalars()
            return {p.id: {"id": p.id, "external_id": p.external_id, "name": p.name} for p in rows}

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
        score = float(np.dot(faces[0].embedding, faces[1].embedding))
        fmr = self.calibration.fmr(score)
        threshold = self.calibration.threshold(self.settings.verify_fmr, 1)
        return {
            "score": round(score, 4),
            "fmr": fmr,
            "threshold": round(threshold, 4),
            "target_fmr": self.settings.verify_fmr,
            "match": score >= threshold,
            "faces": [f.as_dict() for f in faces],
        }

    # -- persons ----------------------------------------------------------------------------
    def list_persons(self, *, offset: int = 0, limit: int = 100, query: str | None = None) -> list[dict[str, Any]]:
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
        with self.db.session() as session:
            person = session.execute(select(Person).where(Person.external_id == external_id)).scalar()
            if person is None:
                raise NotFoundError(f"no person with id {external_id!r}")
            face_ids = [f.id for img in person.images for f in img.faces]
            media = [img.media_path for img in person.images]
            session.delete(person)
            self.db.bump_gallery_version(session)
        with self._lock:
            if self._index is not None:
                self._index.remove(np.array(face_ids, dtype=np.int64))
                for fid in face_ids:
                    self._person_of.pop(fid, None)
                self._index.save()
                self._version = self.db.gallery_version()
        with self.db.sessions() as session:
            still_used = set(session.execute(select(Image.media_path).where(Image.media_path.in_(media))).scalars())
        removed = sum(self.media.delete(rel) for rel in media if rel not in still_used)
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
        self._save_index()
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
    }


def _image_size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return img.size[1], img.size[0]
    except Exception as exc:  # decoded fine in the worker; be defensive anyway
        raise ImageError(str(exc)) from None
