"""Photos on the intake forms and record pages: the faces of an uploaded photo with their quality
and problems in words, the checks before anything is stored, and the photos of a record as its
page shows them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import UploadFile

from facetrace.errors import FacetraceError
from facetrace.gallery.quality_bands import quality_band
from facetrace.http.deps import read_image_upload
from facetrace.usecases.actors import Actor
from facetrace.usecases.service import Service
from facetrace.vision.decode import image_width_height
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.web import services
from facetrace.workflow import PhotoInput
from facetrace.workflow.common import RECORD_ROLES

MAX_PHOTOS = 20


def face_feedback(face: Any, min_quality: float) -> dict[str, Any]:
    """Return one detected face as the intake and search forms show it: box, quality, whether usable,
    problems, and its quality band (label, measured error rates and advice in plain words)."""
    detail = face.quality.as_dict()
    return {
        "box": list(face.box),
        "quality": round(face.quality.score, 1),
        "quality_ok": face.quality.score >= min_quality,
        "problems": services.quality_problems(detail, face.quality.score, min_quality),
        "quality_band": quality_band(face.quality.score, min_quality=min_quality).as_dict(),
    }


def photo_feedback(service: Service, data: bytes, name: str, kind: str) -> dict[str, Any]:
    """Detect the faces of one uploaded photo; return what the intake form shows: each face with
    its quality and problems, whether the photo is usable for ``kind`` (report, case or search)
    and, when not, why.

    Raises:
        ImageError: not a usable image (over the limits, corrupt).
    """
    return feedback_on(service, data, name, kind, service.gallery.detect(data, name))


def feedback_on(service: Service, data: bytes, name: str, kind: str, faces: Sequence[DetectedFace]) -> dict[str, Any]:
    """Return :func:`photo_feedback`'s answer for a photo whose ``faces`` are already detected.

    Raises:
        ImageError: the image's header cannot be read.
    """
    width, height = image_width_height(data, oriented=True)
    min_quality = service.settings.min_quality
    out = [face_feedback(f, min_quality) for f in faces]
    reason = None
    if not faces:
        reason = "no face found"
    elif kind == "report" and not out[0]["quality_ok"]:
        # Reports are the gallery: a face too poor to compare would only add false leads.
        why = "; ".join(out[0]["problems"][1:]) or "poor image"
        reason = f"face quality {out[0]['quality']:.0f} is below the minimum {min_quality:.0f} ({why})"
    note = None
    if len(faces) > 1 and kind in ("report", "case"):
        note = f"{len(faces)} faces found: only the largest (number 1) is used"
    return {
        "name": name,
        "width": width,
        "height": height,
        "faces": out,
        "usable": reason is None,
        "reason": reason,
        "note": note,
        "min_quality": min_quality,
    }


def check_uploads(service: Service, uploads: list[UploadFile], kind: str) -> tuple[list[PhotoInput], list[str]]:
    """Read and check uploaded photos; return the usable photos and, for the others, the reason
    each is refused (the caller stores nothing while any is refused)."""

    def usable_face(data: bytes, name: str) -> tuple[PhotoInput, str | None]:
        faces = tuple(service.gallery.detect(data, name))
        feedback = feedback_on(service, data, name, kind, faces)
        # Analysed once: the workflow keeps these faces.
        return PhotoInput(name, data, faces), None if feedback["usable"] else feedback["reason"]

    return _checked_uploads(service, uploads, usable_face)


def _checked_uploads(
    service: Service, uploads: list[UploadFile], check: Callable[[bytes, str], tuple[PhotoInput, str | None]]
) -> tuple[list[PhotoInput], list[str]]:
    """Read each upload within the limits of every photo (count, size, format), then ``check`` it;
    return the usable photos and the reason each other one is refused."""
    if len(uploads) > MAX_PHOTOS:
        return [], [f"at most {MAX_PHOTOS} photos at a time"]
    photos, problems = [], []
    for upload in uploads:
        try:
            data, name = read_image_upload(upload, service.settings.max_upload_bytes)
            photo, problem = check(data, upload.filename or name)
        except FacetraceError as exc:
            problems.append(f"{upload.filename or 'photo'}: {exc.message}")
            continue
        if problem is not None:
            problems.append(f"{photo.name}: {problem}")
            continue
        photos.append(photo)
    return photos, problems


def photos_for_page(service: Service, photos: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict]]:
    """Return the record's photos with their displayed sizes, and all their faces as cards."""
    paths = services.image_paths(service.db, [p["image_id"] for p in photos])
    details = services.face_details(service.db, [f["face_id"] for p in photos for f in p["faces"]])
    min_quality = service.settings.min_quality
    out, faces = [], []
    for number, photo in enumerate(photos, start=1):
        width, height = photo["width"], photo["height"]
        path = paths.get(photo["image_id"])
        if path:
            with contextlib.suppress(FacetraceError, OSError):  # else the stored size will do
                width, height = image_width_height(service.gallery.media.read(path), oriented=True)
        out.append({**photo, "width": width, "height": height})
        for face in photo["faces"]:
            detail = details.get(face["face_id"], {}).get("detail", {})
            faces.append(
                {
                    **face,
                    "photo_number": number,
                    "problems": services.quality_problems(detail, face["quality"], min_quality),
                }
            )
    return out, faces


def with_shown_status(leads: list[dict[str, Any]], reviewed: set[int]) -> list[dict[str, Any]]:
    """Add the status a user may see: a lead they have not reviewed shows no decision."""
    out = []
    for lead in leads:
        shown = lead["status"]
        if shown in ("under_review", "rejected") and lead["id"] not in reviewed:
            shown = "under_review"
        out.append({**lead, "shown_status": shown})
    return out


def record_page_context(
    service: Service, actor: Actor, photos: list[dict[str, Any]], leads: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return what a report's or case's page shows of its photos, faces and leads (blinded for this user)."""
    shown_photos, faces = photos_for_page(service, photos)
    reviewed = services.reviewed_leads(service.db, actor.user.id)
    return {
        "photos": shown_photos,
        "faces": faces,
        "leads": with_shown_status(leads, reviewed),
        "min_quality": service.settings.min_quality,
        "editable": any(actor.user.has_role(r) for r in RECORD_ROLES),
    }


def check_mark_uploads(service: Service, uploads: list[UploadFile]) -> tuple[list[PhotoInput], list[str]]:
    """Read and check the photos of a distinguishing mark (a tattoo, a scar): the same limits as
    every photo (size, format, a readable header), but no face is looked for; return the usable
    photos and, for the others, the reason each is refused (the caller stores nothing while any is)."""

    def readable(data: bytes, name: str) -> tuple[PhotoInput, str | None]:
        image_width_height(data, oriented=True)  # raises ImageError for an unreadable header
        return PhotoInput(name, data), None

    return _checked_uploads(service, uploads, readable)
