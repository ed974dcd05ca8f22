"""Cases: unidentified persons, with their photos.

A case's photos go through the gallery's face pipeline but are stored as images without a person,
linked by ``case_images``, so they never enter the gallery index (see
:mod:`facetrace.workflow.photos`). After every change an open case is searched again
(:class:`facetrace.workflow.matching.MatchingService`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError
from facetrace.store.accounts import User
from facetrace.store.models import Image
from facetrace.store.name_search import match_view, ranked_matches, rows_in_order
from facetrace.store.workflow_models import CASE_STATUSES, CONDITIONS, Case, CaseImage, Identification, Lead
from facetrace.workflow import queries
from facetrace.workflow.common import (
    READ_ROLES,
    RECORD_ROLES,
    InvalidInput,
    PhotoInput,
    case_view,
    check_choice,
    check_reference,
    identification_view,
    lead_view,
    parse_datetime,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.fields import UNSET, apply_audited_changes, provisional_reference
from facetrace.workflow.matching import MatchingService
from facetrace.workflow.names import best_per_row, case_candidates
from facetrace.workflow.photos import AnalysedPhoto, analyse_case_photos, check_photos, image_view, store_case_photo
from facetrace.workflow.reconcile.facts import parse_descriptors
from facetrace.workflow.reconcile.vocabulary import CASE_KIND_CONDITION, CASE_KINDS
from facetrace.workflow.retention import parse_retain_until

MANUAL_CASE_STATUSES = ("open", "closed")
# The case's description may describe the person (marks, clothing): the audit trail, which outlives
# an erasure, records only that it changed.
PRIVATE_CASE_FIELDS = frozenset({"description"})


def case_kind_and_condition(kind: str | None, condition: str | None) -> tuple[str, str]:
    """Return a new case's (kind, condition): the kind decides the condition; a condition alone
    gives the kind deceased or living.

    Raises:
        InvalidInput: neither given, an unknown value, or a condition the kind contradicts.
    """
    if kind in (None, ""):
        if condition in (None, ""):
            raise InvalidInput(
                "condition (deceased or alive) or kind (deceased, living, detained, body_part) is required"
            )
        checked = check_choice(str(condition), CONDITIONS, "condition")
        return ("deceased" if checked == "deceased" else "living"), checked
    checked_kind = check_choice(str(kind), CASE_KINDS, "kind")
    implied = CASE_KIND_CONDITION[checked_kind]
    if condition not in (None, "") and condition != implied:
        raise InvalidInput(f"condition {condition!r} contradicts kind {checked_kind!r} ({implied})")
    return checked_kind, implied


class CaseService:
    """Open, change, list and show cases; add their photos."""

    def __init__(self, ctx: WorkflowContext, matching: MatchingService) -> None:
        self.ctx = ctx
        self.matching = matching

    def create_case(
        self,
        actor: User,
        *,
        condition: str | None = None,
        kind: str | None = None,
        descriptors: dict[str, Any] | None = None,
        found_at: str | datetime | None = None,
        found_place: str = "",
        holding_organisation: str = "",
        description: str = "",
        reference: str | None = None,
        photos: list[PhotoInput] | None = None,
        retain_until: str | datetime | None = None,
    ) -> dict[str, Any]:
        """Open a case (an unidentified person) with its photos, then search it against all
        reports. The photos are checked first: if any has no face, nothing is stored.
        Role: intake or examiner.

        ``kind`` (deceased, living, detained, body part) sets the condition; given alone, a condition
        sets the kind (deceased or living). ``descriptors``: the structured descriptors
        (:func:`facetrace.workflow.reconcile.facts.parse_descriptors`).

        Returns ``{"case", "photos", "matching"}``.

        Raises:
            InvalidInput, ImageError, NoFaceError, ConflictError (reference taken), PermissionDenied.
        """
        kind, condition = case_kind_and_condition(kind, condition)
        fields = {
            "condition": condition,
            "kind": kind,
            "descriptors": parse_descriptors(descriptors or {}, record="case").stored(),
            "found_at": parse_datetime(found_at, "found at"),
            "found_place": (found_place or "").strip()[:500],
            "holding_organisation": (holding_organisation or "").strip()[:300],
            "description": (description or "").strip()[:20_000],
            "retain_until": parse_retain_until(retain_until),
        }
        ref = check_reference(reference, "case")
        photos = check_photos(photos)
        with self.ctx.transaction(actor, "case.create", ["case"]) as session:
            self.ctx.acting_user(session, actor, RECORD_ROLES, "opening a case")  # before the costly analysis
        analysed = analyse_case_photos(self.ctx.gallery, photos)
        with self.ctx.transaction(actor, "case.create", ["case"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "opening a case")
            if ref and queries.reference_taken(session, "case", ref):
                raise ConflictError(f"a case with reference {ref!r} already exists")
            case = Case(reference=provisional_reference(ref), created_by_id=user.id, **fields)
            session.add(case)
            session.flush()
            if not ref:
                case.reference = f"C-{case.id:06d}"
            stored = self._store_photos(session, user, case, analysed)
            self.ctx.audit(
                session,
                user,
                "case.create",
                [f"case:{case.id}", *(f"image:{p['image_id']}" for p in stored)],
                {"reference": case.reference, "condition": case.condition, "photos": len(stored)},
            )
            case_id = case.id
        return {
            "case": queries.case_snapshot(self.ctx.db, case_id),
            "photos": {"added": stored, "skipped": len(analysed) - len(stored)},
            "matching": self.matching.match_case_by_id(actor, case_id),
        }

    def add_case_photos(self, actor: User, reference: str | int, photos: list[PhotoInput]) -> dict[str, Any]:
        """Add photos to a case (all checked first; a photo already on the case is skipped),
        then search it again. Role: intake or examiner.

        Returns ``{"case", "photos", "matching"}``.

        Raises:
            NotFoundError, InvalidInput, ImageError, NoFaceError, PermissionDenied.
        """
        photos = check_photos(photos)
        if not photos:
            raise InvalidInput("no photos given")
        with self.ctx.transaction(actor, "case.photos_add", [f"case:{reference}"]) as session:
            self.ctx.acting_user(session, actor, RECORD_ROLES, "adding photos to a case")
            queries.case_by_reference(session, reference)
        analysed = analyse_case_photos(self.ctx.gallery, photos)
        with self.ctx.transaction(actor, "case.photos_add", [f"case:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "adding photos to a case")
            case = queries.case_by_reference(session, reference)
            stored = self._store_photos(session, user, case, analysed)
            self.ctx.audit(
                session,
                user,
                "case.photos_add",
                [f"case:{case.id}", *(f"image:{p['image_id']}" for p in stored)],
                {"added": len(stored), "skipped": len(analysed) - len(stored)},
            )
            case_id = case.id
        return {
            "case": queries.case_snapshot(self.ctx.db, case_id),
            "photos": {"added": stored, "skipped": len(analysed) - len(stored)},
            "matching": self.matching.match_case_by_id(actor, case_id),
        }

    def _store_photos(
        self, session: Session, user: User, case: Case, analysed: list[AnalysedPhoto]
    ) -> list[dict[str, Any]]:
        """Store the analysed photos not yet on the case (by sha256) and link them to it; return
        the JSON view of each stored one."""
        existing = set(
            session.execute(
                select(Image.sha256).join(CaseImage, CaseImage.image_id == Image.id).where(CaseImage.case_id == case.id)
            ).scalars()
        )
        stored = []
        for number, item in enumerate(analysed):
            if item.sha256 in existing:
                continue
            existing.add(item.sha256)
            image = store_case_photo(self.ctx.gallery, session, item, number)
            session.add(CaseImage(case_id=case.id, image_id=image.image_id, added_by_id=user.id))
            session.flush()
            stored.append(
                {
                    "image_id": image.image_id,
                    "face_id": image.face_id,
                    "name": image.original_name,
                    "box": list(item.face.box),
                    "quality": round(item.face.quality.score, 1),
                    "quality_ok": item.face.quality.score >= self.ctx.settings.min_quality,
                }
            )
        return stored

    def update_case(
        self,
        actor: User,
        reference: str | int,
        *,
        condition: str | None = None,
        found_at: str | datetime | None = UNSET,
        found_place: str | None = None,
        holding_organisation: str | None = None,
        description: str | None = None,
        status: str | None = None,
        retain_until: str | datetime | None = UNSET,
    ) -> dict[str, Any]:
        """Change a case's fields (None leaves a field as it is); an open case is searched again.
        Statuses set by hand: open, closed. Role: intake or examiner.

        Returns ``{"case", "changed", "matching"}``.

        Raises:
            NotFoundError, InvalidInput, ConflictError (closing or reopening an identified case), PermissionDenied.
        """
        changes: dict[str, Any] = {}
        if condition is not None:
            changes["condition"] = check_choice(condition, CONDITIONS, "condition")
        if found_at is not UNSET:
            changes["found_at"] = parse_datetime(found_at, "found at")
        if found_place is not None:
            changes["found_place"] = found_place.strip()[:500]
        if holding_organisation is not None:
            changes["holding_organisation"] = holding_organisation.strip()[:300]
        if description is not None:
            changes["description"] = description.strip()[:20_000]
        if status is not None:
            changes["status"] = check_choice(status, MANUAL_CASE_STATUSES, "status")
        if retain_until is not UNSET:  # None (or empty) removes the date
            changes["retain_until"] = parse_retain_until(retain_until)
        if not changes:
            raise InvalidInput("nothing to change")
        with self.ctx.transaction(actor, "case.update", [f"case:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "changing a case")
            case = queries.case_by_reference(session, reference)
            if "status" in changes and case.status == "identified":
                raise ConflictError(f"case {case.reference} is identified; withdraw the identification first")
            if changes.get("status") == "open" and case.status == "under_review":
                changes.pop("status")  # still open, with leads
            if "condition" in changes and CASE_KIND_CONDITION[case.kind] != changes["condition"]:
                changes["kind"] = "deceased" if changes["condition"] == "deceased" else "living"  # the kind follows
            changed, detail = apply_audited_changes(case, changes, PRIVATE_CASE_FIELDS)
            self.ctx.audit(session, user, "case.update", [f"case:{case.id}"], detail)
            case_id = case.id
        return {
            "case": queries.case_snapshot(self.ctx.db, case_id),
            "changed": changed,
            "matching": self.matching.match_case_by_id(actor, case_id),
        }

    def list_cases(
        self,
        actor: User,
        *,
        status: str | None = None,
        query: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return cases (newest first), optionally by status or by reference or name. Any role.

        A case has no name of its own: ``query`` finds it by its reference, or by the name of a
        report that an open, under-review or identified lead ties it to, ranked across scripts and
        spellings as reports are (:meth:`ReportService.list_reports`); every item then carries
        ``name_match``.

        Raises:
            PermissionDenied, InvalidInput (unknown status).
        """
        with self.ctx.transaction(actor, "case.list", []) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "listing cases")
            stmt = select(Case).order_by(Case.id.desc())
            if status:
                stmt = stmt.where(Case.status == check_choice(status, CASE_STATUSES, "status"))
            text = (query or "").strip()
            if not text:
                rows = session.execute(queries.page(stmt, offset, limit)).scalars()
                return [case_view(c) for c in rows]
            ranked = best_per_row(ranked_matches(session, case_candidates(stmt, text), text))
            matches = queries.page_of(ranked, offset, limit)
            cases = rows_in_order(session, Case, [m.row_id for m in matches])
            return [{**case_view(c), "name_match": match_view(m)} for c, m in zip(cases, matches, strict=True)]

    def get_case(self, actor: User, reference: str | int, *, audited: bool = True) -> dict[str, Any]:
        """Return a case with its photos, leads and identifications. Any role.

        Audited as ``case.view``, unless ``audited`` is False: a page that shows this case as part
        of another record appends that view's one event itself.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "case.view", [f"case:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, READ_ROLES, "reading a case")
            case = queries.case_by_reference(session, reference)
            if audited:
                self.ctx.audit(session, user, "case.view", [f"case:{case.id}"])
            images = session.execute(
                select(Image).join(CaseImage, CaseImage.image_id == Image.id).where(CaseImage.case_id == case.id)
            ).scalars()
            leads = session.execute(select(Lead).where(Lead.case_id == case.id).order_by(Lead.score.desc())).scalars()
            idents = session.execute(
                select(Identification).where(Identification.case_id == case.id).order_by(Identification.id)
            ).scalars()
            return {
                **case_view(case),
                "photos": [image_view(i) for i in images],
                "leads": [lead_view(lead) for lead in leads],
                "identifications": [identification_view(i) for i in idents],
            }
