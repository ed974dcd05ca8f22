"""The pages that reports and cases share: the list, the intake form and its submission, the
record's page and adding photos. A :class:`RecordPages` says how one kind's pages differ (its form
fields, its page); :func:`install` adds the shared routes for it, under ``/reports`` or ``/cases``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from facetrace.errors import FacetraceError
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Reader, Recorder
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import RecordKind, workflow_for
from facetrace.usecases.service import Service
from facetrace.web.deps import PAGE_SIZE, FormDep, page_offset, quote_ref, uploads_of
from facetrace.web.photos import check_uploads
from facetrace.web.render import page, redirect

RecordPage = Callable[..., Response]  # (request, actor, service, reference, *, status=, error=, problems=)


@dataclass(frozen=True)
class RecordPages:
    """How the pages of one kind of record differ; the routes themselves are shared."""

    kind: RecordKind
    statuses: tuple[str, ...]
    searchable: bool  # the list filters by name (across scripts and spellings) or reference
    read_form: Callable[[FormData | None], dict[str, Any]]  # the intake form's values (None: blank)
    fields: Callable[[dict[str, Any]], dict[str, Any]]  # the form's values as the workflow takes them
    show: RecordPage
    form_context: dict[str, Any] = field(default_factory=dict)  # more for the intake form's template

    @property
    def title(self) -> str:
        """The list's title: ``Reports`` or ``Cases``."""
        return self.kind.plural.capitalize()


def _list_page(pages: RecordPages, request: Request, actor: Actor, service: Service) -> Response:
    kind = pages.kind
    context: dict[str, Any] = {"status": request.query_params.get("status", "")}
    query = None
    if pages.searchable:
        context["q"] = request.query_params.get("q", "").strip()[:200]
        query = context["q"] or None
    offset = page_offset(request)
    rows = kind.list_records(
        workflow_for(service, actor),
        actor,
        status=context["status"] or None,
        query=query,
        offset=offset,
        limit=PAGE_SIZE + 1,
    )
    return page(
        request,
        actor,
        f"{kind.plural}.html",
        title=pages.title,
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        statuses=pages.statuses,
        **context,
    )


def _new_form(
    pages: RecordPages,
    request: Request,
    actor: Actor,
    values: dict[str, Any],
    *,
    status: int = 200,
    error: str = "",
    problems: list[str] | None = None,
) -> Response:
    return page(
        request,
        actor,
        f"{pages.kind.name}_new.html",
        http_status=status,
        title=f"New {pages.kind.name}",
        form=values,
        error=error,
        problems=problems or [],
        **pages.form_context,
    )


def _create(pages: RecordPages, request: Request, form: FormData, actor: Actor, service: Service) -> Response:
    kind = pages.kind
    values = pages.read_form(form)
    photos, problems = check_uploads(service, uploads_of(form, "photos"), kind.name)
    if problems:
        return _new_form(pages, request, actor, values, status=422, problems=problems)
    try:
        result = kind.create(workflow_for(service, actor), actor, **pages.fields(values), photos=photos)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return _new_form(pages, request, actor, values, status=exc.status, error=exc.message)
    return redirect(f"/{kind.plural}/{quote_ref(result[kind.name]['reference'])}", f"{kind.name}_created")


def _add_photos(
    pages: RecordPages, request: Request, actor: Actor, service: Service, reference: str, form: FormData
) -> Response:
    """Check the uploaded photos, add them to the record, and show its page again (with the
    reasons on refusal) or redirect to it."""
    kind = pages.kind
    uploads = uploads_of(form, "photos")
    photos, problems = check_uploads(service, uploads, kind.name)
    if problems or not uploads:
        return pages.show(
            request, actor, service, reference, status=422, problems=problems, error="" if uploads else "Choose photos."
        )
    try:
        result = kind.add_photos(workflow_for(service, actor), actor, reference, photos)
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return pages.show(request, actor, service, reference, status=exc.status, error=exc.message)
    return redirect(f"/{kind.plural}/{quote_ref(result[kind.name]['reference'])}", "photos_added")


def install(router: APIRouter, pages: RecordPages) -> None:
    """Add the shared routes of one kind of record to ``router``: the list, the intake form and
    its submission (all photos checked first), the record's page, and adding photos."""
    plural = pages.kind.plural

    def list_records(request: Request, actor: Reader, service: ServiceDep) -> Response:
        """The records, newest first, filtered by status, and by name or reference (ranked by name)."""
        return _list_page(pages, request, actor, service)

    def new_record_form(request: Request, actor: Recorder) -> Response:
        """The intake form."""
        return _new_form(pages, request, actor, pages.read_form(None))

    def create_record(request: Request, form: FormDep, actor: Recorder, service: ServiceDep) -> Response:
        """Register a record with its photos (all checked first), then match it."""
        return _create(pages, request, form, actor, service)

    def show_record(reference: str, request: Request, actor: Reader, service: ServiceDep) -> Response:
        """The record: photos with faces boxed, face crops and quality, leads, history."""
        return pages.show(request, actor, service, reference)

    def add_record_photos(
        reference: str, request: Request, form: FormDep, actor: Recorder, service: ServiceDep
    ) -> Response:
        """Add photos (all checked first), then match the record again."""
        return _add_photos(pages, request, actor, service, reference, form)

    router.add_api_route(f"/{plural}", list_records, methods=["GET"])
    router.add_api_route(f"/{plural}/new", new_record_form, methods=["GET"])
    router.add_api_route(f"/{plural}/new", create_record, methods=["POST"])
    router.add_api_route(f"/{plural}/{{reference}}", show_record, methods=["GET"])
    router.add_api_route(f"/{plural}/{{reference}}/photos", add_record_photos, methods=["POST"])
