"""The web pages: server-rendered HTML over the same services, roles and audit trail as the API.

Every page checks the caller's roles on the server (the API's :func:`require_roles`, whose
refusals are audited), every form post carries the session's CSRF token (checked by the API's
:func:`authenticated`), and every photo or face crop is served by an authenticated route that
appends an audit event: biometric media never sit in a public folder. State changes go through
:class:`facetrace.workflow.Workflow` (or the API's own route functions for users, login and
search), which record their audit events themselves.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from typing import Any, cast

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from starlette.datastructures import FormData

from facetrace.api.deps import (
    Actor,
    authenticated,
    current_actor,
    get_service,
    read_image_upload,
    record_event,
    require_roles,
)
from facetrace.api.ratelimit import search_rate_limit
from facetrace.api.routers import auth as auth_routes
from facetrace.api.routers import search as search_routes
from facetrace.api.routers import users as user_routes
from facetrace.api.routers import video as video_routes
from facetrace.api.service import Service
from facetrace.errors import FacetraceError, NotFoundError
from facetrace.store.accounts import AuditEvent, BadCredentials, LoginThrottled, User, get_user
from facetrace.store.audit import list_events, verify_chain
from facetrace.store.media import sha256_bytes
from facetrace.store.workflow_models import (
    CASE_STATUSES,
    CONDITIONS,
    EVIDENCE_KINDS,
    REPORT_STATUSES,
)
from facetrace.vision.decode import image_width_height
from facetrace.web import images, services
from facetrace.web.pdf import build_case_pdf
from facetrace.web.render import STATIC_DIR, WebRoute, page, redirect, safe_next
from facetrace.workflow import PhotoInput, Workflow
from facetrace.workflow.common import (
    APPROVE_ROLES,
    READ_ROLES,
    RECORD_ROLES,
    REVIEW_ROLES,
    SEND_ROLES,
    WITHDRAW_ROLES,
    InvalidInput,
    parse_date,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)

readers = require_roles(*READ_ROLES)
recorders = require_roles(*RECORD_ROLES)
reviewers = require_roles(*REVIEW_ROLES)
approvers = require_roles(*APPROVE_ROLES)
withdrawers = require_roles(*WITHDRAW_ROLES)
senders = require_roles(*SEND_ROLES)
examiners = require_roles("examiner")
auditors = require_roles("auditor")
admins = require_roles("admin")

LOGIN_CSRF_COOKIE = "facetrace_login_csrf"
PAGE_SIZE = 50
MAX_PHOTOS = 20
LANGUAGES = [("en", "English"), ("uk", "Ukrainian"), ("ru", "Russian")]
NO_STORE = {"Cache-Control": "no-store"}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".png": "image/png"}


async def form_data(request: Request) -> FormData:
    """The parsed form of a POST (parsed once: the CSRF check reads the same object)."""
    return await request.form()


def _wf(service: Service, actor: Actor) -> Workflow:
    return Workflow(service.gallery, source=actor.source)


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _texts(form: FormData, key: str) -> list[str]:
    return [v.strip() if isinstance(v, str) else "" for v in form.getlist(key)]


def _uploads(form: FormData, key: str) -> list[UploadFile]:
    """Return the files of a file field, without the empty part a browser sends for no file."""
    out = []
    for value in form.getlist(key):
        if isinstance(value, str):
            continue
        if not value.filename and not value.size:
            continue
        out.append(cast(UploadFile, value))  # what FastAPI's File() would hand over: the same object
    return out


def _view(service: Service, actor: Actor, action: str, records: list[str], **detail: Any) -> None:
    services.audit_view(service.db, actor.user, actor.source, action, records, **detail)


# -- photos: checks and feedback ---------------------------------------------------------------
def _face_feedback(face: Any, min_quality: float) -> dict[str, Any]:
    detail = face.quality.as_dict()
    return {
        "box": list(face.box),
        "quality": round(face.quality.score, 1),
        "quality_ok": face.quality.score >= min_quality,
        "problems": services.quality_problems(detail, face.quality.score, min_quality),
    }


def photo_feedback(service: Service, data: bytes, name: str, kind: str) -> dict[str, Any]:
    """Detect the faces of one uploaded photo; return what the intake form shows: each face with
    its quality and problems, whether the photo is usable for ``kind`` (report, case or search)
    and, when not, why.

    Raises:
        ImageError: not a usable image (over the limits, corrupt).
    """
    width, height = image_width_height(data, oriented=True)
    faces = service.gallery.detect(data, name)
    min_quality = service.settings.min_quality
    out = [_face_feedback(f, min_quality) for f in faces]
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
    if len(uploads) > MAX_PHOTOS:
        return [], [f"at most {MAX_PHOTOS} photos at a time"]
    photos, problems = [], []
    for upload in uploads:
        try:
            data, name = read_image_upload(upload, service.settings.max_upload_bytes)
            feedback = photo_feedback(service, data, name, kind)
        except FacetraceError as exc:
            problems.append(f"{upload.filename or 'photo'}: {exc.message}")
            continue
        if not feedback["usable"]:
            problems.append(f"{upload.filename or name}: {feedback['reason']}")
            continue
        photos.append(PhotoInput(upload.filename or name, data))
    return photos, problems


@router.post("/intake/check-photo")
def check_photo(
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(recorders),
    service: Service = Depends(get_service),
) -> JSONResponse:
    """For the intake and search forms' script: the faces of one photo, their quality, and
    whether the photo is usable (nothing is stored). Audited as a detection."""
    kind = request.query_params.get("kind", "report")
    if kind not in ("report", "case", "search"):
        raise InvalidInput("kind must be report, case or search")
    uploads = _uploads(form, "photo")
    if len(uploads) != 1:
        raise InvalidInput("send one photo in the field 'photo'")
    data, name = read_image_upload(uploads[0], service.settings.max_upload_bytes)
    feedback = photo_feedback(service, data, uploads[0].filename or name, kind)
    record_event(
        service,
        actor,
        "detect",
        detail={"image_sha256": sha256_bytes(data), "faces": len(feedback["faces"]), "via": "web intake check"},
    )
    return JSONResponse(feedback, headers=NO_STORE)


def _photos_for_page(service: Service, photos: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict]]:
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


def _with_shown_status(leads: list[dict[str, Any]], reviewed: set[int]) -> list[dict[str, Any]]:
    """Add the status a user may see: a lead they have not reviewed shows no decision."""
    out = []
    for lead in leads:
        shown = lead["status"]
        if shown in ("under_review", "rejected") and lead["id"] not in reviewed:
            shown = "under_review"
        out.append({**lead, "shown_status": shown})
    return out


# -- sign in and out ---------------------------------------------------------------------------
def _login_page(request: Request, *, status: int = 200, error: str = "", username: str = "", next_path: str = "/"):
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        None,
        "login.html",
        http_status=status,
        title="Sign in",
        error=error,
        username=username,
        next=safe_next(next_path),
        login_csrf=token,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/login")
    return response


@router.get("/login")
def login_form(request: Request, actor: Actor | None = Depends(current_actor)) -> Response:
    """The sign-in page (a signed-in user goes on to the dashboard)."""
    next_path = safe_next(request.query_params.get("next"))
    if actor is not None and actor.via == "session":
        return redirect(next_path)
    return _login_page(request, next_path=next_path)


@router.post("/login")
def login(request: Request, form: FormData = Depends(form_data), service: Service = Depends(get_service)) -> Response:
    """Check the user name and password (throttled and audited as for the API) and open a
    login session; go on to the page asked for."""
    username, password = _text(form, "username"), form.get("password")
    next_path = safe_next(_text(form, "next"))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = _text(form, "login_csrf")
    if not cookie or not sent or not secrets.compare_digest(cookie, sent):
        return _login_page(request, status=403, error="The sign-in form expired; please try again.", username=username)
    if not username or not isinstance(password, str) or not password:
        return _login_page(request, status=422, error="Enter your user name and password.", username=username)
    holder = Response()
    try:
        auth_routes.login(
            auth_routes.LoginRequest(username=username[:200], password=password[:1000]), request, holder, service
        )
    except (BadCredentials, LoginThrottled) as exc:
        response = _login_page(request, status=exc.status, error=exc.message, username=username, next_path=next_path)
        if isinstance(exc, LoginThrottled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    response = redirect(next_path)
    for value in holder.headers.getlist("set-cookie"):
        response.headers.append("set-cookie", value)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    _form: FormData = Depends(form_data),
    actor: Actor = Depends(authenticated),
    service: Service = Depends(get_service),
) -> Response:
    """End the login session (audited)."""
    holder = Response()
    auth_routes.logout(request, holder, actor, service)
    response = redirect("/login", "signed_out")
    for value in holder.headers.getlist("set-cookie"):
        response.headers.append("set-cookie", value)
    return response


# -- dashboard ---------------------------------------------------------------------------------
@router.get("/")
def dashboard(request: Request, actor: Actor = Depends(authenticated), service: Service = Depends(get_service)):
    """Queues with counts, recent activity, and what the user's roles let them start."""
    user = actor.user
    context: dict[str, Any] = {"counts": None, "activity": [], "audit_total": 0, "user_total": 0}
    if services.can_read(user):
        context["counts"] = services.queue_counts(service.db)
        context["activity"] = services.recent_activity(service.db)
    with service.db.sessions() as session:
        if user.has_role("auditor"):
            context["audit_total"] = session.execute(select(func.count(AuditEvent.id))).scalar() or 0
        if user.has_role("admin"):
            context["user_total"] = session.execute(select(func.count(User.id))).scalar() or 0
    return page(request, actor, "dashboard.html", title="Dashboard", **context)


# -- reports -----------------------------------------------------------------------------------
@router.get("/reports")
def reports(request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)):
    """Reports, newest first, filtered by name/reference and status."""
    q = request.query_params.get("q", "").strip()[:200]
    status = request.query_params.get("status", "")
    offset = _offset(request)
    rows = _wf(service, actor).list_reports(
        actor.user, status=status or None, query=q or None, offset=offset, limit=PAGE_SIZE + 1
    )
    return page(
        request,
        actor,
        "reports.html",
        title="Reports",
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        q=q,
        status=status,
        statuses=REPORT_STATUSES,
    )


def _offset(request: Request) -> int:
    try:
        return max(0, min(int(request.query_params.get("offset", "0")), 10_000_000))
    except ValueError:
        return 0


def _report_form(form: FormData | None = None) -> dict[str, Any]:
    if form is None:
        return {
            "name": "",
            "date_of_birth": "",
            "reference": "",
            "description": "",
            "reported_by": "",
            "source": "",
            "legal_basis": "",
            "consent": False,
            "consent_date": "",
            "retain_until": "",
            "contacts": [{"name": "", "relation": "", "email": "", "phone": "", "language": "en"}],
        }
    keys = ("name", "relation", "email", "phone", "language")
    columns = [_texts(form, f"contact_{k}") for k in keys]
    contacts = []
    for n in range(max((len(c) for c in columns), default=0)):
        row = {k: (col[n] if n < len(col) else "") for k, col in zip(keys, columns, strict=True)}
        contacts.append(row)
    return {
        **{k: _text(form, k) for k in ("name", "date_of_birth", "reference", "description")},
        **{k: _text(form, k) for k in ("reported_by", "source", "legal_basis", "consent_date", "retain_until")},
        "consent": _text(form, "consent") == "yes",
        "contacts": contacts or _report_form()["contacts"],
    }


@router.get("/reports/new")
def new_report_form(request: Request, actor: Actor = Depends(recorders)):
    """The intake form of a missing-person report."""
    return page(
        request,
        actor,
        "report_new.html",
        title="New report",
        form=_report_form(),
        error="",
        problems=[],
        languages=LANGUAGES,
    )


@router.post("/reports/new")
def create_report(
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(recorders),
    service: Service = Depends(get_service),
) -> Response:
    """Register a report with its photos (all checked first), provenance and contacts."""
    values = _report_form(form)

    def again(status: int, error: str = "", problems: list[str] | None = None) -> Response:
        return page(
            request,
            actor,
            "report_new.html",
            http_status=status,
            title="New report",
            form=values,
            error=error,
            problems=problems or [],
            languages=LANGUAGES,
        )

    photos, problems = check_uploads(service, _uploads(form, "photos"), "report")
    if problems:
        return again(422, problems=problems)
    contacts = [
        {k: (v or None) if k in ("email", "phone") else v for k, v in c.items()}
        for c in values["contacts"]
        if any(c[k] for k in ("name", "relation", "email", "phone"))
    ]
    try:
        result = _wf(service, actor).create_report(
            actor.user,
            name=values["name"],
            reported_by=values["reported_by"],
            source=values["source"],
            legal_basis=values["legal_basis"],
            consent=values["consent"],
            consent_date=values["consent_date"] or None,
            date_of_birth=values["date_of_birth"] or None,
            description=values["description"],
            reference=values["reference"] or None,
            contacts=contacts,
            photos=photos,
            retain_until=values["retain_until"] or None,
        )
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return again(exc.status, error=exc.message)
    return redirect(f"/reports/{_q(result['report']['reference'])}", "report_created")


def _q(reference: str) -> str:
    from urllib.parse import quote

    return quote(reference, safe="")


def _record_page_context(
    service: Service, actor: Actor, photos: list[dict[str, Any]], leads: list[dict[str, Any]]
) -> dict[str, Any]:
    shown_photos, faces = _photos_for_page(service, photos)
    reviewed = services.reviewed_leads(service.db, actor.user.id)
    return {
        "photos": shown_photos,
        "faces": faces,
        "leads": _with_shown_status(leads, reviewed),
        "min_quality": service.settings.min_quality,
        "editable": any(actor.user.has_role(r) for r in RECORD_ROLES),
    }


def _report_page(
    request: Request,
    actor: Actor,
    service: Service,
    reference: str,
    *,
    status: int = 200,
    error: str = "",
    problems: list[str] | None = None,
    contact_error: str = "",
) -> Response:
    detail = _wf(service, actor).get_report(actor.user, reference)
    context = _record_page_context(service, actor, detail["photos"], detail["leads"])
    lead_records = [f"lead:{lead['id']}" for lead in detail["leads"]]
    history = services.record_history(service.db, [f"report:{detail['id']}", *lead_records])
    _view(service, actor, "report.view", [f"report:{detail['id']}"], reference=detail["reference"])
    return page(
        request,
        actor,
        "report.html",
        http_status=status,
        title=f"Report {detail['reference']}",
        r=detail,
        history=history,
        error=error,
        problems=problems or [],
        contact_error=contact_error,
        languages=LANGUAGES,
        **context,
    )


@router.get("/reports/{reference}")
def show_report(
    reference: str, request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """A report: the person sought, provenance, photos with faces boxed, contacts, leads, history."""
    return _report_page(request, actor, service, reference)


@router.post("/reports/{reference}/photos")
def add_report_photos(
    reference: str,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(recorders),
    service: Service = Depends(get_service),
) -> Response:
    """Enroll more reference photos (all checked first), then match the report again."""
    return _add_photos("report", request, actor, service, reference, form)


@router.post("/reports/{reference}/contacts")
def add_contact(
    reference: str,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(recorders),
    service: Service = Depends(get_service),
) -> Response:
    """Register a family contact on a report."""
    try:
        _wf(service, actor).add_contact(
            actor.user,
            reference,
            name=_text(form, "name"),
            relation=_text(form, "relation"),
            email=_text(form, "email") or None,
            phone=_text(form, "phone") or None,
            language=_text(form, "language") or "en",
        )
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _report_page(request, actor, service, reference, status=exc.status, contact_error=exc.message)
    return redirect(f"/reports/{_q(reference)}", "contact_added")


# -- cases -------------------------------------------------------------------------------------
@router.get("/cases")
def cases(request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)) -> Response:
    """Cases, newest first, by status."""
    status = request.query_params.get("status", "")
    offset = _offset(request)
    rows = _wf(service, actor).list_cases(actor.user, status=status or None, offset=offset, limit=PAGE_SIZE + 1)
    return page(
        request,
        actor,
        "cases.html",
        title="Cases",
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
        statuses=CASE_STATUSES,
    )


def _case_form(form: FormData | None = None) -> dict[str, Any]:
    keys = ("condition", "found_at", "found_place", "holding_organisation", "description", "reference", "retain_until")
    if form is None:
        return {k: ("deceased" if k == "condition" else "") for k in keys}
    return {k: _text(form, k) for k in keys}


@router.get("/cases/new")
def new_case_form(request: Request, actor: Actor = Depends(recorders)) -> Response:
    """The intake form of a case."""
    return page(
        request,
        actor,
        "case_new.html",
        title="New case",
        form=_case_form(),
        conditions=CONDITIONS,
        error="",
        problems=[],
    )


@router.post("/cases/new")
def create_case(
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(recorders),
    service: Service = Depends(get_service),
) -> Response:
    """Open a case with its photos (all checked first) and search it against all reports."""
    values = _case_form(form)

    def again(status: int, error: str = "", problems: list[str] | None = None) -> Response:
        return page(
            request,
            actor,
            "case_new.html",
            http_status=status,
            title="New case",
            form=values,
            conditions=CONDITIONS,
            error=error,
            problems=problems or [],
        )

    uploads = _uploads(form, "photos")
    photos, problems = check_uploads(service, uploads, "case")
    if problems:
        return again(422, problems=problems)
    try:
        result = _wf(service, actor).create_case(
            actor.user,
            condition=values["condition"],
            found_at=values["found_at"] or None,
            found_place=values["found_place"],
            holding_organisation=values["holding_organisation"],
            description=values["description"],
            reference=values["reference"] or None,
            photos=photos,
            retain_until=values["retain_until"] or None,
        )
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return again(exc.status, error=exc.message)
    return redirect(f"/cases/{_q(result['case']['reference'])}", "case_created")


def _case_page(
    request: Request,
    actor: Actor,
    service: Service,
    reference: str,
    *,
    status: int = 200,
    error: str = "",
    problems: list[str] | None = None,
) -> Response:
    wf = _wf(service, actor)
    detail = wf.get_case(actor.user, reference)
    leads = wf.list_leads(actor.user, case=detail["id"], limit=1000)
    context = _record_page_context(service, actor, detail["photos"], leads)
    records = [f"case:{detail['id']}", *(f"lead:{lead['id']}" for lead in leads)]
    records += [f"identification:{i['id']}" for i in detail["identifications"]]
    history = services.record_history(service.db, records)
    _view(service, actor, "case.view", [f"case:{detail['id']}"], reference=detail["reference"])
    return page(
        request,
        actor,
        "case.html",
        http_status=status,
        title=f"Case {detail['reference']}",
        c=detail,
        history=history,
        error=error,
        problems=problems or [],
        **context,
    )


@router.get("/cases/{reference}")
def show_case(
    reference: str, request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """A case: where and when found, photos with faces boxed, face crops and quality, leads, history."""
    return _case_page(request, actor, service, reference)


@router.post("/cases/{reference}/photos")
def add_case_photos(
    reference: str,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(recorders),
    service: Service = Depends(get_service),
) -> Response:
    """Add photos to a case (all checked first), then search it again."""
    return _add_photos("case", request, actor, service, reference, form)


def _add_photos(
    kind: str, request: Request, actor: Actor, service: Service, reference: str, form: FormData
) -> Response:
    """Check the uploaded photos, add them to the report or case, and show the page again (with the
    reasons on refusal) or redirect to it."""
    page = _report_page if kind == "report" else _case_page
    uploads = _uploads(form, "photos")
    photos, problems = check_uploads(service, uploads, kind)
    if problems or not uploads:
        return page(
            request, actor, service, reference, status=422, problems=problems, error="" if uploads else "Choose photos."
        )
    workflow = _wf(service, actor)
    add = workflow.add_report_photos if kind == "report" else workflow.add_case_photos
    try:
        result = add(actor.user, reference, photos)
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return page(request, actor, service, reference, status=exc.status, error=exc.message)
    return redirect(f"/{kind}s/{_q(result[kind]['reference'])}", "photos_added")


@router.get("/cases/{reference}/report.pdf")
def case_pdf(reference: str, actor: Actor = Depends(readers), service: Service = Depends(get_service)) -> Response:
    """The case file as PDF: photos, candidates, decisions, evidence and an audit excerpt (audited)."""
    data, filename, records = build_case_pdf(_wf(service, actor), service, actor.user, reference)
    _view(service, actor, "case.export", records, format="pdf", bytes=len(data))
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE},
    )


# -- leads -------------------------------------------------------------------------------------
@router.get("/leads")
def leads(request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)) -> Response:
    """The review queue, best score first: new, awaiting a second review, under review, all."""
    status = request.query_params.get("status", "")
    queue = request.query_params.get("queue", "")
    offset = _offset(request)
    wf = _wf(service, actor)
    if queue == "second":
        with service.db.sessions() as session:
            wanted = set(services.awaiting_second_review(session))
        rows = [r for r in wf.list_leads(actor.user, limit=1000) if r["id"] in wanted]
        rows = rows[offset : offset + PAGE_SIZE + 1]
    else:
        rows = wf.list_leads(actor.user, status=status or None, offset=offset, limit=PAGE_SIZE + 1)
    reviewed = services.reviewed_leads(service.db, actor.user.id)
    return page(
        request,
        actor,
        "leads.html",
        title="Review queue",
        rows=_with_shown_status(rows[:PAGE_SIZE], reviewed),
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
        queue=queue,
    )


def _face_card(service: Service, face: dict[str, Any]) -> dict[str, Any]:
    """Return one side of a lead: its face (None when erased), quality and quality problems."""
    detail = services.face_details(service.db, [face["face_id"]]).get(face["face_id"], {}) if face["face_id"] else {}
    quality = float(detail.get("quality", face.get("quality", 0.0)))
    problems = services.quality_problems(detail.get("detail", {}), quality, service.settings.min_quality)
    return {"face_id": face.get("face_id"), "quality": quality, "problems": problems}


def _lead_page(
    request: Request,
    actor: Actor,
    service: Service,
    lead_id: int,
    *,
    status: int = 200,
    review_error: str = "",
    evidence_error: str = "",
) -> Response:
    raw = _wf(service, actor).get_lead(actor.user, lead_id)
    lead = raw  # already blinded for this user by the workflow
    probe = _face_card(service, raw["case_face"])
    candidate = _face_card(service, raw["report_face"])
    min_quality = service.settings.min_quality
    refs = [
        {**f, "problems": services.quality_problems(f["quality_detail"], f["quality"], min_quality)}
        for f in services.report_faces(service.db, raw["report"] or {})
        if f["face_id"] != raw["report_face"]["face_id"]
    ]
    warnings = [f"Case face: {p}" for p in probe["problems"]]
    warnings += [f"Reference face: {p}" for p in candidate["problems"]]
    _view(service, actor, "lead.view", [f"lead:{lead_id}", f"case:{raw['case_id']}", f"report:{raw['report_id']}"])
    return page(
        request,
        actor,
        "lead.html",
        http_status=status,
        title=f"Lead {lead_id}",
        lead=lead,
        probe=probe,
        candidate=candidate,
        other_refs=refs,
        quality_warnings=warnings,
        min_quality=min_quality,
        min_evidence=service.settings.min_evidence_items,
        evidence_kinds=EVIDENCE_KINDS,
        open_for_review=raw["status"] not in ("identified", "withdrawn"),
        review_error=review_error,
        evidence_error=evidence_error,
    )


@router.get("/leads/{lead_id}")
def show_lead(
    lead_id: int, request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """Lead review: probe and candidate faces side by side, score in plain words, quality
    warnings, reviews (hidden from a second reviewer until they decide), evidence."""
    return _lead_page(request, actor, service, lead_id)


@router.post("/leads/{lead_id}/review")
def review_lead(
    lead_id: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(reviewers),
    service: Service = Depends(get_service),
) -> Response:
    """Record the user's review; a second, different reviewer's confirmation establishes the
    identification (the workflow enforces the two-person rule and the evidence policy)."""
    try:
        result = _wf(service, actor).review_lead(
            actor.user, lead_id, decision=_text(form, "decision"), rationale=_text(form, "rationale")
        )
    except FacetraceError as exc:
        if exc.status in (403, 404) and exc.code != "policy":
            raise
        return _lead_page(request, actor, service, lead_id, status=exc.status, review_error=exc.message)
    if result["identification"]:
        return redirect(f"/identifications/{result['identification']['id']}", "identification_confirmed")
    return redirect(f"/leads/{lead_id}", "review_recorded")


@router.post("/leads/{lead_id}/evidence")
def add_evidence(
    lead_id: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(reviewers),
    service: Service = Depends(get_service),
) -> Response:
    """Record corroborating evidence on a lead."""
    try:
        _wf(service, actor).add_evidence(
            actor.user,
            lead_id,
            kind=_text(form, "kind"),
            description=_text(form, "description"),
            reference=_text(form, "reference") or None,
        )
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _lead_page(request, actor, service, lead_id, status=exc.status, evidence_error=exc.message)
    return redirect(f"/leads/{lead_id}", "evidence_added")


# -- identifications ---------------------------------------------------------------------------
@router.get("/identifications")
def identifications(
    request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """Identifications, newest first."""
    rows = _wf(service, actor).list_identifications(actor.user)
    return page(request, actor, "identifications.html", title="Identifications", rows=rows)


def _identification_page(
    request: Request,
    actor: Actor,
    service: Service,
    ident_id: int,
    *,
    status: int = 200,
    draft_error: str = "",
    withdraw_error: str = "",
) -> Response:
    wf = _wf(service, actor)
    ident = wf.get_identification(actor.user, ident_id)
    contacts = wf.get_report(actor.user, ident["report"]["id"])["contacts"] if ident["report"] else []
    live = {(n["contact_id"], n["kind"]) for n in ident["notifications"] if n["status"] != "cancelled"}
    notified = {n["contact_id"] for n in ident["notifications"] if n["kind"] == "identification" and n["sent_at"]}
    if ident["status"] == "confirmed":
        draftable = [c for c in contacts if c["email"] and (c["id"], "identification") not in live]
    else:
        draftable = [c for c in contacts if c["id"] in notified and (c["id"], "correction") not in live]
    _view(
        service,
        actor,
        "identification.view",
        [f"identification:{ident_id}", f"case:{ident['case_id']}", f"report:{ident['report_id']}"],
    )
    return page(
        request,
        actor,
        "identification.html",
        http_status=status,
        title=f"Identification {ident_id}",
        ident=ident,
        draftable=draftable,
        can_withdraw=any(actor.user.has_role(r) for r in WITHDRAW_ROLES),
        draft_error=draft_error,
        withdraw_error=withdraw_error,
    )


@router.get("/identifications/{ident_id}")
def show_identification(
    ident_id: int, request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """An identification: who confirmed, the evidence, the notifications and their delivery."""
    return _identification_page(request, actor, service, ident_id)


@router.post("/identifications/{ident_id}/withdraw")
def withdraw(
    ident_id: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(withdrawers),
    service: Service = Depends(get_service),
) -> Response:
    """Withdraw an identification with a reason (corrections are drafted for approval)."""
    try:
        _wf(service, actor).withdraw_identification(actor.user, ident_id, reason=_text(form, "reason"))
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _identification_page(request, actor, service, ident_id, status=exc.status, withdraw_error=exc.message)
    return redirect(f"/identifications/{ident_id}", "withdrawn")


@router.post("/identifications/{ident_id}/draft")
def draft(
    ident_id: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(reviewers),
    service: Service = Depends(get_service),
) -> Response:
    """Draft a notification to one registered contact of the identified report."""
    try:
        contact_id = int(_text(form, "contact_id"))
    except ValueError:
        return _identification_page(request, actor, service, ident_id, status=422, draft_error="Choose a contact.")
    try:
        note = _wf(service, actor).draft_notification(actor.user, ident_id, contact_id)
    except FacetraceError as exc:
        if exc.status == 403 and exc.code != "policy":
            raise
        return _identification_page(request, actor, service, ident_id, status=exc.status, draft_error=exc.message)
    return redirect(f"/notifications/{note['id']}", "drafted")


# -- notifications -----------------------------------------------------------------------------
PROBLEM_STATUSES = ("failed", "refused", "unknown", "sending")


@router.get("/notifications")
def notifications(
    request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """Notifications by queue: awaiting approval, approved, sent, needing attention, all."""
    status = request.query_params.get("status", "")
    offset = _offset(request)
    wf = _wf(service, actor)
    if status == "problems":
        rows = [r for s in PROBLEM_STATUSES for r in wf.list_notifications(actor.user, status=s, limit=1000)]
        rows = sorted(rows, key=lambda r: r["id"], reverse=True)[offset : offset + PAGE_SIZE + 1]
    else:
        rows = wf.list_notifications(actor.user, status=status or None, offset=offset, limit=PAGE_SIZE + 1)
    return page(
        request,
        actor,
        "notifications.html",
        title="Notifications",
        rows=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
    )


def _notification_page(
    request: Request, actor: Actor, service: Service, nid: int, *, status: int = 200, action_error: str = ""
) -> Response:
    wf = _wf(service, actor)
    note = wf.get_notification(actor.user, nid)
    ident = wf.get_identification(actor.user, note["identification_id"])
    case_photos = wf.get_case(actor.user, ident["case_id"])["photos"] if ident["case"] else []
    contact = services.contact(service.db, note["contact_id"])
    user = actor.user
    _view(
        service,
        actor,
        "notification.view",
        [f"notification:{nid}", f"identification:{note['identification_id']}", f"contact:{note['contact_id']}"],
    )
    return page(
        request,
        actor,
        "notification.html",
        http_status=status,
        title=f"Notification {nid}",
        n=note,
        contact=contact,
        case_photos=case_photos,
        own_draft=note["drafted_by_id"] == user.id,
        can_approve=any(user.has_role(r) for r in APPROVE_ROLES),
        can_send=any(user.has_role(r) for r in SEND_ROLES),
        action_error=action_error,
    )


@router.get("/notifications/{nid}")
def show_notification(
    nid: int, request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """A notification: the message as it will be sent, approval, delivery status and attempts."""
    return _notification_page(request, actor, service, nid)


def _notification_action(
    request: Request, actor: Actor, service: Service, nid: int, action: Any, notice: str
) -> Response:
    try:
        action()
    except FacetraceError as exc:
        if exc.status == 404 or (exc.status == 403 and exc.code != "policy"):
            raise
        try:
            return _notification_page(request, actor, service, nid, status=exc.status, action_error=exc.message)
        except FacetraceError:  # e.g. an admin (who may send) cannot read the page: show the error itself
            raise exc from None
    return redirect(f"/notifications/{nid}", notice)


@router.post("/notifications/{nid}/approve")
def approve(
    nid: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(approvers),
    service: Service = Depends(get_service),
) -> Response:
    """Approve a draft (a reviewer other than the drafter), attaching only the photos ticked,
    and hand it to the mail server at once."""
    try:
        include = sorted({int(v) for v in _texts(form, "include_images") if v})
    except ValueError:
        include = []
        return _notification_page(request, actor, service, nid, status=422, action_error="bad photo selection")
    wf = _wf(service, actor)

    def act() -> None:
        wf.approve_notification(actor.user, nid, include_images=include)
        if any(actor.user.has_role(r) for r in SEND_ROLES):
            wf.send_notifications(actor.user, notification_ids=[nid])

    return _notification_action(request, actor, service, nid, act, "approved")


@router.post("/notifications/{nid}/send")
def send(
    nid: int,
    request: Request,
    _form: FormData = Depends(form_data),
    actor: Actor = Depends(senders),
    service: Service = Depends(get_service),
) -> Response:
    """Run the outbox for this notification (approved, or failed and retryable): at most once."""
    wf = _wf(service, actor)
    return _notification_action(
        request, actor, service, nid, lambda: wf.send_notifications(actor.user, notification_ids=[nid]), "sent"
    )


@router.post("/notifications/{nid}/cancel")
def cancel(
    nid: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(approvers),
    service: Service = Depends(get_service),
) -> Response:
    """Cancel a notification not yet sent, with a reason."""
    wf = _wf(service, actor)
    reason = _text(form, "reason")
    return _notification_action(
        request, actor, service, nid, lambda: wf.cancel_notification(actor.user, nid, reason=reason), "cancelled"
    )


@router.post("/notifications/{nid}/resolve")
def resolve(
    nid: int,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(senders),
    service: Service = Depends(get_service),
) -> Response:
    """Settle a delivery of unknown outcome (or failed/refused): delivered, resend or cancel."""
    wf = _wf(service, actor)
    resolution, rationale = _text(form, "resolution"), _text(form, "rationale")
    return _notification_action(
        request,
        actor,
        service,
        nid,
        lambda: wf.resolve_notification(actor.user, nid, resolution=resolution, rationale=rationale),
        "resolved",
    )


# -- ad-hoc search -----------------------------------------------------------------------------
@router.get("/search")
def search_form(request: Request, actor: Actor = Depends(examiners)) -> Response:
    """The ad-hoc search form (examiners): a photo, a case reference and a purpose."""
    form = {"case_reference": "", "purpose": ""}
    return page(request, actor, "search.html", title="Search", form=form, error="", result=None, probe=None)


def _data_url(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


@router.post("/search", dependencies=[Depends(search_rate_limit)])
def search(
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(examiners),
    service: Service = Depends(get_service),
) -> Response:
    """Search every face of the photo (audited with the case reference and purpose, as the API's
    search); show each face with its quality and candidates, with their scores in plain words."""
    values = {"case_reference": _text(form, "case_reference"), "purpose": _text(form, "purpose")}

    def again(status: int, error: str) -> Response:
        return page(
            request,
            actor,
            "search.html",
            http_status=status,
            title="Search",
            form=values,
            error=error,
            result=None,
            probe=None,
        )

    uploads = _uploads(form, "image")
    if not values["case_reference"] or not values["purpose"]:
        return again(422, "A case reference and a purpose are required for every search.")
    if len(uploads) != 1:
        return again(422, "Choose one photo to search.")
    upload = uploads[0]
    try:
        data, _name = read_image_upload(upload, service.settings.max_upload_bytes)
        upload.file.seek(0)
        result = search_routes.search(
            image=upload,
            case_reference=values["case_reference"][:200],
            purpose=values["purpose"][:1000],
            top=5,
            actor=actor,
            service=service,
        )
        rgb = images.load_rgb(data, service.settings.max_pixels)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return again(exc.status, exc.message)
    min_quality = service.settings.min_quality
    person_ids = sorted({c["person"]["id"] for f in result["faces"] for c in f["candidates"]})
    reports = services.person_report_refs(service.db, person_ids)
    for face in result["faces"]:
        face["crop_src"] = _data_url(images.face_crop_jpeg(rgb, face["box"], size=200))
        face["problems"] = services.quality_problems(face["quality"], face["quality"]["score"], min_quality)
        for cand in face["candidates"]:
            cand["report"] = reports.get(cand["person"]["id"])
    height, width = rgb.shape[:2]
    probe = {"src": _data_url(images.encode_jpeg(rgb, max_side=1000)), "width": width, "height": height}
    return page(request, actor, "search.html", title="Search", form=values, error="", result=result, probe=probe)


# -- video search ------------------------------------------------------------------------------
VIDEO_FORM = "search_video.html"


@router.get("/search/video")
def video_search_form(request: Request, actor: Actor = Depends(examiners)) -> Response:
    """The video search form (examiners): a video, a case reference and a purpose."""
    form = {"case_reference": "", "purpose": ""}
    return page(request, actor, VIDEO_FORM, title="Video search", form=form, error="", job=None)


@router.post("/search/video", dependencies=[Depends(search_rate_limit)])
def start_video_search(
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(examiners),
    service: Service = Depends(get_service),
) -> Response:
    """Start a video search job, exactly as the API's ``POST /search/video`` (checks, audit and
    job included); redirect to its page. A refused upload is shown on the form with the reason."""
    values = {"case_reference": _text(form, "case_reference"), "purpose": _text(form, "purpose")}

    def again(status: int, error: str) -> Response:
        return page(
            request, actor, VIDEO_FORM, http_status=status, title="Video search", form=values, error=error, job=None
        )

    uploads = _uploads(form, "video")
    if not values["case_reference"] or not values["purpose"]:
        return again(422, "A case reference and a purpose are required for every search.")
    if len(uploads) != 1:
        return again(422, "Choose one video to search.")
    try:
        job = video_routes.start_video_search(
            request,
            video=uploads[0],
            case_reference=values["case_reference"][:200],
            purpose=values["purpose"][:1000],
            top=5,
            actor=actor,
            service=service,
        )
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return again(exc.status, exc.message)
    return redirect(f"/search/video/{int(job['id'])}")


def _video_job_page(request: Request, actor: Actor, service: Service, job: dict[str, Any]) -> Response:
    result = job["result"] if job["state"] == "done" else None
    if result:
        person_ids = sorted({c["person"]["id"] for t in result["tracks"] for c in t["candidates"]})
        reports = services.person_report_refs(service.db, person_ids)
        for track in result["tracks"]:
            thumbnail = track.get("thumbnail_jpeg_base64")
            # The page's CSP allows img-src data:, as for the ad-hoc search's face crops.
            track["thumbnail_src"] = f"data:image/jpeg;base64,{thumbnail}" if thumbnail else None
            for cand in track["candidates"]:
                cand["report"] = reports.get(cand["person"]["id"])
        _view(service, actor, "search.video.view", [f"job:{job['id']}"], tracks=len(result["tracks"]))
    running = job["state"] in ("queued", "running")
    progress = job["progress"]
    percent = round(100 * progress["done"] / progress["total"]) if progress.get("total") else 0
    return page(
        request,
        actor,
        VIDEO_FORM,
        title=f"Video search {job['id']}",
        form=None,
        error="",
        job=job,
        result=result,
        running=running,
        percent=percent,
    )


@router.get("/search/video/{job_id}")
def video_search_job(
    job_id: int, request: Request, actor: Actor = Depends(examiners), service: Service = Depends(get_service)
) -> Response:
    """A video search job: its progress while it runs (the page refreshes itself every two seconds,
    without script), then each track with its time span, thumbnail and candidates."""
    job = video_routes.video_search(job_id, actor=actor, service=service)
    return _video_job_page(request, actor, service, job)


@router.post("/search/video/{job_id}/cancel")
def cancel_video_search(
    job_id: int,
    request: Request,
    _form: FormData = Depends(form_data),
    actor: Actor = Depends(examiners),
    service: Service = Depends(get_service),
) -> Response:
    """Cancel a queued or running video search (audited, as the API's cancel); back to its page."""
    video_routes.cancel_video_search(job_id, actor=actor, service=service)
    return redirect(f"/search/video/{job_id}")


# -- audit trail -------------------------------------------------------------------------------
@router.get("/audit")
def audit(request: Request, actor: Actor = Depends(auditors), service: Service = Depends(get_service)) -> Response:
    """The audit trail with filters (user, action or prefix, record, outcome, dates), and the
    hash-chain check."""
    params = request.query_params
    filters = {k: params.get(k, "").strip()[:200] for k in ("actor", "action", "record", "outcome", "since", "until")}
    offset = _offset(request)
    try:
        since = parse_date(filters["since"] or None, "from")
        until = parse_date(filters["until"] or None, "until")
    except InvalidInput:
        raise
    from datetime import UTC, datetime, time, timedelta

    since_dt = datetime.combine(since, time.min, UTC) if since else None
    until_dt = datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None
    verified, problems = None, []
    with service.db.sessions() as session:
        if params.get("verify"):
            problems = verify_chain(session)
            verified = not problems
        rows, total = list_events(
            session,
            offset=offset,
            limit=PAGE_SIZE,
            actor=filters["actor"] or None,
            action=filters["action"] or None,
            record=filters["record"] or None,
            outcome=filters["outcome"] or None,
            since=since_dt,
            until=until_dt,
        )
        events = [e.as_dict() for e in rows]
    if verified is not None:
        record_event(
            service, actor, "audit.verify", outcome="ok" if verified else "error", detail={"problems": len(problems)}
        )
    record_event(
        service,
        actor,
        "audit.view",
        detail={k: v for k, v in filters.items() if v} | {"count": len(events), "via": "web"},
    )
    from urllib.parse import urlencode

    query_base = "/audit?" + urlencode({k: v for k, v in filters.items() if v}) + ("&" if any(filters.values()) else "")
    return page(
        request,
        actor,
        "audit.html",
        title="Audit trail",
        events=events,
        total=total,
        offset=offset,
        limit=PAGE_SIZE,
        has_next=offset + PAGE_SIZE < total,
        filters=filters,
        verified=verified,
        problems=problems,
        query_base=query_base,
    )


# -- users and roles ---------------------------------------------------------------------------
def _users_page(request: Request, actor: Actor, service: Service, *, status: int = 200, error: str = "", form=None):
    with service.db.sessions() as session:
        users = [u.as_dict() for u in session.execute(select(User).order_by(User.username)).scalars()]
    form = form or {"username": "", "display_name": "", "roles": []}
    return page(request, actor, "users.html", http_status=status, title="Users", users=users, error=error, form=form)


@router.get("/admin/users")
def users(request: Request, actor: Actor = Depends(admins), service: Service = Depends(get_service)) -> Response:
    """User accounts and their roles (admin)."""
    return _users_page(request, actor, service)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


@router.post("/admin/users")
def add_user(
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(admins),
    service: Service = Depends(get_service),
) -> Response:
    """Create a user with a password and roles (audited as user.create)."""
    values: dict[str, Any] = {
        "username": _text(form, "username"),
        "display_name": _text(form, "display_name"),
        "roles": _texts(form, "roles"),
    }
    try:
        body = user_routes.NewUser(
            username=values["username"],
            display_name=values["display_name"],
            roles=values["roles"],
            password=str(form.get("password") or ""),
        )
        user_routes.add_user(body, actor, service)
    except ValidationError as exc:
        return _users_page(request, actor, service, status=422, error=_validation_message(exc), form=values)
    except FacetraceError as exc:
        if exc.status == 403:
            raise
        return _users_page(request, actor, service, status=exc.status, error=exc.message, form=values)
    return redirect("/admin/users", "user_created")


def _user_page(request: Request, actor: Actor, service: Service, username: str, *, status=200, error=""):
    with service.db.sessions() as session:
        target = get_user(session, username).as_dict()
    form = {"display_name": target["display_name"], "roles": target["roles"], "disabled": target["disabled"]}
    return page(
        request, actor, "user.html", http_status=status, title=f"User {username}", target=target, form=form, error=error
    )


@router.get("/admin/users/{username}")
def user_form(
    username: str, request: Request, actor: Actor = Depends(admins), service: Service = Depends(get_service)
) -> Response:
    """One user's roles, display name, password and account state (admin)."""
    return _user_page(request, actor, service, username)


@router.post("/admin/users/{username}")
def update_user(
    username: str,
    request: Request,
    form: FormData = Depends(form_data),
    actor: Actor = Depends(admins),
    service: Service = Depends(get_service),
) -> Response:
    """Change a user's roles, display name, password or account state (audited)."""
    password = str(form.get("password") or "")
    try:
        body = user_routes.UserUpdate(
            display_name=_text(form, "display_name"),
            roles=_texts(form, "roles"),
            disabled=_text(form, "disabled") == "yes",
            password=password or None,
        )
        user_routes.update_user(username, body, actor, service)
    except ValidationError as exc:
        return _user_page(request, actor, service, username, status=422, error=_validation_message(exc))
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _user_page(request, actor, service, username, status=exc.status, error=exc.message)
    return redirect("/admin/users", "user_updated")


# -- biometric media (authenticated, audited) --------------------------------------------------
@router.get("/media/images/{image_id}")
def media_image(image_id: int, actor: Actor = Depends(readers), service: Service = Depends(get_service)) -> Response:
    """A stored photo of a case or report, re-encoded (EXIF orientation applied, metadata
    dropped). Every view is audited."""
    ref = services.image_ref(service.db, image_id)
    rgb = images.load_rgb(service.gallery.media.read(ref.media_path), service.settings.max_pixels)
    data = images.encode_jpeg(rgb, max_side=2000)
    _view(service, actor, "media.view", ref.records, kind="photo")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


@router.get("/media/faces/{face_id}")
def media_face(
    face_id: int, request: Request, actor: Actor = Depends(readers), service: Service = Depends(get_service)
) -> Response:
    """A face crop (``size`` pixels on its longer side, 64-800). Every view is audited."""
    try:
        size = max(64, min(int(request.query_params.get("size", "320")), 800))
    except ValueError:
        size = 320
    ref = services.face_ref(service.db, face_id)
    if ref.box is None:
        raise NotFoundError(f"no face {face_id}")
    rgb = images.load_rgb(service.gallery.media.read(ref.media_path), service.settings.max_pixels)
    data = images.face_crop_jpeg(rgb, ref.box, size=size)
    _view(service, actor, "media.view", ref.records, kind="face crop")
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


# -- static files (scripts, styles: no biometric data) ----------------------------------------
@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """The web UI's own scripts, styles and icons (shipped with the package)."""
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.suffix not in STATIC_TYPES:
        raise NotFoundError(f"no static file {path!r}")
    return FileResponse(
        target, media_type=STATIC_TYPES[target.suffix], headers={"Cache-Control": "public, max-age=3600"}
    )
