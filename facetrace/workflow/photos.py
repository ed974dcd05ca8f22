"""Photos of reports and cases, and the two places they meet the gallery.

A report's reference photos are enrolled into the report's own gallery person
(:func:`enroll_report_photos`). A case's photos go through the same face pipeline
(:func:`analyse_case_photos`) but are stored as images without a person
(:func:`store_case_photo`), so they never enter the gallery index.
"""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from facetrace.errors import FacetraceError, NoFaceError
from facetrace.gallery import EnrollItem, Gallery
from facetrace.store.media import sha256_bytes
from facetrace.store.models import Face, Image
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
    :class:`EnrollItem` but its images), through the gallery's own transactions.

    The photos are written to a temporary folder and enrolled from there; a server's gallery
    (one with ``enroll_uploads``) serialises the analysis in its threads.
    """
    with tempfile.TemporaryDirectory(prefix="facetrace-photos-") as tmp:
        paths = []
        for number, photo in enumerate(photos):
            folder = Path(tmp) / str(number)
            folder.mkdir()
            path = folder / safe_name(photo.name, number)
            path.write_bytes(photo.data)
            paths.append(path)
        item = EnrollItem(images=paths, **person)
        # Elsewhere a few photos are analysed here rather than in freshly started worker processes.
        enroll_uploads = getattr(gallery, "enroll_uploads", None)
        if callable(enroll_uploads):
            outcome = enroll_uploads([item])
        else:
            outcome = gallery.enroll([item], workers=1 if len(paths) <= 4 else None)
    names = {str(p): photo.name for p, photo in zip(paths, photos, strict=True)}
    errors = [{"file": names.get(e.get("file", ""), e.get("file", "")), "error": e["error"]} for e in outcome.errors]
    return ReportPhotosOutcome(outcome.images_enrolled, outcome.images_skipped, errors)


def analyse_case_photos(gallery: Gallery, photos: list[PhotoInput]) -> list[AnalysedPhoto]:
    """Detect the largest face of each photo. Raises ImageError / NoFaceError naming the file."""
    out = []
    for number, photo in enumerate(photos):
        name = photo.name or f"photo-{number}"
        faces = gallery.detect(photo.data, name)
        if not faces:
            raise NoFaceError(f"{name}: no face found; nothing was stored")
        out.append(AnalysedPhoto(photo, sha256_bytes(photo.data), faces[0]))
    return out


def store_case_photo(gallery: Gallery, session: Session, analysed: AnalysedPhoto, number: int) -> tuple[Image, Face]:
    """Store one analysed case photo: its media file, an image row without a person and its face
    row (in ``session``'s transaction); return the two rows, flushed."""
    photo = analysed.photo
    name = safe_name(photo.name, number)
    _, rel = gallery.media.put(photo.data, Path(name).suffix or ".jpg")
    height, width = image_size(photo.data)
    image = Image(
        person_id=None,
        sha256=analysed.sha256,
        media_path=rel,
        original_name=(photo.name or name)[:500],
        width=width,
        height=height,
    )
    session.add(image)
    session.flush()
    row = Face.from_detection(analysed.face, image_id=image.id, person_id=None)
    session.add(row)
    session.flush()
    return image, row


def image_size(data: bytes) -> tuple[int, int]:
    """Return (height, width) of an encoded image already decoded once by the pipeline.

    Raises:
        FacetraceError: the image cannot be read.
    """
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            return img.size[1], img.size[0]
    except Exception as exc:
        raise FacetraceError(f"cannot read the image size: {exc}") from None


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
