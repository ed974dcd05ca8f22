"""Persons of the gallery and their reference images: create, list, show, update, erase, export.

Bulk imports (a manifest with many photos) run as background jobs: see ``POST /jobs/import``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from facetrace.api.schemas import EnrollResult, Page, PersonDetail, PersonErasure, PersonListItem, file_response
from facetrace.errors import ConflictError, NotFoundError
from facetrace.gallery import EnrollOutcome, ImageInput
from facetrace.gallery.sources import EnrollItem
from facetrace.http.deps import ServiceDep, read_image_upload
from facetrace.http.roles import GalleryReader, Intake
from facetrace.store.media import sha256_bytes
from facetrace.store.models import Image, Person
from facetrace.usecases.actors import audited
from facetrace.usecases.errors import InvalidRequest
from facetrace.usecases.service import Service
from facetrace.workflow.erasure import Eraser

router = APIRouter(prefix="/persons", tags=["persons"])
MAX_IMAGES_PER_REQUEST = 20
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp"}
MEDIA_TYPES.update({".tif": "image/tiff", ".gif": "image/gif", ".jpeg": "image/jpeg", ".tiff": "image/tiff"})


class PersonUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    metadata: dict[str, Any] | None = None
    source: str | None = Field(default=None, min_length=1, max_length=300)
    legal_basis: str | None = Field(default=None, min_length=1, max_length=300)
    collected_at: datetime | None = None
    retain_until: datetime | None = Field(default=None, description="Erase after this moment; null: no limit.")


def _person_id(service: Service, external_id: str) -> int:
    with service.db.sessions() as session:
        pid = session.execute(select(Person.id).where(Person.external_id == external_id)).scalar()
    if pid is None:
        raise NotFoundError(f"no person with id {external_id!r}")
    return int(pid)


def _parse_metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"metadata is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object")
    return value


def _parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"collected_at {text!r} is not an ISO date") from None


def _parse_retain_until(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"retain_until {text!r} is not an ISO date or date-time") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _enroll_uploads(service: Service, item: EnrollItem, uploads: list[UploadFile]) -> tuple[EnrollOutcome, list[str]]:
    """Enroll uploaded images for ``item``; return the outcome and the sha256 of each upload.

    Raises:
        FacetraceError: too many files, or an upload that is too large, empty or not an image.
        NoFaceError: no image could be enrolled (nothing is stored then).
    """
    if not uploads:
        raise InvalidRequest("send at least one image")
    if len(uploads) > MAX_IMAGES_PER_REQUEST:
        raise InvalidRequest(f"at most {MAX_IMAGES_PER_REQUEST} images per request; use an import job for more")
    limit = service.settings.max_upload_bytes
    files = [read_image_upload(u, limit) for u in uploads]
    outcome = service.gallery.enroll_images(item, [ImageInput(name, data) for data, name in files])
    for error in outcome.errors:
        error["file"] = Path(error["file"]).name
    if (refusal := outcome.refusal()) is not None:
        raise refusal  # nothing stored: the images' own error (413 for a bomb, 422 for no face...)
    return outcome, [sha256_bytes(data) for data, _ in files]


@router.get("", response_model=Page[PersonListItem])
def list_persons(
    *,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
    q: str | None = Query(
        None,
        max_length=200,
        description="A name in any script or spelling, or part of the name or external id: exact names first, "
        "then containing, then close spellings.",
    ),
    source: str | None = Query(None, max_length=300),
    legal_basis: str | None = Query(None, max_length=300),
    actor: GalleryReader,
    service: ServiceDep,
) -> Any:
    """List persons by external id, a page at a time; ``next_offset`` is null on the last page."""
    with audited(service, actor, "person.list", query=q, source=source, legal_basis=legal_basis) as note:
        rows = service.gallery.list_persons(
            offset=offset, limit=limit + 1, query=q, source=source, legal_basis=legal_basis
        )
        items = rows[:limit]
        note.records = [f"person:{p['id']}" for p in items]
        note.detail["count"] = len(items)
    return {
        "items": items,
        "offset": offset,
        "limit": limit,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


@router.post("", status_code=201, response_model=EnrollResult)
def create_person(
    *,
    external_id: str = Form(min_length=1, max_length=200),
    name: str = Form(min_length=1, max_length=300),
    source: str = Form(min_length=1, max_length=300, description="Provenance: where the photos come from."),
    legal_basis: str = Form(min_length=1, max_length=300, description="The legal basis for holding them."),
    collected_at: str | None = Form(None, description="ISO date the photos were collected."),
    metadata: str | None = Form(None, description="A JSON object of further facts."),
    retain_until: str | None = Form(None, description="ISO date or date-time after which the person is erased."),
    images: list[UploadFile] = File(description="Reference photos (largest face of each is enrolled)."),
    actor: Intake,
    service: ServiceDep,
) -> Any:
    """Create a person with reference photos (multipart). The person and their first image are
    committed together: nobody ever sees a person without a face. 409 if the id exists."""
    external_id = external_id.strip()
    with audited(service, actor, "person.enroll", external_id=external_id) as note:
        if not external_id:
            raise InvalidRequest("external_id must not be blank")
        item = EnrollItem(
            external_id=external_id,
            name=name.strip(),
            images=[],
            source=source.strip(),
            legal_basis=legal_basis.strip(),
            attributes=_parse_metadata(metadata),
            collected_at=_parse_date(collected_at),
            retain_until=_parse_retain_until(retain_until),
        )
        try:
            _person_id(service, external_id)
        except NotFoundError:
            pass
        else:
            raise ConflictError(f"person {external_id!r} already exists; add images with POST /persons/ID/images")
        outcome, digests = _enroll_uploads(service, item, images)
        person = service.gallery.get_person(external_id)
        note.records = [f"person:{person['id']}"]
        note.detail.update(images=digests, **{k: v for k, v in outcome.as_dict().items() if k != "errors"})
    return {"person": person, "enrolled": outcome.as_dict()}


@router.get("/{external_id}", response_model=PersonDetail)
def show_person(external_id: str, actor: GalleryReader, service: ServiceDep) -> Any:
    """Show one person with their images and faces."""
    with audited(service, actor, "person.view", external_id=external_id) as note:
        person = service.gallery.get_person(external_id)
        note.records = [f"person:{person['id']}"]
    return person


@router.post("/{external_id}/images", status_code=201, response_model=EnrollResult)
def add_images(
    external_id: str,
    *,
    images: list[UploadFile] = File(description="More reference photos."),
    actor: Intake,
    service: ServiceDep,
) -> Any:
    """Add reference photos to an existing person (already enrolled photos are skipped)."""
    with audited(service, actor, "person.enroll", external_id=external_id) as note:
        current = service.gallery.get_person(external_id)
        note.records = [f"person:{current['id']}"]
        item = EnrollItem(
            external_id=external_id,
            name=current["name"],
            images=[],
            source=current["source"],
            legal_basis=current["legal_basis"],
        )
        outcome, digests = _enroll_uploads(service, item, images)
        note.detail.update(images=digests, **{k: v for k, v in outcome.as_dict().items() if k != "errors"})
    return {"person": service.gallery.get_person(external_id), "enrolled": outcome.as_dict()}


@router.patch("/{external_id}", response_model=PersonDetail)
def update_person(external_id: str, body: PersonUpdate, actor: Intake, service: ServiceDep) -> Any:
    """Change a person's name, metadata, provenance or collection date."""
    changed = sorted(body.model_dump(exclude_unset=True))
    with (
        audited(service, actor, "person.update", external_id=external_id, fields=changed) as note,
        service.db.session() as session,
    ):
        person = session.execute(select(Person).where(Person.external_id == external_id)).scalar()
        if person is None:
            raise NotFoundError(f"no person with id {external_id!r}")
        note.records = [f"person:{person.id}"]
        for field in changed:
            value = getattr(body, field)
            if value is None and field not in ("collected_at", "retain_until"):
                raise InvalidRequest(f"{field} cannot be null")
            if field == "retain_until" and value is not None:
                value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            setattr(person, "attributes" if field == "metadata" else field, value)
    return service.gallery.get_person(external_id)


@router.delete("/{external_id}", response_model=PersonErasure)
def erase_person(external_id: str, actor: Intake, service: ServiceDep) -> Any:
    """Erase a person: database rows, index entries, media files, and mentions in stored job results
    (as ``facetrace person delete``; one audit event). 409 ``erasure_blocked`` while the report that owns
    the person has a lead under review or a pending notification: erase the report instead, or force it
    with ``POST /reports/REF/erase``."""
    return Eraser(service.gallery).erase_person(
        external_id, actor=actor.name, reason="erasure request", source=actor.source
    )


@router.get(
    "/{external_id}/images/{image_id}/file",
    response_class=Response,
    responses=file_response([*sorted(set(MEDIA_TYPES.values())), "application/octet-stream"], "The stored photo."),
)
def export_image(external_id: str, image_id: int, actor: GalleryReader, service: ServiceDep) -> Response:
    """Download one stored reference photo (the original file, decrypted when stored encrypted)."""
    with audited(service, actor, "image.export", external_id=external_id) as note:
        with service.db.sessions() as session:
            row = session.execute(
                select(Image.media_path, Image.original_name, Person.id)
                .join(Person, Person.id == Image.person_id)
                .where(Image.id == image_id, Person.external_id == external_id)
            ).first()
        if row is None:
            raise NotFoundError(f"person {external_id!r} has no image {image_id}")
        media_path, original_name, person_id = row
        note.records = [f"person:{person_id}", f"image:{image_id}"]
        data = service.gallery.media.read(media_path)
    return Response(
        data,
        media_type=MEDIA_TYPES.get(Path(media_path).suffix.lower(), "application/octet-stream"),
        headers={
            "Content-Disposition": _attachment(original_name),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _attachment(filename: str) -> str:
    """Return a Content-Disposition header for ``filename`` (as Starlette's FileResponse writes it)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'
