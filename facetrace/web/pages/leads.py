"""Leads: the review queue, and lead review with probe and candidate side by side, reviews and evidence."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from facetrace.errors import FacetraceError
from facetrace.gallery.quality_bands import quality_band
from facetrace.http.deps import ServiceDep
from facetrace.http.roles import Reader, Reviewer
from facetrace.store.workflow_models import EVIDENCE_KINDS
from facetrace.usecases.actors import Actor
from facetrace.usecases.records import workflow_for
from facetrace.usecases.service import Service
from facetrace.web import services
from facetrace.web.deps import PAGE_SIZE, FormDep, page_offset, text, web_router
from facetrace.web.facts import vocabulary
from facetrace.web.photos import with_shown_status
from facetrace.web.render import page, redirect

router = web_router()


@router.get("/leads")
def leads(request: Request, actor: Reader, service: ServiceDep) -> Response:
    """The review queue, best score first: new, awaiting a second review, under review, all."""
    status = request.query_params.get("status", "")
    queue = request.query_params.get("queue", "")
    offset = page_offset(request)
    wf = workflow_for(service, actor)
    if queue == "second":
        with service.db.sessions() as session:
            wanted = set(services.awaiting_second_review(session))
        rows = [r for r in wf.reviews.list_leads(actor.user, limit=1000) if r["id"] in wanted]
        rows = rows[offset : offset + PAGE_SIZE + 1]
    else:
        rows = wf.reviews.list_leads(actor.user, status=status or None, offset=offset, limit=PAGE_SIZE + 1)
    reviewed = services.reviewed_leads(service.db, actor.user.id)
    return page(
        request,
        actor,
        "leads.html",
        title="Review queue",
        rows=with_shown_status(rows[:PAGE_SIZE], reviewed),
        vocab=vocabulary(),
        has_next=len(rows) > PAGE_SIZE,
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
        queue=queue,
    )


def _face_card(service: Service, face: dict[str, Any], *, probe: bool = False) -> dict[str, Any]:
    """Return one side of a lead: its face (None when erased), quality and quality problems, and
    for the ``probe`` (the case face) its quality band: what the quality means for the error rates."""
    detail = services.face_details(service.db, [face["face_id"]]).get(face["face_id"], {}) if face["face_id"] else {}
    quality = float(detail.get("quality", face.get("quality", 0.0)))
    min_quality = service.settings.min_quality
    problems = services.quality_problems(detail.get("detail", {}), quality, min_quality)
    card: dict[str, Any] = {"face_id": face.get("face_id"), "quality": quality, "problems": problems}
    if probe:
        card["quality_band"] = quality_band(quality, min_quality=min_quality).as_dict()
    return card


def _lead_page(
    request: Request,
    actor: Actor,
    service: Service,
    lead_id: int,
    *,
    status: int = 200,
    review_error: str = "",
    evidence_error: str = "",
    review: dict[str, str] | None = None,
    evidence: dict[str, str] | None = None,
) -> Response:
    """Return the lead's page; a refused review or evidence form shows its reason at the top of
    the page and keeps what was typed (``review``: decision and rationale; ``evidence``: kind,
    description and reference)."""
    raw = workflow_for(service, actor).reviews.get_lead(actor.user, lead_id)
    lead = raw  # already blinded for this user by the workflow
    faceless = raw["case_face"] is None or raw["report_face"] is None  # a marks lead: no face to show
    probe = None if faceless else _face_card(service, raw["case_face"], probe=True)
    candidate = None if faceless else _face_card(service, raw["report_face"])
    min_quality = service.settings.min_quality
    best = None if faceless else raw["report_face"]["face_id"]
    refs = (
        []
        if faceless
        else [  # every reference face of the report, the best-matching one included and marked
            {
                **f,
                "best": f["face_id"] == best,
                "problems": services.quality_problems(f["quality_detail"], f["quality"], min_quality),
            }
            for f in services.report_faces(service.db, raw["report"] or {})
        ]
    )
    case_status = (raw["case"] or {}).get("status")
    ident = raw["identification"]
    identified_elsewhere = None
    if case_status == "identified" and not (ident and ident["status"] == "confirmed"):
        identified_elsewhere = services.confirmed_identification(service.db, raw["case_id"])
    warnings = [f"Case face: {p}" for p in probe["problems"]] if probe else []
    warnings += [f"Reference face: {p}" for p in candidate["problems"]] if candidate else []
    # Read with the page's one view event (lead.view): lead_agreement records no event of its own.
    agreement = workflow_for(service, actor).reconciliation.lead_agreement(actor.user, lead_id)
    return page(
        request,
        actor,
        "lead.html",
        http_status=status,
        title=f"Lead {lead_id}",
        lead=lead,
        probe=probe,
        candidate=candidate,
        reference_faces=refs,
        identified_elsewhere=identified_elsewhere,
        review=review or {"decision": "", "rationale": ""},
        evidence=evidence or {"kind": "", "description": "", "reference": ""},
        quality_warnings=warnings,
        min_quality=min_quality,
        min_evidence=service.settings.min_evidence_items,
        evidence_kinds=EVIDENCE_KINDS,
        open_for_review=raw["status"] not in ("identified", "withdrawn"),
        review_error=review_error,
        evidence_error=evidence_error,
        agreement=agreement,
        vocab=vocabulary(),
        can_reopen=actor.user.has_role("reviewer"),
    )


@router.get("/leads/{lead_id}")
def show_lead(lead_id: int, request: Request, actor: Reader, service: ServiceDep) -> Response:
    """Lead review: probe and candidate faces side by side, score in plain words, quality
    warnings, reviews (hidden from a second reviewer until they decide), evidence."""
    return _lead_page(request, actor, service, lead_id)


@router.post("/leads/{lead_id}/review")
def review_lead(
    lead_id: int,
    request: Request,
    form: FormDep,
    actor: Reviewer,
    service: ServiceDep,
) -> Response:
    """Record the user's review; a second, different reviewer's confirmation establishes the
    identification (the workflow enforces the two-person rule and the evidence policy)."""
    typed = {"decision": text(form, "decision"), "rationale": text(form, "rationale")}
    try:
        result = workflow_for(service, actor).reviews.review_lead(actor.user, lead_id, **typed)
    except FacetraceError as exc:
        if exc.status in (403, 404) and exc.code != "policy":
            raise
        return _lead_page(request, actor, service, lead_id, status=exc.status, review_error=exc.message, review=typed)
    if result["identification"]:
        drafts = result.get("notifications") or {}
        # Said as it happened: drafting fails (e.g. mail settings missing) without undoing the identification.
        notice = "identification_confirmed_not_drafted" if drafts.get("draft_errors") else "identification_confirmed"
        if drafts.get("held"):  # a preliminary identification: the policy holds the family notifications
            notice = "identification_preliminary_held"
        return redirect(f"/identifications/{result['identification']['id']}", notice)
    return redirect(f"/leads/{lead_id}", "review_recorded")


@router.post("/leads/{lead_id}/evidence")
def add_evidence(
    lead_id: int,
    request: Request,
    form: FormDep,
    actor: Reviewer,
    service: ServiceDep,
) -> Response:
    """Record corroborating evidence on a lead."""
    typed = {key: text(form, key) for key in ("kind", "description", "reference")}
    try:
        workflow_for(service, actor).reviews.add_evidence(
            actor.user,
            lead_id,
            kind=typed["kind"],
            description=typed["description"],
            reference=typed["reference"] or None,
        )
    except FacetraceError as exc:
        if exc.status in (403, 404):
            raise
        return _lead_page(
            request, actor, service, lead_id, status=exc.status, evidence_error=exc.message, evidence=typed
        )
    return redirect(f"/leads/{lead_id}", "evidence_added")
