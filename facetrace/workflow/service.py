"""The one object the upper layers hold: :class:`Workflow`, the workflow's services over one gallery."""

from __future__ import annotations

from facetrace.config import Settings
from facetrace.gallery import Gallery
from facetrace.store.db import Database
from facetrace.workflow.cases import CaseService
from facetrace.workflow.context import WorkflowContext
from facetrace.workflow.drafting import Drafter
from facetrace.workflow.identifications import IdentificationService
from facetrace.workflow.matching import MatchingService
from facetrace.workflow.notify import NotificationService
from facetrace.workflow.outbox import Outbox
from facetrace.workflow.reconciliation import ReconciliationService
from facetrace.workflow.record_erasure import ErasureService
from facetrace.workflow.reports import ReportService
from facetrace.workflow.review import ReviewService


class Workflow:
    """The identification workflow over one gallery, as services sharing one context:

    - ``reports``: reports, their contacts and reference photos;
    - ``cases``: cases and their photos;
    - ``matching``: continuous matching (leads, duplicate reports, merging);
    - ``reviews``: the lead queue, reviews and evidence;
    - ``identifications``: identifications (established by a review, withdrawn);
    - ``notifications``: drafting, approval, cancellation of family notifications;
    - ``outbox``: sending them (at most once) and resolving deliveries of unknown outcome;
    - ``erasure``: erasing reports and cases;
    - ``reconciliation``: descriptors, marks, effects and primary references; exclusions, agreement,
      search without a face, reopening rejected leads.

    Every public method of a service takes the acting :class:`facetrace.store.accounts.User`,
    runs in its own transaction with its audit events, and returns JSON-ready dicts.
    """

    def __init__(self, gallery: Gallery, *, source: str | None = None) -> None:
        self.context = WorkflowContext(gallery, source=source)
        ctx = self.context
        drafter = Drafter(ctx)
        self.matching = MatchingService(ctx)
        self.reports = ReportService(ctx, self.matching)
        self.cases = CaseService(ctx, self.matching)
        self.identifications = IdentificationService(ctx, drafter)
        self.reviews = ReviewService(ctx, self.identifications)
        self.notifications = NotificationService(ctx, drafter)
        self.outbox = Outbox(ctx)
        self.erasure = ErasureService(ctx)
        self.reconciliation = ReconciliationService(ctx, self.matching)

    @property
    def gallery(self) -> Gallery:
        """The gallery the workflow works on."""
        return self.context.gallery

    @property
    def db(self) -> Database:
        """The gallery's database (reports, cases, leads... live there too)."""
        return self.context.db

    @property
    def settings(self) -> Settings:
        """The gallery's settings (review FPIR, evidence policy, SMTP...)."""
        return self.context.settings

    @property
    def source(self) -> str | None:
        """What audit events record as their source (a client address, or ``cli``)."""
        return self.context.source

    def with_source(self, source: str | None) -> Workflow:
        """Return a workflow over the same gallery whose every service records ``source`` in audit events."""
        return Workflow(self.gallery, source=source)
