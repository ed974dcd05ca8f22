"""Workflow layer: the identification workflow over the gallery (no HTTP here).

Reports (the gallery) and cases are matched continuously into leads; examiners review leads;
two different users (the second with the reviewer role) confirm an identification backed by
evidence; families are notified through an approved, at-most-once outbox. Every state change
appends an audit event in the same transaction.

Use one :class:`Workflow` per gallery and call its services (``workflow.reports``,
``workflow.reviews``...); every service method takes the acting
:class:`facetrace.store.accounts.User` and returns JSON-ready dicts.
"""

from facetrace.workflow.common import InvalidInput, PhotoInput
from facetrace.workflow.service import Workflow
from facetrace.workflow.smtp import Delivery, deliver
from facetrace.workflow.templates import TemplateRenderer

__all__ = ["Delivery", "InvalidInput", "PhotoInput", "TemplateRenderer", "Workflow", "deliver"]
