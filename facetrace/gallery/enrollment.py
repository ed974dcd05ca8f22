"""Enrollment: storing analysed images and their faces, for enrolled persons and for cases.

Everything here works on encoded bytes (:class:`~facetrace.vision.decode.ImageInput`); files are read
at the edges. :meth:`Enroller.enroll` reads the files of a large import one by one, just before they
are analysed in worker processes; :meth:`Enroller.enroll_images` enrolls a few images already in
memory (uploads, a report's photos) and analyses them in this process.

Idempotent and resumable: an image already enrolled for the person (same sha256) is skipped, and
each image is committed on its own, so a rerun after an interruption finishes the job without
duplicates. One place writes an image (:func:`add_image_rows` after :meth:`Enroller.put_media`):
persons' reference photos and case photos alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facetrace.config import Settings
from facetrace.errors import FacetraceError, NoFaceError, PoorQualityError, disk_full_error
from facetrace.faults import fault_point
from facetrace.gallery.analysis import FaceModel
from facetrace.gallery.index_keeper import IndexKeeper
from facetrace.gallery.sources import EnrollItem
from facetrace.store.db import Database
from facetrace.store.media import MediaStore, sha256_bytes
from facetrace.store.models import Face, Image, Person
from facetrace.vision.decode import ImageInput, decode_image, image_width_height
from facetrace.vision.parallel import analyze_images
from facetrace.vision.pipeline import Face as DetectedFace

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, int], None]  # done, total, errors
Analysis = list[DetectedFace] | FacetraceError  # the faces of an image, largest first, or why it failed


class EnrollmentObserver(Protocol):
    """Told about every analysed image as it is stored (e.g. a server's metrics)."""

    def __call__(self, *, enrolled: int, skipped: int, failed: int) -> None: ...


@dataclass
class EnrollOutcome:
    """What one enrollment run did."""

    persons_created: int = 0
    images_enrolled: int = 0
    images_skipped: int = 0  # already enrolled (idempotent rerun)
    errors: list[dict[str, str]] = field(default_factory=list)
    refusals: list[FacetraceError] = field(default_factory=list, repr=False)  # why each image was refused

    def refuse(self, file: str, person: str, error: FacetraceError | str, *, name: str | None = None) -> None:
        """Record why ``file`` of ``person`` was not enrolled; ``name``: the image's own name, which the
        error's message may start with (said once, in ``file``)."""
        if isinstance(error, str):
            error = FacetraceError(error)
        message = error.message.removeprefix(f"{name}: ") if name else error.message
        self.errors.append({"file": file, "person": person, "error": message, "code": error.code})
        self.refusals.append(error)

    def refusal(self) -> FacetraceError | None:
        """Return the error that answers a request which stored nothing (no image enrolled, none already
        there), else None: the images' own error (e.g. ``image_too_large``) when they all failed alike,
        else a ``no_face`` error; its message gives every image's reason."""
        if self.images_enrolled or self.images_skipped or not self.refusals:
            return None
        reasons = "; ".join(f"{Path(e['file']).name}: {e['error']}" for e in self.errors)
        kinds = {type(e) for e in self.refusals}
        kind = kinds.pop() if len(kinds) == 1 else NoFaceError
        try:
            return kind(f"nothing was stored: {reasons}")
        except TypeError:  # an error that takes more than a message
            return self.refusals[0]

    def as_dict(self) -> dict[str, Any]:
        """Return the counts, the per-file errors and their number, JSON-ready."""
        return {
            "persons_created": self.persons_created,
            "images_enrolled": self.images_enrolled,
            "images_skipped": self.images_skipped,
            "errors": self.errors,
            "error_count": len(self.errors),
        }


@dataclass(frozen=True)
class StoredMedia:
    """An image file written to the media store, and its stored pixel size."""

    path: str  # relative to the media folder
    width: int
    height: int


@dataclass(frozen=True)
class StoredImage:
    """The records of an image stored with its face."""

    image_id: int
    face_id: int
    original_name: str


def add_image_rows(
    session: Session, *, person_id: int | None, media: StoredMedia, name: str, digest: str, face: DetectedFace
) -> tuple[Image, Face]:
    """Add the image record of ``media`` and the record of its ``face`` (``person_id`` None: a case's photo,
    never in the index) in ``session``; return both rows, flushed (their ids are set)."""
    image = Image(
        person_id=person_id,
        sha256=digest,
        media_path=media.path,
        original_name=name[:500],
        width=media.width,
        height=media.height,
    )
    session.add(image)
    session.flush()
    row = Face.from_detection(face, image_id=image.id, person_id=person_id)
    session.add(row)
    session.flush()
    return image, row


class Enroller:
    """Enrolls persons' images into the database, the media folder and the index."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        media: MediaStore,
        model: FaceModel,
        keeper: IndexKeeper,
        observer: EnrollmentObserver | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.media = media
        self.model = model
        self.keeper = keeper
        self.observer = observer

    # -- runs -------------------------------------------------------------------------------
    def enroll(
        self,
        items: list[EnrollItem],
        *,
        progress: ProgressFn | None = None,
        workers: int | None = None,
        nice: int = 0,
    ) -> EnrollOutcome:
        """Enroll the image files of each item, analysed in ``workers`` processes (default: the
        ``workers`` setting; ``nice`` > 0 lowers their priority); return what was done and the
        per-file errors. Each file is read once, shortly before it is analysed.

        Raises:
            FacetraceError: the disk filled up (what was committed stays enrolled; a rerun finishes).
        """
        outcome = EnrollOutcome()
        self.keeper.index()  # open and sync first, so new faces go straight into it
        total = sum(len(item.images) for item in items)
        existing = self.enrolled_pairs({item.external_id for item in items})
        done = 0

        def to_analyse() -> Iterator[tuple[tuple[EnrollItem, Path, str], ImageInput]]:
            nonlocal done
            for item in items:
                for path in item.images:
                    try:
                        image = ImageInput.read(path)
                    except OSError as exc:
                        outcome.refuse(str(path), item.external_id, f"cannot read ({exc.strerror})")
                        done += 1
                        continue
                    digest = sha256_bytes(image.data)
                    if (item.external_id, digest) in existing:
                        outcome.images_skipped += 1
                        done += 1
                        continue
                    existing.add((item.external_id, digest))
                    yield (item, path, digest), image
            if progress:
                progress(done, total, len(outcome.errors))

        results = analyze_images(
            to_analyse(),
            workers=self.settings.workers if workers is None else workers,
            largest_only=True,
            options=self.model.options,
            nice=nice,  # > 0 for a server's background import: searches keep the cores first
        )
        with self._saving_index(outcome):
            for (item, path, digest), image, result in results:
                done += 1
                error = self.enroll_analysed(item, image, digest, result, outcome)
                if error:
                    outcome.refuse(str(path), item.external_id, error, name=image.name)
                if progress:
                    progress(done, total, len(outcome.errors))
        return outcome

    def enroll_images(self, item: EnrollItem, images: list[ImageInput]) -> EnrollOutcome:
        """Enroll a few encoded images of ``item``'s person (``item.images`` is not read), analysed one by
        one in this process; return what was done, with per-image errors naming ``ImageInput.name``.

        Raises:
            FacetraceError: the disk filled up (what was committed stays enrolled; a rerun finishes).
        """
        outcome = EnrollOutcome()
        self.keeper.index()  # open and sync first, so new faces go straight into it
        existing = self.enrolled_pairs({item.external_id})
        with self._saving_index(outcome):
            for image in images:
                digest = sha256_bytes(image.data)
                if (item.external_id, digest) in existing:
                    outcome.images_skipped += 1
                    continue
                existing.add((item.external_id, digest))
                if image.faces is not None:
                    result: Analysis = list(image.faces[:1])
                else:
                    result = self.model.analyze_here(image.data, image.name, largest_only=True)
                error = self.enroll_analysed(item, image, digest, result, outcome)
                if error:
                    outcome.refuse(image.name, item.external_id, error, name=image.name)
        return outcome

    @contextmanager
    def _saving_index(self, outcome: EnrollOutcome) -> Iterator[None]:
        """Save the index when a run ends, however it ends; turn a full disk into one clear error."""
        full = None
        try:
            yield
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
            # disk_known_full: the error above already says the disk is full.
            self.keeper.save(disk_known_full=full is not None, soon=True)

    # -- one image --------------------------------------------------------------------------
    def enrolled_pairs(self, external_ids: set[str]) -> set[tuple[str, str]]:
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

    def enroll_analysed(
        self, item: EnrollItem, image: ImageInput, digest: str, result: Analysis, outcome: EnrollOutcome
    ) -> FacetraceError | None:
        """Store one analysed image of ``item``'s person (its largest face, ``result[0]``), creating the
        person if needed, and add the face to the index; count it in ``outcome``. Return why the image
        was not enrolled, or None.

        Raises:
            FacetraceError, OSError: the media file or the database could not be written (e.g. a full disk).
        """
        enrolled, skipped = outcome.images_enrolled, outcome.images_skipped
        error = self._enroll_image(item, image, digest, result, outcome)
        if self.observer is not None:
            # Counted image by image (not when a whole import ends), so that metrics follow a long import.
            self.observer(
                enrolled=outcome.images_enrolled - enrolled,
                skipped=outcome.images_skipped - skipped,
                failed=1 if error else 0,
            )
        return error

    def _enroll_image(
        self, item: EnrollItem, image: ImageInput, digest: str, result: Analysis, outcome: EnrollOutcome
    ) -> FacetraceError | None:
        if isinstance(result, FacetraceError):
            return result
        if not result:
            return NoFaceError("no face found")
        face = result[0]
        if face.quality.score < self.settings.min_quality:
            minimum = self.settings.min_quality
            return PoorQualityError(f"face quality {face.quality.score:.0f} is below the minimum {minimum:.0f}")
        media = self.put_media(image)
        fault_point("enroll.after_media")
        # Another worker (another process or machine on a shared database) may create the same person or
        # enroll the same image between our check and our commit: the unique constraints refuse the second
        # write, and we then take the other worker's person, or count the image as already enrolled.
        for attempt in range(3):
            try:
                created, face_id, person_id = self._commit_face(item, media, image.name, digest, face)
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
        # A search in another thread may already have synced this face in from the database.
        self.keeper.add_enrolled(face_id, face.embedding)
        return None

    def store_plain_image(self, session: Session, image: ImageInput) -> int:
        """Store an image that holds no face to search (a photo of a tattoo or a scar) in the caller's
        transaction: decoded in full first (a corrupt file or a decompression bomb is refused), then
        the media file and an image record with no person and no face. Return the image id.

        Raises:
            ImageError: the data is not a usable image.
        """
        decode_image(image.data, name=image.name)
        media = self.put_media(image)
        row = Image(
            person_id=None,
            sha256=sha256_bytes(image.data),
            media_path=media.path,
            original_name=image.name[:500],
            width=media.width,
            height=media.height,
        )
        session.add(row)
        session.flush()
        return row.id

    def put_media(self, image: ImageInput) -> StoredMedia:
        """Write ``image`` to the media folder; return where, with its stored pixel size.

        Raises:
            ImageError: its header cannot be read (nothing is written then).
        """
        width, height = image_width_height(image.data, oriented=False)
        _, rel = self.media.put(image.data, Path(image.name).suffix or ".jpg")
        return StoredMedia(rel, width, height)

    def _commit_face(
        self, item: EnrollItem, media: StoredMedia, name: str, digest: str, face: DetectedFace
    ) -> tuple[int, int, int]:
        """Store one image and its face (creating the person if needed) in one transaction; return
        (persons created, the face id, the person id). Raises IntegrityError when another worker won a race."""
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
            _, face_row = add_image_rows(session, person_id=person.id, media=media, name=name, digest=digest, face=face)
            self.db.bump_gallery_version(session)
            return created, face_row.id, person.id

    def _image_enrolled(self, external_id: str, digest: str) -> bool:
        with self.db.sessions() as session:
            found = session.execute(
                select(Image.id)
                .join(Person, Image.person_id == Person.id)
                .where(Person.external_id == external_id, Image.sha256 == digest)
            ).first()
        return found is not None

    # -- case photos ------------------------------------------------------------------------
    def store_case_image(
        self, session: Session, image: ImageInput, face: DetectedFace, *, digest: str | None = None
    ) -> StoredImage:
        """Store a case's photo and its analysed ``face`` in ``session`` (the caller's transaction, which links
        it to the case): the media file, the image record (no person) and the face record, which is never
        in the index. ``digest``: the image's sha256 when already known. Return the new records' ids.

        Raises:
            ImageError: the image's header cannot be read.
        """
        media = self.put_media(image)
        digest = digest or sha256_bytes(image.data)
        image_row, face_row = add_image_rows(
            session, person_id=None, media=media, name=image.name, digest=digest, face=face
        )
        return StoredImage(image_row.id, face_row.id, image_row.original_name)
