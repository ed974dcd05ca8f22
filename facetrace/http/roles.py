"""Typed aliases of the signed-in caller by the roles a route needs, for route signatures
(``actor: Examiner``). Each checks the roles on every request and audits a refusal
(:func:`facetrace.http.deps.require_roles`); the workflow's own role sets are its
:mod:`facetrace.workflow.common` constants, which the workflow enforces again."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from facetrace.http.deps import require_roles
from facetrace.usecases.actors import Actor
from facetrace.usecases.search_history import HISTORY_ROLES
from facetrace.workflow.common import (
    APPROVE_ROLES,
    ERASE_ROLES,
    MATCH_ROLES,
    MERGE_ROLES,
    READ_ROLES,
    RECORD_ROLES,
    REOPEN_ROLES,
    REVIEW_ROLES,
    SEND_ROLES,
    WITHDRAW_ROLES,
)

# Single roles.
Admin = Annotated[Actor, Depends(require_roles("admin"))]
Auditor = Annotated[Actor, Depends(require_roles("auditor"))]
Examiner = Annotated[Actor, Depends(require_roles("examiner"))]
Intake = Annotated[Actor, Depends(require_roles("intake"))]

# Either of two roles.
ExaminerOrReviewer = Annotated[Actor, Depends(require_roles("examiner", "reviewer"))]
IntakeOrExaminer = Annotated[Actor, Depends(require_roles("intake", "examiner"))]
IntakeOrAdmin = Annotated[Actor, Depends(require_roles("intake", "admin"))]
GalleryReader = Annotated[Actor, Depends(require_roles("intake", "examiner", "reviewer"))]
SearchHistoryReader = Annotated[Actor, Depends(require_roles(*HISTORY_ROLES))]  # examiner, reviewer, auditor

# The workflow's role sets.
Reader = Annotated[Actor, Depends(require_roles(*READ_ROLES))]
Recorder = Annotated[Actor, Depends(require_roles(*RECORD_ROLES))]
Matcher = Annotated[Actor, Depends(require_roles(*MATCH_ROLES))]
Reviewer = Annotated[Actor, Depends(require_roles(*REVIEW_ROLES))]
Merger = Annotated[Actor, Depends(require_roles(*MERGE_ROLES))]
Withdrawer = Annotated[Actor, Depends(require_roles(*WITHDRAW_ROLES))]
Reopener = Annotated[Actor, Depends(require_roles(*REOPEN_ROLES))]
Approver = Annotated[Actor, Depends(require_roles(*APPROVE_ROLES))]
Sender = Annotated[Actor, Depends(require_roles(*SEND_ROLES))]
RecordEraser = Annotated[Actor, Depends(require_roles(*ERASE_ROLES))]
