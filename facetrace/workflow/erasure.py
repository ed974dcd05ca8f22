"""Erasure of reports, cases and gallery persons, end to end, with an audit event for each.

What goes, per kind (see docs/retention.md for the reasoning):

- **person** (a gallery identity): its images and faces (templates), its media files, its index
  entries; a report that owned it keeps its record but no longer has photos.
- **report**: the report and every report merged into it (the same person reported twice), with
  their gallery persons (as above), contacts, leads, reviews, evidence, identifications,
  notifications and delivery attempts, and duplicate flags.
- **case**: the case with its photos (images, faces, media files), leads, reviews, evidence,
  identifications, notifications and delivery attempts.

In every case stored job results (e.g. video searches) lose the candidates that named an erased
person. The audit trail keeps *that* the erasure happened (record ids, counts, reason, who, when)
and nothing personal: no name, contact detail, photo hash or template.

Erasure is refused (``erasure_blocked``) while a lead is under review or a notification is still
pending (draft, approved, failed or of unknown outcome), unless forced; a notification being sent
right now always blocks. Each erasure is one database transaction (rows and audit event together);
the index and media files are cleaned after it commits. A crash in between leaves an
``erasure_pending:`` marker in the ``meta`` table that the next erasure or retention run finishes,
so erasure is safe to rerun.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from facetrace.errors import ConflictError, NotFoundError
from facetrace.gallery import Gallery
from facetrace.store.audit import append_event
from facetrace.store.jobs import Job
from facetrace.store.models import Face, Image, Meta, Person
from facetrace.store.reconciliation_models import Effect, Mark, MarkPhoto, PrimaryReference
from facetrace.store.workflow_models import (
    Case,
    CaseImage,
    Contact,
    DuplicateFlag,
    Evidence,
    Identification,
    Lead,
    Notification,
    NotificationAttempt,
    Report,
    Review,
)
from facetrace.workflow.common import as_utc, iso
from facetrace.workflow.queries import merged_family

log = logging.getLogger(__name__)

KINDS = ("person", "report", "case")
PENDING_PREFIX = "erasure_pending:"
#: PostgreSQL: set by each erasure, cleared by the VACUUM FULL of the next retention run.
VACUUM_FULL_DUE = "erasure_vacuum_full_due"
#: Notifications in these states would be lost half-way: erasure waits for them (or is forced).
PENDING_NOTIFICATIONS = ("draft", "approved", "failed", "unknown")
#: The tables erasure deletes from: VACUUMed afterwards on PostgreSQL.
ERASED_TABLES = (
    "persons",
    "images",
    "faces",
    "reports",
    "contacts",
    "cases",
    "case_images",
    "leads",
    "reviews",
    "evidence",
    "identifications",
    "duplicate_flags",
    "notifications",
    "notification_attempts",
    "jobs",
)


class ErasureBlocked(ConflictError):
    """Erasure would cut short work in progress (a lead under review, a pending notification)."""

    code = "erasure_blocked"


class Eraser:
    """Erases records of one gallery's database, index and media folder."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.db = gallery.db

    # -- public ---------------------------------------------------------------------------------
    def erase(
        self,
        kind: str,
        record_id: int,
        *,
        actor: str | None,
        reason: str,
        source: str | None = None,
        force: bool = False,
        retain_until: datetime | None = None,
        expect_retain_until: bool = False,
    ) -> dict[str, Any]:
        """Erase one ``person``, ``report`` or ``case`` by database id; return what was removed.

        ``reason`` is recorded as the legal reason (e.g. "retention expired", "erasure request").
        With ``expect_retain_until`` the record is erased only if its ``retain_until`` is still at or
        before ``retain_until`` (someone may have extended it since it was listed).

        Raises:
            NotFoundError: no such record (already erased).
            ErasureBlocked: work in progress on it, and not ``force`` (or a notification is being sent).
            ConflictError: its retention date was changed since it was listed.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        self.finish_pending()
        self.gallery.index()  # open first: a fresh process would otherwise keep erased templates in the file
        marker = f"{PENDING_PREFIX}{uuid.uuid4().hex}"
        try:
            with self.db.session() as session:
                row: Any = session.get({"person": Person, "report": Report, "case": Case}[kind], record_id)
                if row is None:
                    raise NotFoundError(f"no {kind} {record_id}")
                if expect_retain_until:
                    current = as_utc(row.retain_until)
                    if current is None or retain_until is None or current > as_utc(retain_until):  # type: ignore[operator]
                        raise ConflictError(f"the retention date of {kind} {record_id} was changed; not erased")
                plan = self._plan(session, kind, row)
                hard = [b for b in plan.blockers if b.startswith("notification") and "being sent" in b]
                if hard or (plan.blockers and not force):
                    raise ErasureBlocked(
                        f"{kind} {record_id} cannot be erased now: {'; '.join(plan.blockers)}"
                        + ("" if hard else " (force to erase anyway)")
                    )
                removed = self._delete(session, plan)
                if plan.face_ids:
                    self.db.bump_gallery_version(session)
                session.add(Meta(key=marker, value=json.dumps({"faces": plan.face_ids, "media": plan.media})))
                forced = bool(force and plan.blockers)
                detail = {
                    "reason": reason,
                    "retain_until": iso(as_utc(row.retain_until)),
                    "forced": forced,
                    "overridden": plan.blockers if force else [],
                    "removed": removed,
                }
                append_event(
                    session,
                    actor=actor,
                    action=f"{kind}.erase",
                    records=plan.records,
                    outcome="ok",
                    source=source,
                    detail=detail,
                )
        except ErasureBlocked as exc:
            self._audit_refusal(kind, record_id, actor=actor, source=source, reason=reason, message=exc.message)
            raise
        media_removed = self._finish(marker)
        return {
            "kind": kind,
            "id": record_id,
            **removed,
            "media_files_removed": media_removed,
            "forced": detail["forced"],
        }

    def erase_person(
        self, external_id: str, *, actor: str | None, reason: str, source: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Erase one gallery person by external id (``facetrace person delete``, ``DELETE /persons/ID``):
        as :meth:`erase` of kind ``person``, plus ``external_id`` and ``faces_removed`` in the result.

        Raises:
            NotFoundError: no such person.
            ErasureBlocked: work in progress on the report that owns it, and not ``force``.
        """
        with self.db.sessions() as session:
            person_id = session.execute(select(Person.id).where(Person.external_id == external_id)).scalar()
        if person_id is None:
            raise NotFoundError(f"no person with id {external_id!r}")
        result = self.erase("person", int(person_id), actor=actor, reason=reason, source=source, force=force)
        return {"external_id": external_id, "faces_removed": result["faces"], **result}

    def finish_pending(self) -> int:
        """Finish erasures interrupted after their commit (index entries, media files); return how many."""
        with self.db.sessions() as session:
            keys = list(session.execute(select(Meta.key).where(Meta.key.startswith(PENDING_PREFIX))).scalars())
        for key in keys:
            self._finish(key)
        return len(keys)

    # -- planning -------------------------------------------------------------------------------
    def _plan(self, session: Session, kind: str, row: Any) -> _Plan:
        plan = _Plan()
        if kind == "person":
            plan.persons = [row.id]
            report_ids = list(session.execute(select(Report.id).where(Report.person_id == row.id)).scalars())
            plan.records = [f"person:{row.id}", *(f"report:{r}" for r in report_ids)]
            plan.blockers = self._blockers(session, report_ids=report_ids, case_ids=[])
        elif kind == "report":
            plan.reports = merged_family(session, row.id)
            plan.persons = [
                p
                for p in session.execute(select(Report.person_id).where(Report.id.in_(plan.reports))).scalars()
                if p is not None
            ]
            plan.contacts = list(
                session.execute(select(Contact.id).where(Contact.report_id.in_(plan.reports))).scalars()
            )
            plan.leads = list(session.execute(select(Lead.id).where(Lead.report_id.in_(plan.reports))).scalars())
            cases = session.execute(select(Lead.case_id).where(Lead.id.in_(plan.leads)).distinct()).scalars()
            plan.records = [
                *(f"report:{r}" for r in plan.reports),
                *(f"person:{p}" for p in plan.persons),
                *(f"case:{c}" for c in sorted(cases)),  # their case files lose a lead: say so there
            ]
            plan.blockers = self._blockers(session, report_ids=plan.reports, case_ids=[])
        else:
            plan.cases = [row.id]
            plan.case_images = list(
                session.execute(select(CaseImage.image_id).where(CaseImage.case_id == row.id)).scalars()
            )
            plan.leads = list(session.execute(select(Lead.id).where(Lead.case_id == row.id)).scalars())
            reports = session.execute(select(Lead.report_id).where(Lead.id.in_(plan.leads)).distinct()).scalars()
            plan.records = [f"case:{row.id}", *(f"report:{r}" for r in sorted(reports))]
            plan.blockers = self._blockers(session, report_ids=[], case_ids=[row.id])
        image_ids = list(plan.case_images)
        image_ids += session.execute(
            select(MarkPhoto.image_id)
            .join(Mark, Mark.id == MarkPhoto.mark_id)
            .where(or_(Mark.report_id.in_(plan.reports), Mark.case_id.in_(plan.cases)))
        ).scalars()
        if plan.persons:
            image_ids += session.execute(select(Image.id).where(Image.person_id.in_(plan.persons))).scalars()
        plan.image_ids = sorted(set(image_ids))
        faces = session.execute(
            select(Face.id, Face.person_id).where(
                or_(Face.image_id.in_(plan.image_ids), Face.person_id.in_(plan.persons or [-1]))
            )
        ).all()
        plan.all_faces = sorted({int(f) for f, _ in faces})
        plan.face_ids = sorted({int(f) for f, p in faces if p is not None})  # the gallery's (indexed) ones
        plan.media = sorted(
            set(session.execute(select(Image.media_path).where(Image.id.in_(plan.image_ids))).scalars())
        )
        plan.idents = list(
            session.execute(
                select(Identification.id).where(
                    or_(
                        Identification.lead_id.in_(plan.leads),
                        Identification.report_id.in_(plan.reports),
                        Identification.case_id.in_(plan.cases),
                    )
                )
            ).scalars()
        )
        return plan

    @staticmethod
    def _blockers(session: Session, *, report_ids: list[int], case_ids: list[int]) -> list[str]:
        """Return why erasing these reports/cases now would cut short work in progress."""
        lead_filter = or_(Lead.report_id.in_(report_ids), Lead.case_id.in_(case_ids))
        out = [
            f"lead {lid} is under review"
            for lid in session.execute(
                select(Lead.id).where(lead_filter, Lead.status == "under_review").order_by(Lead.id)
            ).scalars()
        ]
        ident_ids = select(Identification.id).where(
            or_(Identification.report_id.in_(report_ids), Identification.case_id.in_(case_ids))
        )
        contact_ids = select(Contact.id).where(Contact.report_id.in_(report_ids))
        rows = session.execute(
            select(Notification.id, Notification.status)
            .where(
                or_(Notification.identification_id.in_(ident_ids), Notification.contact_id.in_(contact_ids)),
                Notification.status.in_((*PENDING_NOTIFICATIONS, "sending")),
            )
            .order_by(Notification.id)
        ).all()
        for nid, status in rows:
            out.append(
                f"notification {nid} is being sent" if status == "sending" else f"notification {nid} is {status}"
            )
        return out

    # -- deleting -------------------------------------------------------------------------------
    @staticmethod
    def _delete(session: Session, plan: _Plan) -> dict[str, int]:
        """Delete the planned rows in dependency order (not relying on cascades); return counts."""

        def gone(stmt: Any) -> int:
            result = session.execute(stmt.execution_options(synchronize_session=False))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

        contact_ids = select(Contact.id).where(Contact.report_id.in_(plan.reports))
        notif_ids = list(
            session.execute(
                select(Notification.id).where(
                    or_(Notification.identification_id.in_(plan.idents), Notification.contact_id.in_(contact_ids))
                )
            ).scalars()
        )
        counts: dict[str, int] = {"job_results_scrubbed": _scrub_jobs(session, set(plan.persons))}
        gone(delete(NotificationAttempt).where(NotificationAttempt.notification_id.in_(notif_ids)))
        # Corrections point at the message they correct: clear the links inside the set first.
        gone(update(Notification).where(Notification.id.in_(notif_ids)).values(corrects_id=None))
        counts["notifications"] = gone(delete(Notification).where(Notification.id.in_(notif_ids)))
        counts["identifications"] = gone(delete(Identification).where(Identification.id.in_(plan.idents)))
        gone(delete(Evidence).where(Evidence.lead_id.in_(plan.leads)))
        gone(delete(Review).where(Review.lead_id.in_(plan.leads)))
        counts["leads"] = gone(delete(Lead).where(Lead.id.in_(plan.leads)))
        # Leads of other pairs keep their row but lose the link to an erased face or image.
        for column in (Lead.case_face_id, Lead.report_face_id):
            gone(update(Lead).where(column.in_(plan.all_faces)).values({column: None}))
        for column in (Lead.case_image_id, Lead.report_image_id):
            gone(update(Lead).where(column.in_(plan.image_ids)).values({column: None}))
        gone(
            delete(DuplicateFlag).where(
                or_(DuplicateFlag.report_id.in_(plan.reports), DuplicateFlag.other_report_id.in_(plan.reports))
            )
        )
        counts["contacts"] = gone(delete(Contact).where(Contact.report_id.in_(plan.reports)))
        counts["mark_photos"] = gone(delete(MarkPhoto).where(MarkPhoto.image_id.in_(plan.image_ids)))
        for model in (Mark, Effect, PrimaryReference):
            on_record = or_(model.report_id.in_(plan.reports), model.case_id.in_(plan.cases))
            counts[model.__tablename__] = gone(delete(model).where(on_record))
        gone(update(Report).where(Report.merged_into_id.in_(plan.reports)).values(merged_into_id=None))
        gone(update(Report).where(Report.person_id.in_(plan.persons)).values(person_id=None))
        counts["reports"] = gone(delete(Report).where(Report.id.in_(plan.reports)))
        gone(delete(CaseImage).where(CaseImage.image_id.in_(plan.image_ids)))
        gone(update(Case).where(Case.parent_case_id.in_(plan.cases)).values(parent_case_id=None))
        counts["cases"] = gone(delete(Case).where(Case.id.in_(plan.cases)))
        counts["faces"] = gone(delete(Face).where(Face.id.in_(plan.all_faces)))
        counts["images"] = gone(delete(Image).where(Image.id.in_(plan.image_ids)))
        counts["persons"] = gone(delete(Person).where(Person.id.in_(plan.persons)))
        return counts

    def _finish(self, marker: str) -> int:
        """Take the marker's templates out of the index and delete its media files no image row uses
        any more; then drop the marker and purge the database files. Return the files removed."""
        with self.db.sessions() as session:
            value = session.get(Meta, marker)
            pending = json.loads(value.value) if value is not None else None
        if pending is None:
            return 0
        self.gallery.forget_faces([int(f) for f in pending.get("faces", [])])
        media = [str(m) for m in pending.get("media", [])]
        with self.db.sessions() as session:
            used = set(session.execute(select(Image.media_path).where(Image.media_path.in_(media))).scalars())
        removed = sum(self.gallery.media.delete(rel) for rel in media if rel not in used)
        with self.db.session() as session:
            session.execute(delete(Meta).where(Meta.key == marker))
            if self.db.engine.dialect.name == "postgresql" and session.get(Meta, VACUUM_FULL_DUE) is None:
                session.add(Meta(key=VACUUM_FULL_DUE, value="1"))
        self.db.purge_deleted(ERASED_TABLES)
        return removed

    def vacuum_full_if_due(self, *, always: bool = False) -> bool:
        """PostgreSQL: rewrite the erased-from tables (VACUUM FULL) when an erasure happened since the
        last rewrite (or ``always``), so no erased row's bytes remain in free page space; return
        whether it ran. The tables are locked meanwhile: run it when the service is quiet (e.g. the
        nightly ``facetrace retention apply``). No-op on SQLite (``secure_delete`` zeroes freed space)."""
        if self.db.engine.dialect.name != "postgresql":
            return False
        with self.db.sessions() as session:
            due = session.get(Meta, VACUUM_FULL_DUE) is not None
        if not (due or always):
            return False
        self.db.purge_deleted(ERASED_TABLES, full=True)
        with self.db.session() as session:
            session.execute(delete(Meta).where(Meta.key == VACUUM_FULL_DUE))
        return True

    def _audit_refusal(
        self, kind: str, record_id: int, *, actor: str | None, source: str | None, reason: str, message: str
    ) -> None:
        with self.db.session() as session:
            append_event(
                session,
                actor=actor,
                action=f"{kind}.erase",
                records=[f"{kind}:{record_id}"],
                outcome="denied",
                source=source,
                detail={"reason": reason, "code": ErasureBlocked.code, "message": message},
            )


class _Plan:
    """The rows one erasure removes (database ids)."""

    def __init__(self) -> None:
        self.persons: list[int] = []
        self.reports: list[int] = []
        self.cases: list[int] = []
        self.contacts: list[int] = []
        self.leads: list[int] = []
        self.idents: list[int] = []
        self.case_images: list[int] = []
        self.image_ids: list[int] = []
        self.face_ids: list[int] = []
        self.all_faces: list[int] = []
        self.media: list[str] = []
        self.records: list[str] = []
        self.blockers: list[str] = []


def _scrub_jobs(session: Session, person_ids: set[int]) -> int:
    """Remove the candidates naming erased persons from stored job results; return the jobs changed."""
    if not person_ids:
        return 0
    external_ids = set(session.execute(select(Person.external_id).where(Person.id.in_(person_ids))).scalars())
    changed = 0
    jobs = session.execute(select(Job).order_by(Job.id)).scalars()
    for job in jobs:
        result, hit_r = _scrub(job.result or {}, person_ids, external_ids)
        errors, hit_e = _scrub(job.errors or [], person_ids, external_ids)
        if hit_r or hit_e:
            job.result, job.errors = result, errors
            changed += 1
    return changed


def _scrub(value: Any, person_ids: set[int], external_ids: set[str]) -> tuple[Any, bool]:
    """Return ``value`` without list entries that name an erased person (a candidate's ``person``,
    a per-file error's ``person``) and with ``match`` fields naming one set to None; and whether
    anything changed."""
    if isinstance(value, list):
        out, hit = [], False
        for item in value:
            if _names_erased(item, person_ids, external_ids):
                hit = True
                continue
            new, changed = _scrub(item, person_ids, external_ids)
            out.append(new)
            hit = hit or changed
        return out, hit
    if isinstance(value, dict):
        out_d: dict[str, Any] = {}
        hit = False
        for key, item in value.items():
            if key == "match" and isinstance(item, str) and item in external_ids:
                out_d[key], hit = None, True
                continue
            new, changed = _scrub(item, person_ids, external_ids)
            out_d[key] = new
            hit = hit or changed
        return out_d, hit
    return value, False


def _names_erased(item: Any, person_ids: set[int], external_ids: set[str]) -> bool:
    if not isinstance(item, dict):
        return False
    person = item.get("person")
    if isinstance(person, dict):
        return person.get("id") in person_ids or person.get("external_id") in external_ids
    return isinstance(person, str) and person in external_ids
