"""Reports (with their contacts and reference photos) and cases (with their photos).

A report's reference photos go through :meth:`Gallery.enroll` into the report's own gallery
person (external id ``report:REFERENCE``). A case's photos go through the same face pipeline
(:meth:`Gallery.detect`) but are stored as images without a person, linked by ``case_images``,
so they never enter the gallery index. After every change the record is matched again
(:mod:`facetrace.workflow.matching`).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError, NoFaceError
from facetrace.gallery import EnrollItem, ImageInput
from facetrace.store.accounts import User
from facetrace.store.media import sha256_bytes
from facetrace.store.models import Face, Image, Person
from facetrace.store.workflow_models import (
    CONDITIONS,
    Case,
    CaseImage,
    Contact,
    DuplicateFlag,
    Identification,
    Lead,
    Report,
)
from facetrace.vision.decode import image_width_height
from facetrace.vision.pipeline import Face as DetectedFace
from facetrace.workflow.common import (
    ERASE_ROLES,
    READ_ROLES,
    RECORD_ROLES,
    InvalidInput,
    PhotoInput,
    as_utc,
    case_view,
    check_choice,
    check_date_of_birth,
    check_email,
    check_language,
    check_reference,
    contact_view,
    duplicate_view,
    identification_view,
    iso,
    lead_view,
    optional_text,
    parse_date,
    parse_datetime,
    report_view,
    required_text,
)
from facetrace.workflow.erasure import Eraser
from facetrace.workflow.matching import MatchingMixin
from facetrace.workflow.retention import parse_retain_until

MANUAL_REPORT_STATUSES = ("missing", "located_alive", "closed")  # the others follow identifications/merges
MANUAL_CASE_STATUSES = ("open", "closed")
MAX_PHOTOS = 50
_UNSET: Any = object()


def person_external_id(reference: str) -> str:
    """Return the gallery person external id of the report with this reference."""
    return f"report:{reference}"


def _safe_name(name: str, number: int) -> str:
    base = Path(name or "").name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or f"photo-{number}"
    if "." not in base:
        base += ".jpg"
    return base[:200]


def _check_contact(data: dict[str, Any]) -> dict[str, Any]:
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


def _check_photos(photos: list[PhotoInput] | None) -> list[PhotoInput]:
    photos = list(photos or [])
    if len(photos) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos at a time")
    for photo in photos:
        if not photo.data:
            raise InvalidInput(f"{photo.name or 'photo'}: empty file")
    return photos


class RecordsMixin(MatchingMixin):
    """Create, change, list and show reports, contacts and cases."""

    # -- reports ----------------------------------------------------------------------------
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
    ) -> dict[str, Any]:
        """Register a missing-person report with its provenance, contacts and reference photos,
        then match it against the open cases. Role: intake or examiner.

        Returns ``{"report", "contacts", "photos", "matching"}`` (``photos`` lists per-file errors:
        a photo with no usable face is not enrolled, the rest are).

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
            "consent_date": parse_date(consent_date, "consent date"),
            "date_of_birth": check_date_of_birth(date_of_birth),
            "description": (description or "").strip()[:20_000],
            "retain_until": parse_retain_until(retain_until),
        }
        if fields["consent_date"] and not fields["consent"]:
            raise InvalidInput("a consent date is given but consent is not")
        ref = check_reference(reference, "report")
        checked_contacts = [_check_contact(c) for c in contacts or []]
        photos = _check_photos(photos)
        with self._tx(actor, "report.create", ["report"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "creating a report")
            if ref and session.execute(select(Report.id).where(Report.reference == ref)).scalar() is not None:
                raise ConflictError(f"a report with reference {ref!r} already exists")
            report = Report(reference=ref or f"pending-{uuid.uuid4().hex}", created_by_id=user.id, **fields)
            session.add(report)
            session.flush()
            if not ref:
                report.reference = f"R-{report.id:06d}"
            rows = [Contact(report_id=report.id, created_by_id=user.id, **c) for c in checked_contacts]
            session.add_all(rows)
            session.flush()
            self._audit(
                session,
                user,
                "report.create",
                [f"report:{report.id}", *(f"contact:{c.id}" for c in rows)],
                {"reference": report.reference, "contacts": len(rows), "consent": report.consent},
            )
            result: dict[str, Any] = {"report": report_view(report), "contacts": [contact_view(c) for c in rows]}
            report_id = report.id
        if photos:
            added = self._enroll_report_photos(actor, report_id, photos)
            result["photos"] = added["photos"]
        else:
            result["photos"] = {"enrolled": 0, "skipped": 0, "errors": []}
        result["matching"] = self._match_report_now(actor, report_id)
        result["report"] = self._report_snapshot(report_id)
        return result

    def update_report(
        self,
        actor: User,
        reference: str | int,
        *,
        name: str | None = None,
        date_of_birth: str | None = _UNSET,
        description: str | None = None,
        status: str | None = None,
        reported_by: str | None = None,
        source: str | None = None,
        legal_basis: str | None = None,
        consent: bool | None = None,
        consent_date: str | date | None = _UNSET,
        retain_until: str | datetime | None = _UNSET,
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
        if date_of_birth is not _UNSET:
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
        if consent_date is not _UNSET:
            changes["consent_date"] = parse_date(consent_date, "consent date")
        if retain_until is not _UNSET:  # None (or empty) removes the date
            changes["retain_until"] = parse_retain_until(retain_until)
        if status is not None:
            changes["status"] = check_choice(status, MANUAL_REPORT_STATUSES, "status")
        if not changes:
            raise InvalidInput("nothing to change")
        with self._tx(actor, "report.update", [f"report:{reference}"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "changing a report")
            report = self._report(session, reference)
            if report.status == "merged":
                raise ConflictError(f"report {report.reference} was merged; change the report it was merged into")
            if "status" in changes and changes["status"] != "closed" and self._confirmed_for_report(session, report.id):
                raise ConflictError(
                    f"report {report.reference} has a confirmed identification; withdraw it before changing the status"
                )
            if changes.get("consent") is False and "consent_date" not in changes:
                changes["consent_date"] = None
            changed = [k for k, v in changes.items() if _differs(getattr(report, k), v)]
            for key in changed:
                setattr(report, key, changes[key])
            if report.person_id is not None:
                person = session.get(Person, report.person_id)
                if person is not None:
                    person.retain_until = report.retain_until  # the report's photos go with the report
                    person.name = report.name
                    person.source = report.source
                    person.legal_basis = report.legal_basis
            self._audit(session, user, "report.update", [f"report:{report.id}"], {"changed": changed})
            report_id = report.id
        return {
            "report": self._report_snapshot(report_id),
            "changed": changed,
            "matching": self._match_report_now(actor, report_id),
        }

    def add_report_photos(self, actor: User, reference: str | int, photos: list[PhotoInput]) -> dict[str, Any]:
        """Enroll more reference photos into a report's gallery person, then match it again.
        Idempotent: a photo already enrolled for the report is skipped. Role: intake or examiner.

        Returns ``{"report", "photos": {"enrolled", "skipped", "errors"}, "matching"}``.

        Raises:
            NotFoundError, InvalidInput (no photos), ConflictError (merged report), PermissionDenied.
        """
        photos = _check_photos(photos)
        if not photos:
            raise InvalidInput("no photos given")
        with self._tx(actor, "report.photos_add", [f"report:{reference}"]) as session:
            self._user(session, actor, RECORD_ROLES, "adding photos to a report")
            report = self._report(session, reference)
            if report.status == "merged":
                raise ConflictError(
                    f"report {report.reference} was merged; add photos to the report it was merged into"
                )
            report_id = report.id
        added = self._enroll_report_photos(actor, report_id, photos)
        return {
            "report": self._report_snapshot(report_id),
            "photos": added["photos"],
            "matching": self._match_report_now(actor, report_id),
        }

    def _enroll_report_photos(self, actor: User, report_id: int, photos: list[PhotoInput]) -> dict[str, Any]:
        """Enroll photos through :meth:`Gallery.enroll` (its own transactions), then link the person."""
        with self.db.sessions() as session:
            report = session.get(Report, report_id)
            assert report is not None
            item_fields: dict[str, Any] = {
                "external_id": person_external_id(report.reference),
                "name": report.name,
                "source": report.source,
                "legal_basis": report.legal_basis,
                "attributes": {"report": report.reference},
                "retain_until": as_utc(report.retain_until),  # the photos go with the report
            }
        named = [ImageInput(_safe_name(photo.name, n), photo.data) for n, photo in enumerate(photos)]
        outcome = self.gallery.enroll_images(EnrollItem(images=[], **item_fields), named)
        names = {image.name: photo.name for image, photo in zip(named, photos, strict=True)}
        errors = [
            {"file": names.get(e.get("file", ""), e.get("file", "")), "error": e["error"]} for e in outcome.errors
        ]
        with self._tx(actor, "report.photos_add", [f"report:{report_id}"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "adding photos to a report")
            report = session.get(Report, report_id)
            assert report is not None
            person_id = session.execute(
                select(Person.id).where(Person.external_id == item_fields["external_id"])
            ).scalar()
            if person_id is not None and report.person_id != person_id:
                report.person_id = person_id
            records = [f"report:{report.id}"] + ([f"person:{person_id}"] if person_id else [])
            self._audit(
                session,
                user,
                "report.photos_add",
                records,
                {
                    "enrolled": outcome.images_enrolled,
                    "skipped": outcome.images_skipped,
                    "errors": len(errors),
                },
            )
        return {"photos": {"enrolled": outcome.images_enrolled, "skipped": outcome.images_skipped, "errors": errors}}

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
        data = _check_contact(
            {"name": name, "relation": relation, "email": email, "phone": phone, "language": language}
        )
        with self._tx(actor, "contact.create", [f"report:{reference}"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "registering a contact")
            report = self._report(session, reference)
            if report.status == "merged":
                raise ConflictError(
                    f"report {report.reference} was merged; add the contact to the report it was merged into"
                )
            contact = Contact(report_id=report.id, created_by_id=user.id, **data)
            session.add(contact)
            session.flush()
            self._audit(session, user, "contact.create", [f"report:{report.id}", f"contact:{contact.id}"])
            return contact_view(contact)

    def update_contact(
        self,
        actor: User,
        contact_id: int,
        *,
        name: str | None = None,
        relation: str | None = None,
        email: str | None = _UNSET,
        phone: str | None = _UNSET,
        language: str | None = None,
    ) -> dict[str, Any]:
        """Correct a contact's details (None leaves a field as it is); return the contact.
        Notifications already drafted keep the address they were approved for. Role: intake or examiner.

        Raises:
            NotFoundError, InvalidInput, PermissionDenied.
        """
        with self._tx(actor, "contact.update", [f"contact:{contact_id}"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "changing a contact")
            contact: Contact = self._get(session, Contact, contact_id, "contact")
            merged = {
                "name": contact.name if name is None else name,
                "relation": contact.relation if relation is None else relation,
                "email": contact.email if email is _UNSET else email,
                "phone": contact.phone if phone is _UNSET else phone,
                "language": contact.language if language is None else language,
            }
            data = _check_contact(merged)
            changed = [k for k, v in data.items() if getattr(contact, k) != v]
            for key in changed:
                setattr(contact, key, data[key])
            self._audit(
                session,
                user,
                "contact.update",
                [f"report:{contact.report_id}", f"contact:{contact.id}"],
                {"changed": changed},
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

        Raises:
            PermissionDenied, InvalidInput (unknown status).
        """
        from facetrace.store.workflow_models import REPORT_STATUSES

        with self._tx(actor, "report.list", []) as session:
            self._user(session, actor, READ_ROLES, "listing reports")
            stmt = select(Report).order_by(Report.id.desc())
            if status:
                stmt = stmt.where(Report.status == check_choice(status, REPORT_STATUSES, "status"))
            if query:
                like = f"%{query.strip()}%"
                stmt = stmt.where(Report.name.ilike(like) | Report.reference.ilike(like))
            rows = session.execute(stmt.offset(max(0, offset)).limit(max(1, min(limit, 1000)))).scalars()
            return [report_view(r) for r in rows]

    def get_report(self, actor: User, reference: str | int) -> dict[str, Any]:
        """Return a report with its contacts, photos, leads, duplicate flags and identifications. Any role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self._tx(actor, "report.view", [f"report:{reference}"]) as session:
            user = self._user(session, actor, READ_ROLES, "reading a report")
            report = self._report(session, reference)
            self._audit(session, user, "report.view", [f"report:{report.id}"])
            return self._report_detail(session, report)

    def _report_detail(self, session: Session, report: Report) -> dict[str, Any]:
        photos = []
        if report.person_id is not None:
            for image in session.execute(
                select(Image).where(Image.person_id == report.person_id).order_by(Image.id)
            ).scalars():
                photos.append(_image_view(image))
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
            "contacts": [contact_view(c) for c in self._contacts_of(session, report)],
            "photos": photos,
            "leads": [lead_view(lead) for lead in leads],
            "duplicates": [duplicate_view(f) for f in flags],
            "identifications": [identification_view(i) for i in idents],
            "merged_from": list(merged_from),
        }

    @staticmethod
    def _confirmed_for_report(session: Session, report_id: int) -> bool:
        return (
            session.execute(
                select(Identification.id).where(
                    Identification.report_id == report_id, Identification.status == "confirmed"
                )
            ).scalar()
            is not None
        )

    # -- cases ------------------------------------------------------------------------------
    def create_case(
        self,
        actor: User,
        *,
        condition: str,
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

        Returns ``{"case", "photos", "matching"}``.

        Raises:
            InvalidInput, ImageError, NoFaceError, ConflictError (reference taken), PermissionDenied.
        """
        fields = {
            "condition": check_choice(condition, CONDITIONS, "condition"),
            "found_at": parse_datetime(found_at, "found at"),
            "found_place": (found_place or "").strip()[:500],
            "holding_organisation": (holding_organisation or "").strip()[:300],
            "description": (description or "").strip()[:20_000],
            "retain_until": parse_retain_until(retain_until),
        }
        ref = check_reference(reference, "case")
        photos = _check_photos(photos)
        with self._tx(actor, "case.create", ["case"]) as session:
            self._user(session, actor, RECORD_ROLES, "opening a case")  # before the costly analysis
        analysed = self._analyse_case_photos(photos)
        with self._tx(actor, "case.create", ["case"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "opening a case")
            if ref and session.execute(select(Case.id).where(Case.reference == ref)).scalar() is not None:
                raise ConflictError(f"a case with reference {ref!r} already exists")
            case = Case(reference=ref or f"pending-{uuid.uuid4().hex}", created_by_id=user.id, **fields)
            session.add(case)
            session.flush()
            if not ref:
                case.reference = f"C-{case.id:06d}"
            stored = self._store_case_photos(session, user, case, analysed)
            self._audit(
                session,
                user,
                "case.create",
                [f"case:{case.id}", *(f"image:{p['image_id']}" for p in stored)],
                {"reference": case.reference, "condition": case.condition, "photos": len(stored)},
            )
            case_id = case.id
        return {
            "case": self._case_snapshot(case_id),
            "photos": {"added": stored, "skipped": len(analysed) - len(stored)},
            "matching": self._match_case_now(actor, case_id),
        }

    def add_case_photos(self, actor: User, reference: str | int, photos: list[PhotoInput]) -> dict[str, Any]:
        """Add photos to a case (all checked first; a photo already on the case is skipped),
        then search it again. Role: intake or examiner.

        Returns ``{"case", "photos", "matching"}``.

        Raises:
            NotFoundError, InvalidInput, ImageError, NoFaceError, PermissionDenied.
        """
        photos = _check_photos(photos)
        if not photos:
            raise InvalidInput("no photos given")
        with self._tx(actor, "case.photos_add", [f"case:{reference}"]) as session:
            self._user(session, actor, RECORD_ROLES, "adding photos to a case")
            self._case(session, reference)
        analysed = self._analyse_case_photos(photos)
        with self._tx(actor, "case.photos_add", [f"case:{reference}"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "adding photos to a case")
            case = self._case(session, reference)
            stored = self._store_case_photos(session, user, case, analysed)
            self._audit(
                session,
                user,
                "case.photos_add",
                [f"case:{case.id}", *(f"image:{p['image_id']}" for p in stored)],
                {"added": len(stored), "skipped": len(analysed) - len(stored)},
            )
            case_id = case.id
        return {
            "case": self._case_snapshot(case_id),
            "photos": {"added": stored, "skipped": len(analysed) - len(stored)},
            "matching": self._match_case_now(actor, case_id),
        }

    def _analyse_case_photos(self, photos: list[PhotoInput]) -> list[tuple[PhotoInput, str, DetectedFace]]:
        """Detect the largest face of each photo. Raises ImageError / NoFaceError naming the file."""
        out = []
        for number, photo in enumerate(photos):
            name = photo.name or f"photo-{number}"
            faces = self.gallery.detect(photo.data, name)
            if not faces:
                raise NoFaceError(f"{name}: no face found; nothing was stored")
            out.append((photo, sha256_bytes(photo.data), faces[0]))
        return out

    def _store_case_photos(
        self, session: Session, user: User, case: Case, analysed: list[tuple[PhotoInput, str, DetectedFace]]
    ) -> list[dict[str, Any]]:
        existing = set(
            session.execute(
                select(Image.sha256).join(CaseImage, CaseImage.image_id == Image.id).where(CaseImage.case_id == case.id)
            ).scalars()
        )
        stored = []
        for number, (photo, digest, face) in enumerate(analysed):
            if digest in existing:
                continue
            existing.add(digest)
            name = _safe_name(photo.name, number)
            _, rel = self.gallery.media.put(photo.data, Path(name).suffix or ".jpg")
            width, height = image_width_height(photo.data, oriented=False)
            image = Image(
                person_id=None,
                sha256=digest,
                media_path=rel,
                original_name=(photo.name or name)[:500],
                width=width,
                height=height,
            )
            session.add(image)
            session.flush()
            row = Face.from_detection(face, image_id=image.id, person_id=None)
            session.add(row)
            session.add(CaseImage(case_id=case.id, image_id=image.id, added_by_id=user.id))
            session.flush()
            stored.append(
                {
                    "image_id": image.id,
                    "face_id": row.id,
                    "name": image.original_name,
                    "box": list(face.box),
                    "quality": round(face.quality.score, 1),
                    "quality_ok": face.quality.score >= self.settings.min_quality,
                }
            )
        return stored

    def update_case(
        self,
        actor: User,
        reference: str | int,
        *,
        condition: str | None = None,
        found_at: str | datetime | None = _UNSET,
        found_place: str | None = None,
        holding_organisation: str | None = None,
        description: str | None = None,
        status: str | None = None,
        retain_until: str | datetime | None = _UNSET,
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
        if found_at is not _UNSET:
            changes["found_at"] = parse_datetime(found_at, "found at")
        if found_place is not None:
            changes["found_place"] = found_place.strip()[:500]
        if holding_organisation is not None:
            changes["holding_organisation"] = holding_organisation.strip()[:300]
        if description is not None:
            changes["description"] = description.strip()[:20_000]
        if status is not None:
            changes["status"] = check_choice(status, MANUAL_CASE_STATUSES, "status")
        if retain_until is not _UNSET:  # None (or empty) removes the date
            changes["retain_until"] = parse_retain_until(retain_until)
        if not changes:
            raise InvalidInput("nothing to change")
        with self._tx(actor, "case.update", [f"case:{reference}"]) as session:
            user = self._user(session, actor, RECORD_ROLES, "changing a case")
            case = self._case(session, reference)
            if "status" in changes and case.status == "identified":
                raise ConflictError(f"case {case.reference} is identified; withdraw the identification first")
            if changes.get("status") == "open" and case.status == "under_review":
                changes.pop("status")  # still open, with leads
            changed = [k for k, v in changes.items() if _differs(getattr(case, k), v)]
            for key in changed:
                setattr(case, key, changes[key])
            self._audit(session, user, "case.update", [f"case:{case.id}"], {"changed": changed})
            case_id = case.id
        return {
            "case": self._case_snapshot(case_id),
            "changed": changed,
            "matching": self._match_case_now(actor, case_id),
        }

    def list_cases(
        self, actor: User, *, status: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return cases (newest first), optionally by status. Any role.

        Raises:
            PermissionDenied, InvalidInput (unknown status).
        """
        from facetrace.store.workflow_models import CASE_STATUSES

        with self._tx(actor, "case.list", []) as session:
            self._user(session, actor, READ_ROLES, "listing cases")
            stmt = select(Case).order_by(Case.id.desc())
            if status:
                stmt = stmt.where(Case.status == check_choice(status, CASE_STATUSES, "status"))
            rows = session.execute(stmt.offset(max(0, offset)).limit(max(1, min(limit, 1000)))).scalars()
            return [case_view(c) for c in rows]

    def get_case(self, actor: User, reference: str | int) -> dict[str, Any]:
        """Return a case with its photos, leads and identifications. Any role.

        Raises:
            NotFoundError, PermissionDenied.
        """
        with self._tx(actor, "case.view", [f"case:{reference}"]) as session:
            user = self._user(session, actor, READ_ROLES, "reading a case")
            case = self._case(session, reference)
            self._audit(session, user, "case.view", [f"case:{case.id}"])
            images = session.execute(
                select(Image).join(CaseImage, CaseImage.image_id == Image.id).where(CaseImage.case_id == case.id)
            ).scalars()
            leads = session.execute(select(Lead).where(Lead.case_id == case.id).order_by(Lead.score.desc())).scalars()
            idents = session.execute(
                select(Identification).where(Identification.case_id == case.id).order_by(Identification.id)
            ).scalars()
            return {
                **case_view(case),
                "photos": [_image_view(i) for i in images],
                "leads": [lead_view(lead) for lead in leads],
                "identifications": [identification_view(i) for i in idents],
            }

    # -- erasure ----------------------------------------------------------------------------
    def erase_report(
        self, actor: User, reference: str | int, *, reason: str = "erasure request", force: bool = False
    ) -> dict[str, Any]:
        """Erase a report end to end: the reports merged into it, their gallery persons (photos, templates,
        index entries, media files), contacts, leads, reviews, evidence, identifications and notifications
        (see :mod:`facetrace.workflow.erasure`). Role: intake, examiner or admin.

        Returns what was removed.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (no reason),
            ErasureBlocked (a lead under review or a pending notification, and not ``force``).
        """
        return self._erase("report", reference, reason=reason, force=force, actor=actor)

    def erase_case(
        self, actor: User, reference: str | int, *, reason: str = "erasure request", force: bool = False
    ) -> dict[str, Any]:
        """Erase a case end to end: its photos (images, faces, media files), leads, reviews, evidence,
        identifications and notifications. Role: intake, examiner or admin.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (no reason),
            ErasureBlocked (a lead under review or a pending notification, and not ``force``).
        """
        return self._erase("case", reference, reason=reason, force=force, actor=actor)

    def _erase(
        self, kind: str, reference: str | int, *, reason: str, force: bool, actor: User | None = None
    ) -> dict[str, Any]:
        why = required_text(reason, "reason", max_len=500)
        with self._tx(actor, f"{kind}.erase", [f"{kind}:{reference}"]) as session:
            user = self._user(session, actor, ERASE_ROLES, f"erasing a {kind}")
            row = self._report(session, reference) if kind == "report" else self._case(session, reference)
            record_id, username = int(row.id), user.username
        return Eraser(self.gallery).erase(kind, record_id, actor=username, source=self.source, reason=why, force=force)

    def _case_snapshot(self, case_id: int) -> dict[str, Any]:
        with self.db.sessions() as session:
            case = session.get(Case, case_id)
            assert case is not None
            photos = session.execute(select(func.count(CaseImage.id)).where(CaseImage.case_id == case_id)).scalar()
            return {**case_view(case), "photo_count": int(photos or 0)}


def _differs(old: Any, new: Any) -> bool:
    """Whether a field changes (SQLite hands back naive UTC datetimes: compare them as aware ones)."""
    if isinstance(old, datetime) and isinstance(new, datetime):
        return as_utc(old) != as_utc(new)
    return bool(old != new)


def _image_view(image: Image) -> dict[str, Any]:
    return {
        "image_id": image.id,
        "sha256": image.sha256,
        "name": image.original_name,
        "width": image.width,
        "height": image.height,
        "created_at": iso(image.created_at),
        "faces": [
            {"face_id": f.id, "box": f.box, "quality": round(f.quality, 1), "model_id": f.model_id} for f in image.faces
        ],
    }
