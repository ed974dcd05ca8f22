"""Missing-person reports, with their contacts and reference photos.

A report's reference photos are enrolled into the report's own gallery person (external id
``report:REFERENCE``; see :mod:`facetrace.workflow.photos`). After every change the report is
matched again (:class:`facetrace.workflow.matching.MatchingService`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError
from facetrace.store.accounts import User
from facetrace.store.models import Image, Person
from facetrace.store.name_search import match_view, ranked_matches, rows_in_order
from facetrace.store.workflow_models import REPORT_STATUSES, Contact, DuplicateFlag, Identification, Lead, Report
from facetrace.workflow import queries
from facetrace.workflow.common import (
    READ_ROLES,
    RECORD_ROLES,
    InvalidInput,
    PhotoInput,
    as_utc,
    check_choice,
    check_date_of_birth,
    check_email,
    check_language,
    check_reference,
    contact_view,
    duplicate_view,
    identification_view,
    lead_view,
    optional_text,
    parse_date,
    report_view,
    required_text,
)
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.fields import UNSET, apply_audited_changes, provisional_reference
from facetrace.workflow.matching import MatchingService
from facetrace.workflow.names import similar_names
from facetrace.workflow.photos import ReportPhotosOutcome, check_photos, enroll_report_photos, image_view
from facetrace.workflow.reconcile.facts import parse_descriptors
from facetrace.workflow.retention import parse_retain_until

MANUAL_REPORT_STATUSES = ("missing", "located_alive", "closed")  # the others follow identifications/merges
# Personal fields whose values the audit trail never holds (it outlives an erasure); contact
# details are also encrypted at rest (facetrace.store.schema.encrypted_columns).
PRIVATE_REPORT_FIELDS = frozenset({"name", "date_of_birth", "description", "reported_by"})
PRIVATE_CONTACT_FIELDS = frozenset({"name", "email", "phone"})


def person_external_id(reference: str) -> str:
    """Return the gallery person external id of the report with this reference."""
    return f"report:{reference}"


def check_contact(data: dict[str, Any]) -> dict[str, Any]:
    """Return a validated contact. Raises InvalidInput."""
    unknown = set(data) - {"name", "relation", "email", "phone", "language"}
    if unknown:
        raise InvalidInput(f"unknown contact field(s): {', '.join(sorted(unknown))}")
    contact = {
        "name": required_text(data.get("name"), "contact name", max_len=300),
        "relation": required_text(data.get("relation"), "contact relation", max_len=100),
        "email": check_email(data.get("email")),
        "phone": optional_text(data.get("phone"), "contact phone", max_len=50),
        "language": check_language(data.get("language")),
    }
    if not contact["email"] and not contact["phone"]:
        raise InvalidInput(f"contact {contact['name']!r} needs an e-mail address or a phone number")
    return contact


class ReportService:
    """Create, change, list and show reports; register and correct their contacts; add photos."""

    def __init__(self, ctx: WorkflowContext, matching: MatchingService) -> None:
        self.ctx = ctx
        self.matching = matching

    def create_report(
        self,
        actor: User,
        *,
        name: str,
        reported_by: str,
        source: str,
        legal_basis: str,
        consent: bool = False,
        consent_date: str | date | None = None,
        date_of_birth: str | None = None,
        description: str = "",
        reference: str | None = None,
        contacts: list[dict[str, Any]] | None = None,
        photos: list[PhotoInput] | None = None,
        retain_until: str | datetime | None = None,
        descriptors: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a missing-person report with its provenance, contacts and reference photos,
        then match it against the open cases. Role: intake or examiner.

        Returns ``{"report", "contacts", "photos", "matching", "similar_names"}`` (``photos`` lists
        per-file errors: a photo with no usable face is not enrolled, the rest are; ``similar_names``
        lists the reports whose name is the same or a close spelling across scripts: possible
        duplicates that no photo may show).

        Raises:
            InvalidInput: a missing or malformed field.
            ConflictError: the reference is taken.
            PermissionDenied: the actor lacks the role.
        """
        fields = {
            "name": required_text(name, "name", max_len=300),
            "reported_by": required_text(reported_by, "reported by (provenance)", max_len=300),
            "source": required_text(source, "source (provenance)", max_len=300),
            "legal_basis": required_text(legal_basis, "legal basis (provenance)", max_len=300),
            "consent": bool(consent),
            "descriptors": parse_descriptors(descriptors or {}, record="report").stored(),
            "consent_date": parse_date(consent_date, "consent date"),
            "date_of_birth": check_date_of_birth(date_of_birth),
            "description": (description or "").strip()[:20_000],
            "retain_until": parse_retain_until(retain_until),
        }
        if fields["consent_date"] and not fields["consent"]:
            raise InvalidInput("a consent date is given but consent is not")
        ref = check_reference(reference, "report")
        checked_contacts = [check_contact(c) for c in contacts or []]
        photos = check_photos(photos)
        with self.ctx.transaction(actor, "report.create", ["report"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "creating a report")
            if ref and queries.reference_taken(session, "report", ref):
                raise ConflictError(f"a report with reference {ref!r} already exists")
            report = Report(reference=provisional_reference(ref), created_by_id=user.id, **fields)
            session.add(report)
            session.flush()
            if not ref:
                report.reference = f"R-{report.id:06d}"
            rows = [Contact(report_id=report.id, created_by_id=user.id, **c) for c in checked_contacts]
            session.add_all(rows)
            session.flush()
            self.ctx.audit(
                session,
                user,
                "report.create",
                [f"report:{report.id}", *(f"contact:{c.id}" for c in rows)],
                {"reference": report.reference, "contacts": len(rows), "consent": report.consent},
            )
            result: dict[str, Any] = {"report": report_view(report), "contacts": [contact_view(c) for c in rows]}
            report_id = report.id
        result["photos"] = (
            self._enroll_photos(actor, report_id, photos).to_dict()
            if photos
            else {"enrolled": 0, "skipped": 0, "errors": []}
        )
        result["matching"] = self.matching.match_report_by_id(actor, report_id)
        result["report"] = queries.report_snapshot(self.ctx.db, report_id)
        with self.ctx.db.sessions() as session:
            created = session.get(Report, report_id)
            assert created is not None
            result["similar_names"] = similar_names(session, created)  # the same person reported before?
        return result

    def update_report(
        self,
        actor: User,
        reference: str | int,
        *,
        name: str | None = None,
        date_of_birth: str | None = UNSET,
        description: str | None = None,
        status: str | None = None,
        reported_by: str | None = None,
        source: str | None = None,
        legal_basis: str | None = None,
        consent: bool | None = None,
        consent_date: str | date | None = UNSET,
        retain_until: str | datetime | None = UNSET,
    ) -> dict[str, Any]:
        """Change a report's fields (None leaves a field as it is), then match it again.

        Statuses set by hand are missing, located_alive and closed; identified_deceased and
        located_alive also follow identifications, merged follows a merge. Role: intake or examiner.

        Returns ``{"report", "changed", "matching"}``.

        Raises:
            NotFoundError, InvalidInput, ConflictError (merged report, or a status that a confirmed
            identification contradicts), PermissionDenied.
        """
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = required_text(name, "name", max_len=300)
        if date_of_birth is not UNSET:
            changes["date_of_birth"] = check_date_of_birth(date_of_birth)
        if description is not None:
            changes["description"] = description.strip()[:20_000]
        if reported_by is not None:
            changes["reported_by"] = required_text(reported_by, "reported by (provenance)", max_len=300)
        if source is not None:
            changes["source"] = required_text(source, "source (provenance)", max_len=300)
        if legal_basis is not None:
            changes["legal_basis"] = required_text(legal_basis, "legal basis (provenance)", max_len=300)
        if consent is not None:
            changes["consent"] = bool(consent)
        if consent_date is not UNSET:
            changes["consent_date"] = parse_date(consent_date, "consent date")
        if retain_until is not UNSET:  # None (or empty) removes the date
            changes["retain_until"] = parse_retain_until(retain_until)
        if status is not None:
            changes["status"] = check_choice(status, MANUAL_REPORT_STATUSES, "status")
        if not changes:
            raise InvalidInput("nothing to change")
        with self.ctx.transaction(actor, "report.update", [f"report:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "changing a report")
            report = queries.report_by_reference(session, reference)
            if report.status == "merged":
                raise ConflictError(f"report {report.reference} was merged; change the report it was merged into")
            identified = queries.confirmed_identification_id(session, report_id=report.id) is not None
            if "status" in changes and changes["status"] != "closed" and identified:
                raise ConflictError(
                    f"report {report.reference} has a confirmed identification; withdraw it before changing the status"
                )
            if changes.get("consent") is False and "consent_date" not in changes:
                changes["consent_date"] = None
            changed, detail = apply_audited_changes(report, changes, PRIVATE_REPORT_FIELDS)
            if report.person_id is not None:
                person = session.get(Person, report.person_id)
                if person is not None:
                    person.retain_until = report.retain_until  # the report's photos go with the report
                    person.name = report.name
                    person.source = report.source
                    person.legal_basis = report.legal_basis
            self.ctx.audit(session, user, "report.update", [f"report:{report.id}"], detail)
            report_id = report.id
        return {
            "report": queries.report_snapshot(self.ctx.db, report_id),
            "changed": changed,
            "matching": self.matching.match_report_by_id(actor, report_id),
        }

    def add_report_photos(self, actor: User, reference: str | int, photos: list[PhotoInput]) -> dict[str, Any]:
        """Enroll more reference photos into a report's gallery person, then match it again.
        Idempotent: a photo already enrolled for the report is skipped. Role: intake or examiner.

        Returns ``{"report", "photos": {"enrolled", "skipped", "errors"}, "matching"}``.

        Raises:
            NotFoundError, InvalidInput (no photos), ConflictError (merged report), PermissionDenied.
            ImageError, NoFaceError, PoorQualityError: no photo could be enrolled (nothing was stored).
        """
        photos = check_photos(photos)
        if not photos:
            raise InvalidInput("no photos given")
        with self.ctx.transaction(actor, "report.photos_add", [f"report:{reference}"]) as session:
            self.ctx.acting_user(session, actor, RECORD_ROLES, "adding photos to a report")
            report = queries.report_by_reference(session, reference)
            if report.status == "merged":
                raise ConflictError(
                    f"report {report.reference} was merged; add photos to the report it was merged into"
                )
            report_id = report.id
        added = self._enroll_photos(actor, report_id, photos)
        if added.refusal is not None:
            raise added.refusal  # nothing was stored: the photos' own error, never a 201
        return {
            "report": queries.report_snapshot(self.ctx.db, report_id),
            "photos": added.to_dict(),
            "matching": self.matching.match_report_by_id(actor, report_id),
        }

    def _enroll_photos(self, actor: User, report_id: int, photos: list[PhotoInput]) -> ReportPhotosOutcome:
        """Enroll photos into the report's gallery person (the gallery's own transactions), then
        link the person to the report; return what was done. Audited."""
        with self.ctx.db.sessions() as session:
            report = session.get(Report, report_id)
            assert report is not None
            person: dict[str, Any] = {
                "external_id": person_external_id(report.reference),
                "name": report.name,
                "source": report.source,
                "legal_basis": report.legal_basis,
                "attributes": {"report": report.reference},
                "retain_until": as_utc(report.retain_until),  # the photos go with the report
            }
        outcome = enroll_report_photos(self.ctx.gallery, person, photos)
        with self.ctx.transaction(actor, "report.photos_add", [f"report:{report_id}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "adding photos to a report")
            report = session.get(Report, report_id)
            assert report is not None
            person_id = session.execute(select(Person.id).where(Person.external_id == person["external_id"])).scalar()
            if person_id is not None and report.person_id != person_id:
                report.person_id = person_id
            records = [f"report:{report.id}"] + ([f"person:{person_id}"] if person_id else [])
            self.ctx.audit(
                session,
                user,
                "report.photos_add",
                records,
                {"enrolled": outcome.enrolled, "skipped": outcome.skipped, "errors": len(outcome.errors)},
            )
        return outcome

    def add_contact(
        self,
        actor: User,
        reference: str | int,
        *,
        name: str,
        relation: str,
        email: str | None = None,
        phone: str | None = None,
        language: str = "en",
    ) -> dict[str, Any]:
        """Register a family member or representative on a report; return the contact.
        Role: intake or examiner.

        Raises:
            NotFoundError, InvalidInput, ConflictError (merged report), PermissionDenied.
        """
        data = check_contact({"name": name, "relation": relation, "email": email, "phone": phone, "language": language})
        with self.ctx.transaction(actor, "contact.create", [f"report:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "registering a contact")
            report = queries.report_by_reference(session, reference)
            if report.status == "merged":
                raise ConflictError(
                    f"report {report.reference} was merged; add the contact to the report it was merged into"
                )
            contact = Contact(report_id=report.id, created_by_id=user.id, **data)
            session.add(contact)
            session.flush()
            self.ctx.audit(session, user, "contact.create", [f"report:{report.id}", f"contact:{contact.id}"])
            return contact_view(contact)

    def update_contact(
        self,
        actor: User,
        contact_id: int,
        *,
        name: str | None = None,
        relation: str | None = None,
        email: str | None = UNSET,
        phone: str | None = UNSET,
        language: str | None = None,
    ) -> dict[str, Any]:
        """Correct a contact's details (None leaves a field as it is); return the contact.
        Notifications already drafted keep the address they were approved for. Role: intake or examiner.

        Raises:
            NotFoundError, InvalidInput, PermissionDenied.
        """
        with self.ctx.transaction(actor, "contact.update", [f"contact:{contact_id}"]) as session:
            user = self.ctx.acting_user(session, actor, RECORD_ROLES, "changing a contact")
            contact: Contact = queries.row_by_id(session, Contact, contact_id, "contact")
            merged = {
                "name": contact.name if name is None else name,
                "relation": contact.relation if relation is None else relation,
                "email": contact.email if email is UNSET else email,
                "phone": contact.phone if phone is UNSET else phone,
                "language": contact.language if language is None else language,
            }
            _, detail = apply_audited_changes(contact, check_contact(merged), PRIVATE_CONTACT_FIELDS)
            self.ctx.audit(
                session, user, "contact.update", [f"report:{contact.report_id}", f"contact:{contact.id}"], detail
            )
            return contact_view(contact)

    def list_reports(
        self,
        actor: User,
        *,
        status: str | None = None,
        query: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return reports (newest first), optionally by status or name/reference text. Any role.

        With ``query`` the reports are ranked by name across scripts and spellings
        (:mod:`facetrace.store.names`: "melnik" finds Melnyk, Мельник, Mel'nik): exact name keys
        first, then names or references containing the text, then close spellings, newest first
        within each; every item then carries ``name_match`` (``tier``, ``score``).

        Raises:
            PermissionDenied, InvalidInput (unknown status).
        """
        with self.ctx.transaction(actor, "report.list", []) as session:
            self.ctx.acting_user(session, actor, READ_ROLES, "listing reports")
            stmt = select(Report).order_by(Report.id.desc())
            if status:
                stmt = stmt.where(Report.status == check_choice(status, REPORT_STATUSES, "status"))
            text = (query or "").strip()
            if not text:
                rows = session.execute(queries.page(stmt, offset, limit)).scalars()
                return [report_view(r) for r in rows]
            like = f"%{text}%"
            candidates = stmt.with_only_columns(
                Report.id, Report.name_key, Report.name.ilike(like) | Report.reference.ilike(like)
            )
            matches = queries.page_of(ranked_matches(session, candidates, text), offset, limit)
            reports = rows_in_order(session, Report, [m.row_id for m in matches])
            return [{**report_view(r), "name_match": match_view(m)} for r, m in zip(reports, matches, strict=True)]

    def get_report(self, actor: User, reference: str | int, *, audited: bool = True) -> dict[str, Any]:
        """Return a report with its contacts, photos, leads, duplicate flags and identifications. Any role.

        Audited as ``report.view``, unless ``audited`` is False: a page that shows this report as
        part of another record appends that view's one event itself.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self.ctx.transaction(actor, "report.view", [f"report:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, READ_ROLES, "reading a report")
            report = queries.report_by_reference(session, reference)
            if audited:
                self.ctx.audit(session, user, "report.view", [f"report:{report.id}"])
            return self._report_detail(session, report)

    def _report_detail(self, session: Session, report: Report) -> dict[str, Any]:
        photos = []
        if report.person_id is not None:
            for image in session.execute(
                select(Image).where(Image.person_id == report.person_id).order_by(Image.id)
            ).scalars():
                photos.append(image_view(image))
        leads = session.execute(select(Lead).where(Lead.report_id == report.id).order_by(Lead.score.desc())).scalars()
        flags = session.execute(
            select(DuplicateFlag)
            .where((DuplicateFlag.report_id == report.id) | (DuplicateFlag.other_report_id == report.id))
            .order_by(DuplicateFlag.id)
        ).scalars()
        idents = session.execute(
            select(Identification).where(Identification.report_id == report.id).order_by(Identification.id)
        ).scalars()
        merged_from = session.execute(select(Report.reference).where(Report.merged_into_id == report.id)).scalars()
        return {
            **report_view(report),
            "contacts": [contact_view(c) for c in queries.contacts_of(session, report)],
            "photos": photos,
            "leads": [lead_view(lead) for lead in leads],
            "duplicates": [duplicate_view(f) for f in flags],
            "identifications": [identification_view(i) for i in idents],
            "merged_from": list(merged_from),
            "similar_names": similar_names(session, report),
        }
