"""Reports and cases as the API and the web pages handle them alike: one :class:`RecordKind`
says which workflow calls serve a report and which a case, so that the outer layers write each
action once, for both kinds (list, show, create, update, erase, add photos, match).

The workflow itself checks roles and appends the audit events; the client address is their source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facetrace.usecases.actors import Actor
from facetrace.usecases.errors import InvalidRequest
from facetrace.usecases.service import Service
from facetrace.usecases.uploads import ImageSource
from facetrace.workflow import PhotoInput, Workflow

MAX_PHOTOS_PER_REQUEST = 20


def workflow_for(service: Service, actor: Actor) -> Workflow:
    """Return the workflow acting for ``actor`` (whose client address is the source of its audit events)."""
    return Workflow(service.gallery, source=actor.source)


def read_photos(service: Service, images: list[ImageSource]) -> list[PhotoInput]:
    """Read uploaded photos of a report or case.

    Raises:
        InvalidRequest: none, or more than :data:`MAX_PHOTOS_PER_REQUEST`.
        ImageError: an upload that is too large, empty or not an image.
    """
    if not images:
        raise InvalidRequest("send at least one photo")
    if len(images) > MAX_PHOTOS_PER_REQUEST:
        raise InvalidRequest(f"at most {MAX_PHOTOS_PER_REQUEST} photos per request")
    photos = []
    for image in images:
        data, name = image.read(service.settings.max_upload_bytes)
        photos.append(PhotoInput(name, data))
    return photos


@dataclass(frozen=True)
class RecordKind:
    """A kind of record of the workflow: ``report`` (a missing person) or ``case`` (a found person)."""

    name: str

    @property
    def plural(self) -> str:
        """The kind in its paths: ``reports`` or ``cases``."""
        return f"{self.name}s"

    def list_records(
        self, wf: Workflow, actor: Actor, *, status: str | None, query: str | None, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """Return the records, newest first; with ``query``, ranked by name across scripts and
        spellings (cases by the names of the reports their leads name) or found by reference."""
        if self.name == "report":
            return wf.reports.list_reports(actor.user, status=status, query=query, offset=offset, limit=limit)
        return wf.cases.list_cases(actor.user, status=status, query=query, offset=offset, limit=limit)

    def create(self, wf: Workflow, actor: Actor, **fields: Any) -> dict[str, Any]:
        """Register a record; return it (with its first matching). Raises the workflow's errors."""
        if self.name == "report":
            return wf.reports.create_report(actor.user, **fields)
        return wf.cases.create_case(actor.user, **fields)

    def show(self, wf: Workflow, actor: Actor, reference: str | int) -> dict[str, Any]:
        """Return one record with its photos, leads and identifications. Raises NotFoundError."""
        if self.name == "report":
            return wf.reports.get_report(actor.user, reference)
        return wf.cases.get_case(actor.user, reference)

    def update(self, wf: Workflow, actor: Actor, reference: str, **fields: Any) -> dict[str, Any]:
        """Change a record's fields (only those given), then match it again; return it."""
        if self.name == "report":
            return wf.reports.update_report(actor.user, reference, **fields)
        return wf.cases.update_case(actor.user, reference, **fields)

    def erase(self, wf: Workflow, actor: Actor, reference: str, *, reason: str, force: bool) -> dict[str, Any]:
        """Erase a record end to end; return what was erased. Raises ErasureBlocked unless ``force``."""
        if self.name == "report":
            return wf.erasure.erase_report(actor.user, reference, reason=reason, force=force)
        return wf.erasure.erase_case(actor.user, reference, reason=reason, force=force)

    def add_photos(self, wf: Workflow, actor: Actor, reference: str, photos: list[PhotoInput]) -> dict[str, Any]:
        """Add photos to a record, then match it again; return the record and the matching."""
        if self.name == "report":
            return wf.reports.add_report_photos(actor.user, reference, photos)
        return wf.cases.add_case_photos(actor.user, reference, photos)

    def match(self, wf: Workflow, actor: Actor, reference: str, *, widen: bool = False) -> dict[str, Any]:
        """Search a record again (idempotent); return the leads found. ``widen`` (cases only): search
        past the exclusions the case's facts give (an examiner's or reviewer's decision, audited).

        Raises:
            InvalidRequest: ``widen`` for a report.
        """
        if self.name == "report":
            if widen:
                raise InvalidRequest("widen: only a case's search can be widened")
            return wf.matching.match_report(actor.user, reference)
        return wf.matching.match_case(actor.user, reference, widen=widen)


REPORT = RecordKind("report")
CASE = RecordKind("case")
