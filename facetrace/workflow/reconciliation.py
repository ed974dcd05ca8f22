"""Reconciliation beyond the face: what reports (ante-mortem) and cases (post-mortem) record of the
person besides photos (descriptors, distinguishing marks with their photos, personal effects,
primary identifier references, a case's kind), the exclusions and agreement they give each lead,
search by marks and descriptors without a face, and reopening a rejected lead.

The rules live in :mod:`facetrace.workflow.reconcile`; this service stores, audits and matches.
Every change of the facts matches the record again (a rejected lead stays rejected: leads are
never re-created, see :func:`facetrace.workflow.leads.upsert_leads`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError
from facetrace.store.accounts import User
from facetrace.store.reconciliation_models import Effect, MarkPhoto, PrimaryReference
from facetrace.store.reconciliation_models import Mark as MarkRow
from facetrace.store.workflow_models import Case, Lead, Report, Review
from facetrace.vision.decode import ImageInput
from facetrace.workflow import queries
from facetrace.workflow.common import (
    READ_ROLES,
    RECORD_ROLES,
    REOPEN_ROLES,
    InvalidInput,
    PhotoInput,
    check_choice,
    check_date_of_birth,
    iso,
    lead_view,
    optional_text,
    required_text,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.matching import MatchingService
from facetrace.workflow.reconcile.agreement import adjusted_fmr
from facetrace.workflow.reconcile.facts import parse_descriptors, parse_mark, refuse_unknown
from facetrace.workflow.reconcile.records import (
    RecordFacts,
    agreement_of,
    case_facts,
    cases_facts,
    excluded_by,
    exclusion_rules,
    mark_of,
    report_facts,
)
from facetrace.workflow.reconcile.vocabulary import (
    CASE_KIND_CONDITION,
    CASE_KINDS,
    EFFECT_KINDS,
    PRIMARY_KINDS,
    REFERENCE_STATUSES,
)

KINDS = ("report", "case")
SEARCH_LIMIT = 50


def _kind(kind: str) -> str:
    return check_choice(kind, KINDS, "record kind")


def _owner(record: Report | Case) -> dict[str, int | None]:
    """Return the owner columns of a row on this record."""
    if isinstance(record, Report):
        return {"report_id": record.id, "case_id": None}
    return {"report_id": None, "case_id": record.id}


def mark_view(row: MarkRow, photo_ids: list[int]) -> dict[str, Any]:
    mark = mark_of(row)
    return {
        "id": row.id,
        "type": row.type,
        "region": row.region,
        "side": row.side,
        "aspect": row.aspect,
        "location": mark.location(),
        "description": row.description,
        "keywords": list(row.keywords or []),
        "summary": mark.summary(),
        "photo_image_ids": photo_ids,
        "created_at": iso(row.created_at),
    }


def effect_view(row: Effect) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "colour": row.colour,
        "inscription": row.inscription,
        "description": row.description,
        "created_at": iso(row.created_at),
    }


def reference_view(row: PrimaryReference) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "holder": row.holder,
        "sample_reference": row.sample_reference,
        "note": row.note,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


class ReconciliationService:
    """Record the facts beyond the face, explain exclusions and agreement, search without a face."""

    def __init__(self, ctx: WorkflowContext, matching: MatchingService) -> None:
        self.ctx = ctx
        self.matching = matching

    # -- matching after a change ------------------------------------------------------------------
    def _rematch(self, actor: User, kind: str, record_id: int) -> dict[str, Any]:
        if kind == "case":
            return self.matching.match_case_by_id(actor, record_id)
        return self.matching.match_report_by_id(actor, record_id)

    # -- descriptors and kind -----------------------------------------------------------------------
    def set_descriptors(
        self, actor: User, kind: str, reference: str | int, descriptors: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace the structured descriptors of a report or case (fields left out become unknown),
        then match it again. The audit trail names the fields that changed, never their values
        (it outlives an erasure). Role: intake or examiner.

        Returns ``{"descriptors", "matching"}``.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (an unknown field or code, an impossible value).
        """
        kind = _kind(kind)
        checked = parse_descriptors(descriptors, record=kind)
        with self.ctx.transaction(actor, f"{kind}.describe", [f"{kind}:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, f"describing a {kind}")
            record = queries.record_by_reference(session, kind, reference)
            before = dict(record.descriptors or {})
            stored = checked.stored()
            changed = sorted(k for k in set(before) | set(stored) if before.get(k) != stored.get(k))
            record.descriptors = stored
            self.ctx.audit(session, user, f"{kind}.describe", [f"{kind}:{record.id}"], {"changed": changed})
            record_id = record.id
        return {"descriptors": checked.to_dict(), "matching": self._rematch(actor, kind, record_id)}

    def set_case_kind(
        self, actor: User, reference: str | int, kind: str, *, parent_case: str | int | None = None
    ) -> dict[str, Any]:
        """Set a case's kind (deceased; living and unable to identify themselves; detained; body part,
        with the case of the body it belongs to once re-associated). The condition follows the kind.
        Role: intake or examiner.

        Returns ``{"kind", "condition", "parent_case"}``.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (unknown kind, a parent for a whole body, a
            case its own parent), ConflictError (an identified case changing between dead and alive).
        """
        check_choice(kind, CASE_KINDS, "case kind")
        with self.ctx.transaction(actor, "case.kind", [f"case:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "setting a case's kind")
            case = queries.case_by_reference(session, reference)
            parent = queries.case_by_reference(session, parent_case) if parent_case not in (None, "") else None
            if parent is not None and kind != "body_part":
                raise InvalidInput("parent_case: only a body part belongs to another case")
            if parent is not None and parent.id == case.id:
                raise InvalidInput("parent_case: a case cannot be its own parent")
            condition = CASE_KIND_CONDITION[kind]
            if case.status == "identified" and condition != case.condition:
                raise ConflictError(
                    f"case {case.reference} is identified as {case.condition}: withdraw the identification first"
                )
            before = {"kind": case.kind, "parent_case_id": case.parent_case_id}
            case.kind, case.condition = kind, condition
            case.parent_case_id = parent.id if parent is not None else None
            records = [f"case:{case.id}"] + ([f"case:{parent.id}"] if parent is not None else [])
            self.ctx.audit(
                session,
                user,
                "case.kind",
                records,
                {"before": before, "kind": kind, "parent_case_id": case.parent_case_id},
            )
            return {"kind": kind, "condition": condition, "parent_case": parent.reference if parent else None}

    # -- marks ----------------------------------------------------------------------------------------
    def add_mark(
        self,
        actor: User,
        kind: str,
        reference: str | int,
        mark: dict[str, Any],
        photos: list[PhotoInput] | None = None,
    ) -> dict[str, Any]:
        """Record a distinguishing mark (type, coded body location, description, keywords) with its
        photos, then match the record again. Role: intake or examiner.

        Returns ``{"mark", "matching"}``.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (an unknown code, a photo that is not a
            readable image).
        """
        kind = _kind(kind)
        checked = parse_mark(mark)
        with self.ctx.transaction(actor, "mark.add", [f"{kind}:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, f"recording a mark on a {kind}")
            record = queries.record_by_reference(session, kind, reference)
            row = MarkRow(
                **_owner(record),
                type=checked.type,
                region=checked.region,
                side=checked.side,
                aspect=checked.aspect,
                description=checked.description,
                keywords=list(checked.keywords),
                created_by_id=user.id,
            )
            session.add(row)
            session.flush()
            photo_ids = [self._store_photo(session, user, row, p) for p in photos or []]
            self.ctx.audit(
                session,
                user,
                "mark.add",
                [f"{kind}:{record.id}", f"mark:{row.id}", *(f"image:{i}" for i in photo_ids)],
                {"type": row.type, "region": row.region, "photos": len(photo_ids)},
            )
            view, record_id = mark_view(row, photo_ids), record.id
        return {"mark": view, "matching": self._rematch(actor, kind, record_id)}

    def _store_photo(self, session: Session, user: User, mark: MarkRow, photo: PhotoInput) -> int:
        try:
            image_id = self.ctx.gallery.store_plain_image(session, ImageInput(photo.name, photo.data))
        except Exception as exc:  # ImageError and its kin: say which photo
            message = getattr(exc, "message", None) or str(exc)
            raise InvalidInput(f"mark photo {photo.name!r}: {message}") from None
        session.add(MarkPhoto(mark_id=mark.id, image_id=image_id, added_by_id=user.id))
        return image_id

    def add_mark_photos(self, actor: User, mark_id: int, photos: list[PhotoInput]) -> dict[str, Any]:
        """Add photos to a recorded mark. Role: intake or examiner.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (not a readable image).
        """
        with self.ctx.transaction(actor, "mark.photo", [f"mark:{mark_id}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "adding a mark's photo")
            row: MarkRow = queries.row_by_id(session, MarkRow, mark_id, "mark")
            added = [self._store_photo(session, user, row, p) for p in photos]
            self.ctx.audit(session, user, "mark.photo", [f"mark:{row.id}", *(f"image:{i}" for i in added)])
            return mark_view(row, self._photo_ids(session, [row.id]).get(row.id, []))

    def remove_mark(self, actor: User, mark_id: int, *, reason: str) -> dict[str, Any]:
        """Remove a mark recorded in error (its photos stay until the record's erasure, in the audit
        sense: the image rows are removed, the files by the next erasure sweep). Role: intake or examiner.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (no reason).
        """
        why = required_text(reason, "reason", max_len=500)
        with self.ctx.transaction(actor, "mark.remove", [f"mark:{mark_id}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "removing a mark")
            row: MarkRow = queries.row_by_id(session, MarkRow, mark_id, "mark")
            owner = f"report:{row.report_id}" if row.report_id else f"case:{row.case_id}"
            self.ctx.audit(session, user, "mark.remove", [f"mark:{row.id}", owner], {"reason": why})
            session.delete(row)
            return {"removed": mark_id}

    # -- effects and primary references -----------------------------------------------------------
    def add_effect(self, actor: User, kind: str, reference: str | int, effect: dict[str, Any]) -> dict[str, Any]:
        """Record a piece of clothing or a personal effect (kind, colour, inscription, description).
        Role: intake or examiner.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput.
        """
        kind = _kind(kind)
        refuse_unknown(effect, {"kind", "colour", "inscription", "description"}, "effect")
        values = {
            "kind": check_choice(str(effect.get("kind") or ""), EFFECT_KINDS, "effect kind"),
            "colour": optional_text(effect.get("colour"), "effect colour", max_len=100) or "",
            "inscription": optional_text(effect.get("inscription"), "effect inscription", max_len=500) or "",
            "description": optional_text(effect.get("description"), "effect description", max_len=2000) or "",
        }
        with self.ctx.transaction(actor, "effect.add", [f"{kind}:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, f"recording an effect on a {kind}")
            record = queries.record_by_reference(session, kind, reference)
            row = Effect(**_owner(record), **values, created_by_id=user.id)
            session.add(row)
            session.flush()
            self.ctx.audit(session, user, "effect.add", [f"{kind}:{record.id}", f"effect:{row.id}"], {"kind": row.kind})
            return effect_view(row)

    def add_primary_reference(
        self, actor: User, kind: str, reference: str | int, item: dict[str, Any]
    ) -> dict[str, Any]:
        """Record where a primary identifier is held: a DNA reference sample, dental records or
        fingerprints (kind, status, holder, sample reference, note). References only, never the
        data. Role: intake or examiner.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (unknown kind or status for that kind).
        """
        kind = _kind(kind)
        refuse_unknown(item, {"kind", "status", "holder", "sample_reference", "note"}, "primary reference")
        ref_kind = check_choice(str(item.get("kind") or ""), PRIMARY_KINDS, "primary reference kind")
        values = {
            "kind": ref_kind,
            "status": check_choice(str(item.get("status") or ""), REFERENCE_STATUSES[ref_kind], f"{ref_kind} status"),
            "holder": optional_text(item.get("holder"), "holder", max_len=300) or "",
            "sample_reference": optional_text(item.get("sample_reference"), "sample reference", max_len=300) or "",
            "note": optional_text(item.get("note"), "note", max_len=2000) or "",
        }
        with self.ctx.transaction(actor, "primary_reference.add", [f"{kind}:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, f"recording a primary reference on a {kind}")
            record = queries.record_by_reference(session, kind, reference)
            row = PrimaryReference(**_owner(record), **values, created_by_id=user.id)
            session.add(row)
            session.flush()
            self.ctx.audit(
                session,
                user,
                "primary_reference.add",
                [f"{kind}:{record.id}", f"primary_reference:{row.id}"],
                {"kind": row.kind, "status": row.status},
            )
            return reference_view(row)

    def set_primary_reference_status(self, actor: User, reference_id: int, status: str) -> dict[str, Any]:
        """Move a primary reference on (e.g. a DNA sample requested -> collected -> profiled ->
        matched). Role: intake or examiner.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (a status that kind does not have).
        """
        with self.ctx.transaction(actor, "primary_reference.status", [f"primary_reference:{reference_id}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "updating a primary reference")
            row: PrimaryReference = queries.row_by_id(session, PrimaryReference, reference_id, "primary reference")
            before = row.status
            row.status = check_choice(status, REFERENCE_STATUSES[row.kind], f"{row.kind} status")
            self.ctx.audit(
                session,
                user,
                "primary_reference.status",
                [f"primary_reference:{row.id}"],
                {"before": before, "after": row.status},
            )
            return reference_view(row)

    # -- reading ----------------------------------------------------------------------------------------
    @staticmethod
    def _photo_ids(session: Session, mark_ids: list[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        rows = session.execute(
            select(MarkPhoto.mark_id, MarkPhoto.image_id).where(MarkPhoto.mark_id.in_(mark_ids)).order_by(MarkPhoto.id)
        )
        for mark_id, image_id in rows:
            out.setdefault(mark_id, []).append(image_id)
        return out

    def facts(self, actor: User, kind: str, reference: str | int) -> dict[str, Any]:
        """Return what a report or case records beyond the face: descriptors, marks (with photo
        image ids), effects, primary references, the kind of a case, its exclusions (the reports its
        facts rule out, each with the reasons) and the rejected leads of the record (who rejected
        each, and why). Any reading role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        kind = _kind(kind)
        with self.ctx.transaction(actor, f"{kind}.facts", [f"{kind}:{reference}"]) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, f"reading a {kind}")
            record = queries.record_by_reference(session, kind, reference)
            owner = MarkRow.report_id if kind == "report" else MarkRow.case_id
            marks = list(session.execute(select(MarkRow).where(owner == record.id).order_by(MarkRow.id)).scalars())
            photos = self._photo_ids(session, [m.id for m in marks])
            effects = session.execute(
                select(Effect)
                .where((Effect.report_id if kind == "report" else Effect.case_id) == record.id)
                .order_by(Effect.id)
            ).scalars()
            refs = session.execute(
                select(PrimaryReference)
                .where((PrimaryReference.report_id if kind == "report" else PrimaryReference.case_id) == record.id)
                .order_by(PrimaryReference.id)
            ).scalars()
            out: dict[str, Any] = {
                "reference": record.reference,
                "descriptors": parse_descriptors(dict(record.descriptors or {}), record=kind).to_dict(),
                "marks": [mark_view(m, photos.get(m.id, [])) for m in marks],
                "effects": [effect_view(e) for e in effects],
                "primary_references": [reference_view(r) for r in refs],
                "rejected_leads": self._rejected(session, kind, record.id),
            }
            if isinstance(record, Case):
                parent = session.get(Case, record.parent_case_id) if record.parent_case_id else None
                out["kind"] = record.kind
                out["parent_case"] = parent.reference if parent else None
                excluded = self.matching.exclusions_for_case(session, record)
                refs_by_id = {
                    r.id: r.reference for r in session.execute(select(Report).where(Report.id.in_(excluded))).scalars()
                }
                out["exclusions"] = [
                    {"report": refs_by_id.get(rid), "report_id": rid, "reasons": [e.reason for e in ex]}
                    for rid, ex in sorted(excluded.items())
                ]
            return out

    @staticmethod
    def _rejected(session: Session, kind: str, record_id: int) -> list[dict[str, Any]]:
        """Return the record's rejected leads, each with the rejections that stand (who, why, when)."""
        column = Lead.report_id if kind == "report" else Lead.case_id
        leads = list(session.execute(select(Lead).where(column == record_id, Lead.status == "rejected")).scalars())
        out = []
        for lead in leads:
            reviews = [r for r in queries.reviews_of(session, lead.id) if r.id > (lead.reopened_after_review_id or 0)]
            names = queries.usernames(session, {r.reviewer_id for r in reviews})
            case, report = session.get(Case, lead.case_id), session.get(Report, lead.report_id)
            out.append(
                {
                    "lead_id": lead.id,
                    "case": case.reference if case else None,
                    "report": report.reference if report else None,
                    "rejections": [
                        {"by": names.get(r.reviewer_id), "rationale": r.rationale, "at": iso(r.created_at)}
                        for r in reviews
                        if r.decision == "reject"
                    ],
                }
            )
        return out

    def lead_agreement(self, actor: User, lead_id: int) -> dict[str, Any]:
        """Return a lead's agreement beyond the face as the records stand now: the verdict per
        descriptor, the corresponding marks with their photos (side by side on the lead page), the
        exclusions that apply to the pair (when a search was widened past them), and the lead's basis.
        Any reading role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "lead.agreement", [f"lead:{lead_id}"]) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "reading a lead")
            lead = queries.lead_by_id(session, lead_id)
            case, report = session.get(Case, lead.case_id), session.get(Report, lead.report_id)
            assert case is not None and report is not None
            cfacts = case_facts(session, case)
            rfacts = report_facts(session, [report])[report.id]
            rules = exclusion_rules(self.ctx.settings_in(session))
            screened = None if excluded_by(rfacts, cfacts, rules) else rules  # a widened pair was not screened
            found = agreement_of(rfacts, cfacts, screened)
            photos = self._photo_ids(session, [m.id for m in (*rfacts.marks, *cfacts.marks) if m.id is not None])
            marks = []
            for pair in found.marks:
                view = pair.to_dict()
                view["report_photo_image_ids"] = photos.get(pair.report_mark.id or -1, [])
                view["case_photo_image_ids"] = photos.get(pair.case_mark.id or -1, [])
                marks.append(view)
            return {
                "lead_id": lead.id,
                "basis": lead.basis,
                **found.to_dict(),
                "marks": marks,
                "exclusions": [e.to_dict() for e in excluded_by(rfacts, cfacts, rules)],
            }

    # -- search without a face ------------------------------------------------------------------------
    def search(
        self,
        actor: User,
        *,
        target: str,
        descriptors: dict[str, Any] | None = None,
        marks: list[dict[str, Any]] | None = None,
        date_of_birth: str | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Search reports (``target`` ``reports``: the query describes an unidentified person, as a
        case would) or cases (``cases``: the query describes a missing person, as a report would)
        by descriptors and marks, without a face. Records the query's facts rule out are left out;
        the rest are ranked by agreement (log10 likelihood ratio, :mod:`facetrace.workflow.reconcile.agreement`).
        Marks never make a "match": the results are leads for examiners. Any reading role.

        Returns ``{"target", "results": [{"reference", "id", "agreement", "adjusted_fmr"}], "excluded"}``.

        Raises:
            PermissionDenied, InvalidInput (bad codes or values, nothing to search on).
        """
        check_choice(target, ("reports", "cases"), "target")
        query_kind = "case" if target == "reports" else "report"
        desc = parse_descriptors(descriptors or {}, record=query_kind)
        date_of_birth = check_date_of_birth(date_of_birth)
        query_marks = [parse_mark(m) for m in marks or []]
        if not desc.known() and not query_marks:
            raise InvalidInput("search: give at least one descriptor or one mark")
        limit = max(1, min(int(limit), SEARCH_LIMIT))
        with self.ctx.transaction(actor, "facts.search", []) as session:
            user = self.ctx.acting_user(session, actor, READ_ROLES, "searching by marks and descriptors")
            rules = exclusion_rules(self.ctx.settings_in(session))
            scored: list[tuple[float, dict[str, Any]]] = []
            excluded = 0
            if target == "reports":
                query = RecordFacts(desc, found_on=None, marks=query_marks)
                reports = list(session.execute(select(Report).where(Report.status != "merged")).scalars())
                facts = report_facts(session, reports)
                candidates = [(r.reference, r.id, facts[r.id], query) for r in reports]
            else:
                query = RecordFacts(desc, date_of_birth, marks=query_marks)
                cases = list(session.execute(select(Case).where(Case.status != "closed")).scalars())
                facts = cases_facts(session, cases)
                candidates = [(c.reference, c.id, query, facts[c.id]) for c in cases]
            for reference, record_id, report_side, case_side in candidates:
                if excluded_by(report_side, case_side, rules):
                    excluded += 1
                    continue
                found = agreement_of(report_side, case_side, rules)
                if found.log10_lr > 0:
                    scored.append((found.log10_lr, {"reference": reference, "id": record_id, **self._hit(found)}))
            scored.sort(key=lambda item: (-item[0], item[1]["id"]))
            self.ctx.audit(session, user, "facts.search", [], {"target": target, "results": min(len(scored), limit)})
            return {"target": target, "results": [hit for _, hit in scored[:limit]], "excluded": excluded}

    @staticmethod
    def _hit(found: Any) -> dict[str, Any]:
        return {"agreement": found.to_dict(), "adjusted_fmr": adjusted_fmr(None, found), "basis": "marks"}

    # -- saved exclusions -----------------------------------------------------------------------------
    def reopen_lead(self, actor: User, lead_id: int, *, rationale: str) -> dict[str, Any]:
        """Reopen a rejected lead with a rationale: the rejections before it no longer stand (they stay
        in its history), and the lead waits for examiners again. Continuous matching never reopens
        one by itself. Role: reviewer.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (no rationale), ConflictError (not rejected).
        """
        why = required_text(rationale, "rationale")
        with self.ctx.transaction(actor, "lead.reopen", [f"lead:{lead_id}"]) as session:
            user = self.ctx.acting_user(session, actor, REOPEN_ROLES, "reopening a rejected lead")
            lead = queries.lead_by_id(session, lead_id, for_update=True)
            if lead.status != "rejected":
                raise ConflictError(f"lead {lead.id} is {lead.status}, not rejected")
            last = session.execute(
                select(Review.id).where(Review.lead_id == lead.id).order_by(Review.id.desc())
            ).scalar()
            lead.status = "open"
            lead.reopened_after_review_id = last
            lead.reopened_by_id = user.id
            lead.reopened_at = datetime.now(UTC)
            lead.reopen_rationale = why
            case = session.get(Case, lead.case_id)
            if case is not None and case.status == "open":
                case.status = "under_review"
            self.ctx.audit(
                session,
                user,
                "lead.reopen",
                [f"lead:{lead.id}", f"case:{lead.case_id}", f"report:{lead.report_id}"],
                {"rationale": why},
            )
            return lead_view(lead)
