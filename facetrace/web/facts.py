"""What the pages show and read of the facts beyond the face: the closed vocabularies as select
lists (codes sent, words shown), the descriptor and mark forms read into what the workflow takes,
and the facts of a report or case as its page shows them.

The codes come from :mod:`facetrace.workflow.reconcile.vocabulary` only: a form never offers free
text for a coded field, and a code posted by hand is refused by the workflow, naming the field.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from facetrace.usecases.actors import Actor
from facetrace.usecases.records import workflow_for
from facetrace.usecases.service import Service
from facetrace.web.deps import text
from facetrace.workflow.common import RECORD_ROLES, REVIEW_ROLES
from facetrace.workflow.reconcile.agreement import FIELD_LABELS
from facetrace.workflow.reconcile.facts import DESCRIPTOR_FIELDS
from facetrace.workflow.reconcile.vocabulary import (
    ASPECTS,
    BODY_REGIONS,
    CASE_KINDS,
    CHOICES,
    EFFECT_KINDS,
    MARK_TYPES,
    PRIMARY_KINDS,
    REFERENCE_STATUSES,
    SIDES,
    label,
)

CASE_KIND_LABELS = {
    "deceased": "Deceased",
    "living": "Living, unable to identify themselves",
    "detained": "Detained",
    "body_part": "Body part",
}
PRIMARY_LABELS = {"dna": "DNA reference sample", "dental": "Dental records", "fingerprints": "Fingerprints"}
BASIS_WORDS = {
    "face": "Face",
    "face_and_secondary": "Face with other details",
    "marks": "Marks and description only — not a face match",
}
VERDICT_WORDS = {"agrees": "agrees", "disagrees": "disagrees", "unknown": "unknown"}
VERDICT_SIGNS = {"agrees": "✓", "disagrees": "✗", "unknown": "?"}
LEVEL_WORDS = {"preliminary": "Preliminary", "confirmed": "Confirmed"}


def choices(codes: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """Return codes as (code, words) pairs for a select list."""
    return [(c, label(c)) for c in codes]


def vocabulary() -> dict[str, Any]:
    """Return every select list of the facts forms: (code, words) pairs."""
    return {
        **{name: choices(CHOICES[name]) for name in DESCRIPTOR_FIELDS},
        "field_labels": FIELD_LABELS,
        "mark_types": choices(MARK_TYPES),
        "regions": choices(BODY_REGIONS),
        "sides": choices(SIDES),
        "aspects": choices(ASPECTS),
        "effect_kinds": choices(EFFECT_KINDS),
        "primary_kinds": [(k, PRIMARY_LABELS[k]) for k in PRIMARY_KINDS],
        "statuses": {k: choices(REFERENCE_STATUSES[k]) for k in PRIMARY_KINDS},
        "case_kinds": [(k, CASE_KIND_LABELS.get(k, label(k))) for k in CASE_KINDS],
        "case_kind_labels": CASE_KIND_LABELS,
        "primary_labels": PRIMARY_LABELS,
        "basis_words": BASIS_WORDS,
        "verdict_words": VERDICT_WORDS,
        "verdict_signs": VERDICT_SIGNS,
        "level_words": LEVEL_WORDS,
    }


def read_descriptors(form: FormData, kind: str) -> dict[str, Any]:
    """Return the descriptors form as the workflow takes it: codes as sent (the workflow checks
    them), numbers as text ("" is unknown). A report gives one height; a case age and height ranges."""
    out: dict[str, Any] = {name: text(form, name) or None for name in DESCRIPTOR_FIELDS}
    ranges = ("height",) if kind == "report" else ("age_min", "age_max", "height_min", "height_max")
    for name in ranges:
        out[name] = text(form, name) or None
    return out


def read_mark(form: FormData) -> dict[str, Any]:
    """Return the mark form as the workflow takes it (the workflow checks the codes)."""
    return {
        "type": text(form, "type") or None,
        "region": text(form, "region") or None,
        "side": text(form, "side") or None,
        "aspect": text(form, "aspect") or None,
        "description": text(form, "description"),
        "keywords": text(form, "keywords"),
    }


def descriptor_rows(descriptors: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """Return a record's descriptors in words, (label, value), unknown ones as "unknown"."""

    def span(low: Any, high: Any, unit: str) -> str:
        if low is None and high is None:
            return "unknown"
        if low is not None and high is not None:
            return f"{low} {unit}" if low == high else f"{low}–{high} {unit}"
        return f"at least {low} {unit}" if low is not None else f"at most {high} {unit}"

    rows = [("Sex", label(descriptors.get("sex")) or "unknown")]
    if kind == "case":
        rows.append(("Age", span(descriptors.get("age_min"), descriptors.get("age_max"), "years")))
    rows.append(("Height", span(descriptors.get("height_min"), descriptors.get("height_max"), "cm")))
    for name in DESCRIPTOR_FIELDS[1:]:
        rows.append((FIELD_LABELS[name], label(descriptors.get(name)) or "unknown"))
    return rows


def facts_context(service: Service, actor: Actor, kind: str, reference: str) -> dict[str, Any]:
    """Return what a report's or case's page shows beyond the face (read without an audit event of
    its own: the page's view is the one event) and the select lists of its forms."""
    facts = workflow_for(service, actor).reconciliation.facts(actor.user, kind, reference)
    return {
        "facts": facts,
        "facts_kind": kind,
        "descriptor_rows": descriptor_rows(facts["descriptors"], kind),
        "vocab": vocabulary(),
        "can_widen": any(actor.user.has_role(r) for r in REVIEW_ROLES),
        "can_reopen": actor.user.has_role("reviewer"),
        "can_record": any(actor.user.has_role(r) for r in RECORD_ROLES),
    }
