"""Erasing a report or a case on request, by a user with an erasing role (the work itself is
:class:`facetrace.workflow.erasure.Eraser`'s; retention runs it without a user:
:mod:`facetrace.workflow.retention`)."""

from __future__ import annotations

from typing import Any

from facetrace.store.accounts import User
from facetrace.workflow import queries
from facetrace.workflow.common import ERASE_ROLES, required_text
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.erasure import Eraser


class ErasureService:
    """Erase reports and cases end to end, each erasure checked, audited and irreversible."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx

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
        return self.erase_record(actor, "report", reference, reason=reason, force=force)

    def erase_case(
        self, actor: User, reference: str | int, *, reason: str = "erasure request", force: bool = False
    ) -> dict[str, Any]:
        """Erase a case end to end: its photos (images, faces, media files), leads, reviews, evidence,
        identifications and notifications. Role: intake, examiner or admin.

        Returns what was removed.

        Raises:
            NotFoundError, PermissionDenied, InvalidInput (no reason),
            ErasureBlocked (a lead under review or a pending notification, and not ``force``).
        """
        return self.erase_record(actor, "case", reference, reason=reason, force=force)

    def erase_record(
        self, actor: User, kind: str, reference: str | int, *, reason: str, force: bool = False
    ) -> dict[str, Any]:
        """Erase the report or case (``kind``) with this reference, as :meth:`erase_report` or
        :meth:`erase_case` describe; return what was removed.

        Raises:
            as :meth:`erase_report`.
        """
        why = required_text(reason, "reason", max_len=500)
        with self.ctx.transaction(actor, f"{kind}.erase", [f"{kind}:{reference}"]) as session:
            user = self.ctx.acting_user(session, actor, ERASE_ROLES, f"erasing a {kind}")
            record_id = int(queries.record_by_reference(session, kind, reference).id)
            username = user.username
        eraser = Eraser(self.ctx.gallery)
        return eraser.erase(kind, record_id, actor=username, source=self.ctx.source, reason=why, force=force)
