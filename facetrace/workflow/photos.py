"""Photos of reports and cases, and the two places they meet the gallery.

A report's reference photos are enrolled into the report's own gallery person
(:func:`enroll_report_photos`). A case's photos go through the same face pipeline
(:func:`analyse_case_photos`) but are stored as images without a person
(:func:`store_case_photo`), so they never enter the gallery index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from facetrace.errors import FacetraceError, NoFaceError
from facetrace.gallery import EnrollItem, Gallery, ImageInput, StoredImage
from facetrace.store.media import sha256_bytes
from facetrace.store.models import Image
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.workflow.common import InvalidInput, PhotoInput, iso

MAX_PHOTOS = 50


@dataclass(frozen=True)
class ReportPhotosOutcome:
    """What enrolling a report's photos did: images enrolled and skipped (already there), and
    per-file errors as ``{"file": the uploaded name, "error": why}``."""

    enrolled: int
    skipped: int
    errors: list[dict[str, Any]]
    refusal: FacetraceError | None = None  # when nothing was stored: why (see EnrollOutcome.refusal)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON view ``{"enrolled", "skipped", "errors"}``."""
        return {"enrolled": self.enrolled, "skipped": self.skipped, "errors": self.errors}


@dataclass(frozen=True)
class AnalysedPhoto:
    """A case photo checked by the face pipeline: the photo, its sha256 and its largest face."""

    photo: PhotoInput
    sha256: str
    face: DetectedFace


def check_photos(photos: list[PhotoInput] | None) -> list[PhotoInput]:
    """Return the photos as a list. Raises InvalidInput for too many photos or an empty file."""
    out = list(photos or [])
    if len(out) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos at a time")
    for photo in out:
        if not photo.data:
            raise InvalidInput(f"{photo.name or 'photo'}: empty file")
    return out


def safe_name(name: str, number: int) -> str:
    """Return a file name safe to store for an uploaded name (``photo-N.jpg`` when none is usable)."""
    base = Path(name or "").name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or f"photo-{number}"
    if "." not in base:
        base += ".jpg"
    return base[:200]


def enroll_report_photos(gallery: Gallery, person: dict[str, Any], photos: list[PhotoInput]) -> ReportPhotosOutcome:
    """Enroll ``photos`` into the gallery person described by ``person`` (the fields of an
    :class:`EnrollItem` but its images), through the gallery's own transactions; return what it did.

    Raises:
        FacetraceError: the disk filled up (what was committed stays enrolled).
    """
    named = [ImageInput(safe_name(photo.name, n), photo.data, photo.faces) for n, photo in enumerate(photos)]
    outcome = gallery.enroll_images(EnrollItem(images=[], **person), named)
    names = {image.name: photo.name for image, photo in zip(named, photos, strict=True)}
    errors = [{**e, "file": names.get(e.get("file", ""), e.get("file", ""))} for e in outcome.errors]
    for error in errors:
        error.pop("person", None)
    return ReportPhotosOutcome(outcome.images_enrolled, outcome.images_skipped, errors, outcome.refusal())


def analyse_case_photos(gallery: Gallery, photos: list[PhotoInput]) -> list[AnalysedPhoto]:
    """Detect the largest face of each photo. Raises ImageError / NoFaceError naming the file."""
    out = []
    for number, photo in enumerate(photos):
        name = photo.name or f"photo-{number}"
        faces = photo.faces if photo.faces is not None else gallery.detect(photo.data, name)
        if not faces:
            raise NoFaceError(f"{name}: no face found; nothing was stored")
        out.append(AnalysedPhoto(photo, sha256_bytes(photo.data), faces[0]))
    return out


def store_case_photo(gallery: Gallery, session: Session, analysed: AnalysedPhoto, number: int) -> StoredImage:
    """Store one analysed case photo (media file, image record without a person, face record) in
    ``session``'s transaction; return the new records' ids.

    Raises:
        ImageError: the image's header cannot be read.
    """
    image = ImageInput(safe_name(analysed.photo.name, number), analysed.photo.data)
    return gallery.store_case_image(session, image, analysed.face, digest=analysed.sha256)


def image_view(image: Image) -> dict[str, Any]:
    """Return the JSON view of a stored photo with its faces."""
    return {
        "image_id": image.id,
        "sha256": image.sha256,
        "name": image.original_name,
        "width": image.width,
        "height": image.height,
        "created_at": iso(image.created_at),
        "faces": [
            {"face_id": f.id, "box": f.box, "quality": round(f.quality, 1), "model_id": f.model_id} for f in image.faces
        ],
    }
