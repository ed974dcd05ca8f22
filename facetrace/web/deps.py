"""What every web page module shares: its router (errors become HTML pages), the parsed form as
a dependency, form field readers, paging, and the audit event of a page view."""

from __future__ import annotations

from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, UploadFile
from starlette.datastructures import FormData

from facetrace.store import settings_store
from facetrace.usecases.actors import Actor
from facetrace.usecases.service import Service
from facetrace.web import services
from facetrace.web.render import WebRoute

PAGE_SIZE = 50
LANGUAGES = [("en", "English"), ("uk", "Ukrainian"), ("ru", "Russian")]
LANGUAGE_NAMES = {"en": "English", "uk": "Ukrainian", "ru": "Russian", "pl": "Polish", "de": "German", "fr": "French"}
NO_STORE = {"Cache-Control": "no-store"}


def web_router() -> APIRouter:
    """Return a router for web pages: HTML errors (:class:`WebRoute`), not in the API's schema."""
    return APIRouter(route_class=WebRoute, include_in_schema=False)


async def form_data(request: Request) -> FormData:
    """The parsed form of a POST (parsed once: the CSRF check reads the same object)."""
    return await request.form()


FormDep = Annotated[FormData, Depends(form_data)]


def text(form: FormData, key: str) -> str:
    """Return a form field's text, stripped ("" when absent or a file)."""
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, key: str) -> list[str]:
    """Return every value of a repeated form field, stripped."""
    return [v.strip() if isinstance(v, str) else "" for v in form.getlist(key)]


def uploads_of(form: FormData, key: str) -> list[UploadFile]:
    """Return the files of a file field, without the empty part a browser sends for no file."""
    out = []
    for value in form.getlist(key):
        if isinstance(value, str):
            continue
        if not value.filename and not value.size:
            continue
        out.append(cast(UploadFile, value))  # what FastAPI's File() would hand over: the same object
    return out


def page_offset(request: Request) -> int:
    """Return the ``offset`` query parameter of a paged list (0 when absent or not a number)."""
    try:
        return max(0, min(int(request.query_params.get("offset", "0")), 10_000_000))
    except ValueError:
        return 0


def quote_ref(reference: str) -> str:
    """Return a record reference quoted for a path segment."""
    return quote(reference, safe="")


def offered_languages(service: Service) -> list[tuple[str, str]]:
    """Return the languages offered for a contact (code, name): the ``notification_languages`` setting in force."""
    codes = settings_store.effective(service.db, service.settings).notification_languages.split(",")
    return [(c.strip(), LANGUAGE_NAMES.get(c.strip(), c.strip())) for c in codes if c.strip()] or LANGUAGES


def view(service: Service, actor: Actor, action: str, records: list[str], **detail: Any) -> None:
    """Append the audit event of a read that no workflow call records: a photo, a face crop, a case file export."""
    services.audit_view(service.db, actor.user, actor.source, action, records, **detail)
