"""How far a report and a case agree beyond the face, and how that agreement ranks a lead.

**The rule.** Each recorded descriptor and each corresponding mark is a piece of evidence with a
likelihood ratio LR = P(observation | same person) / P(observation | different people):

- a descriptor that *agrees* has LR = (1 - e) / p, one that *disagrees* LR = e / (1 - p), where
  ``p`` is the chance that two unrelated people agree on it and ``e`` the chance that the two
  records of one person disagree (recording and estimation error, change over time); an unknown
  descriptor has LR = 1. The values of ``p`` and ``e`` are :data:`FIELD_MODEL`;
- a mark on the report with a mark of the same type on the same body region of the case (sides
  not contradicting) has LR = 1 / p(type) (:data:`MARK_RARITY`), times :data:`KEYWORD_LR` when
  their keywords or descriptions share a word across scripts (``якорь`` ~ ``yakor``). A mark
  recorded on one side only costs nothing: marks are often missed on remains.

A descriptor that an exclusion rule already applied to (sex, age, height, when the rule is on and
the pair was screened by it) weighs nothing when it agrees: every pair it contradicts is gone, so
among the remaining ones it no longer tells people apart (counting it again would double the
false leads; ``bench/reconcile.py`` measured it).

The descriptors are treated as independent, and the product of their LRs is capped at
:data:`MAX_LOG10_LR` so that secondary evidence never outweighs the face by more than the
calibration can vouch for. The lead's *adjusted FMR* is the face's calibrated FMR divided by
that product (FMR 1 when the case has no usable face), and its *adjusted FPIR* is that FMR over
the compatible gallery: 1 - (1 - FMR_adj)^N. Leads are ranked by adjusted FPIR, lowest first.
A pair becomes a lead when its adjusted FPIR is within the review FPIR (a face that passes alone
stays a lead unless the agreement speaks against it); the face alone still decides every search's
"match", and a lead without a face is flagged ``marks`` so that no one
mistakes it for a face match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date

from rapidfuzz import fuzz

from facetrace.store.names import name_key
from facetrace.workflow.reconcile.facts import Descriptors, Mark, Span, age_on
from facetrace.workflow.reconcile.vocabulary import ASPECTS, BODY_REGIONS, MARK_TYPES, SIDES, label

AGREES, DISAGREES, UNKNOWN = "agrees", "disagrees", "unknown"

#: field -> (p: chance that two unrelated people agree, e: chance that one person's two records disagree)
FIELD_MODEL: dict[str, tuple[float, float]] = {
    "sex": (0.5, 0.03),
    # Estimates: a 10-year age range around an estimate within +-8 years misses the true age about a
    # third of the time (bench/reconcile.py measures e = 0.32 for age, 0.27 for height).
    "age": (0.3, 0.3),
    "height": (0.35, 0.3),
    "build": (0.4, 0.25),
    "hair_colour": (0.3, 0.2),
    "hair_length": (0.35, 0.3),
    "eye_colour": (0.35, 0.15),
    "facial_hair": (0.4, 0.4),
}
#: mark type -> the chance that an unrelated person has a mark of that type on the same body region
MARK_RARITY: dict[str, float] = {
    "tattoo": 0.05,
    "scar": 0.1,
    "birthmark": 0.08,
    "piercing": 0.2,
    "amputation": 0.01,
    "deformity": 0.03,
    "dental": 0.08,
}
KEYWORD_LR = 10.0  # two marks whose words agree are far rarer than two marks of one type and place
KEYWORD_SIMILARITY = 80.0  # rapidfuzz ratio (0-100) of two folded words to count as one word
MAX_LOG10_LR = 4.0
FIELD_LABELS = {
    "sex": "Sex",
    "age": "Age",
    "height": "Height",
    "build": "Build",
    "hair_colour": "Hair colour",
    "hair_length": "Hair length",
    "eye_colour": "Eye colour",
    "facial_hair": "Facial hair",
}
_CATEGORICAL = ("sex", "build", "hair_colour", "hair_length", "eye_colour", "facial_hair")


@dataclass(frozen=True)
class FieldAgreement:
    """One descriptor compared: the verdict, both values in words and the likelihood ratio."""

    field: str
    verdict: str
    report_value: str
    case_value: str
    lr: float
    screened: bool = False  # an exclusion rule already used it: it weighs nothing more (lr 1)

    def to_dict(self) -> dict[str, object]:
        return {
            "field": self.field,
            "label": FIELD_LABELS[self.field],
            "verdict": self.verdict,
            "report": self.report_value,
            "case": self.case_value,
            "lr": round(self.lr, 3),
            "screened": self.screened,
        }


@dataclass(frozen=True)
class MarkPair:
    """A report mark and a case mark that correspond (same type, same body region)."""

    report_mark: Mark
    case_mark: Mark
    words: tuple[str, ...]  # the words they share (as written on the report)
    lr: float

    def to_dict(self) -> dict[str, object]:
        return {
            "report_mark_id": self.report_mark.id,
            "case_mark_id": self.case_mark.id,
            "type": self.report_mark.type,
            "region": self.report_mark.region,
            "report": self.report_mark.summary(),
            "case": self.case_mark.summary(),
            "shared_words": list(self.words),
            "lr": round(self.lr, 2),
        }


@dataclass(frozen=True)
class Agreement:
    """Everything secondary that a report and a case agree or disagree on."""

    fields: tuple[FieldAgreement, ...]
    marks: tuple[MarkPair, ...]

    @property
    def log10_lr(self) -> float:
        """Return the combined log10 likelihood ratio, capped at +-:data:`MAX_LOG10_LR`."""
        total = sum(math.log10(f.lr) for f in self.fields) + sum(math.log10(m.lr) for m in self.marks)
        return max(-MAX_LOG10_LR, min(MAX_LOG10_LR, total))

    def count(self, verdict: str) -> int:
        return sum(1 for f in self.fields if f.verdict == verdict)

    def summary(self) -> str:
        """Return e.g. ``agree: 3, disagree: 1, unknown: 4; 1 corresponding mark``."""
        agree, disagree, unknown = self.count(AGREES), self.count(DISAGREES), self.count(UNKNOWN)
        marks = len(self.marks)
        text = f"agree: {agree}, disagree: {disagree}, unknown: {unknown}"
        return text + (f"; {marks} corresponding mark{'s' if marks != 1 else ''}" if marks else "")

    def to_dict(self) -> dict[str, object]:
        return {
            "fields": [f.to_dict() for f in self.fields],
            "marks": [m.to_dict() for m in self.marks],
            "agrees": self.count(AGREES),
            "disagrees": self.count(DISAGREES),
            "unknown": self.count(UNKNOWN),
            "log10_lr": round(self.log10_lr, 3),
            "summary": self.summary(),
        }


def _lr(field: str, verdict: str) -> float:
    p, e = FIELD_MODEL[field]
    if verdict == AGREES:
        return (1 - e) / p
    if verdict == DISAGREES:
        return e / (1 - p)
    return 1.0


def _span_field(field: str, report: Span, case: Span, unit: str) -> FieldAgreement:
    verdict = UNKNOWN if not report.known or not case.known else AGREES if report.gap(case) == 0 else DISAGREES
    return FieldAgreement(field, verdict, report.text(unit), case.text(unit), _lr(field, verdict))


def compare_descriptors(
    report: Descriptors,
    date_of_birth: str | None,
    case: Descriptors,
    found_on: date | None,
    screened: frozenset[str] = frozenset(),
) -> list[FieldAgreement]:
    """Return the verdict on each descriptor, in :data:`FIELD_MODEL` order. A field in ``screened``
    (an exclusion rule already ruled out every pair it contradicts) that agrees weighs nothing more:
    among the compatible records it no longer tells people apart, and counting it again would
    count it twice."""
    out: list[FieldAgreement] = []
    for field in FIELD_MODEL:
        if field == "age":
            age = age_on(date_of_birth, found_on) if found_on else Span()
            out.append(_span_field("age", age, case.age, "years"))
        elif field == "height":
            out.append(_span_field("height", report.height, case.height, "cm"))
        else:
            a, b = getattr(report, field), getattr(case, field)
            verdict = UNKNOWN if a is None or b is None else AGREES if a == b else DISAGREES
            out.append(
                FieldAgreement(field, verdict, label(a) or "unknown", label(b) or "unknown", _lr(field, verdict))
            )
    assert all(f.field in _CATEGORICAL or f.field in ("age", "height") for f in out)
    return [replace(f, lr=1.0, screened=True) if f.field in screened and f.verdict == AGREES else f for f in out]


# Words that say nothing of *which* mark it is: the vocabulary's own words and common short words.
UNINFORMATIVE = frozenset(
    name_key(w)
    for w in (
        *MARK_TYPES,
        *BODY_REGIONS,
        *SIDES,
        *ASPECTS,
        *("the", "and", "with", "from", "for", "has", "his", "her", "are", "was", "old", "new", "small", "large"),
        *("faded", "lines", "letters", "name", "word", "words", "text", "picture", "image", "tattooed"),
        *("надпись", "напис", "тату", "татуировка", "татуювання", "шрам", "рубец"),
    )
)


def words_of(mark: Mark) -> dict[str, str]:
    """Return a mark's telling words (keywords and description words of 3+ letters, without the
    :data:`UNINFORMATIVE` ones) by their folded key, so that spellings in Cyrillic and Latin letters
    meet (:func:`facetrace.store.names.name_key`)."""
    words: dict[str, str] = {}
    for phrase in (*mark.keywords, mark.description):
        for word in phrase.replace(",", " ").split():
            key = name_key(word)
            if len(key) >= 3 and " " not in key and key not in UNINFORMATIVE:
                words.setdefault(key, word)
    return words


def shared_words(a: Mark, b: Mark) -> tuple[str, ...]:
    """Return the words of ``a`` that ``b`` also has, across scripts and close spellings."""
    words_b = list(words_of(b))
    return tuple(
        word
        for key, word in words_of(a).items()
        if any(fuzz.ratio(key, other) >= KEYWORD_SIMILARITY for other in words_b)
    )


def _sides_agree(a: Mark, b: Mark) -> bool:
    if a.side is None or b.side is None or "both" in (a.side, b.side):
        return True
    return a.side == b.side


def corresponding_marks(report_marks: list[Mark], case_marks: list[Mark]) -> list[MarkPair]:
    """Return the pairs of corresponding marks: same type, same body region, sides not
    contradicting; each mark in at most one pair, the strongest pairs taken first (so the result
    does not depend on the order the marks were recorded in)."""
    candidates: list[tuple[float, int, int, MarkPair]] = []
    for i, rm in enumerate(report_marks):
        for j, cm in enumerate(case_marks):
            if cm.type != rm.type or cm.region != rm.region or not _sides_agree(rm, cm):
                continue
            words = shared_words(rm, cm)
            lr = (1.0 / MARK_RARITY[rm.type]) * (KEYWORD_LR if words else 1.0)
            candidates.append((lr, i, j, MarkPair(rm, cm, words, lr)))
    pairs: list[tuple[int, MarkPair]] = []
    used_report: set[int] = set()
    used_case: set[int] = set()
    for _lr, i, j, pair in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if i not in used_report and j not in used_case:
            used_report.add(i)
            used_case.add(j)
            pairs.append((i, pair))
    return [pair for _, pair in sorted(pairs, key=lambda p: p[0])]


def agreement(
    report: Descriptors,
    date_of_birth: str | None,
    report_marks: list[Mark],
    case: Descriptors,
    found_on: date | None,
    case_marks: list[Mark],
    screened: frozenset[str] = frozenset(),
) -> Agreement:
    """Return the descriptor verdicts and the corresponding marks of a report and a case
    (``screened``: the fields an exclusion rule already applied to, see :func:`compare_descriptors`)."""
    return Agreement(
        tuple(compare_descriptors(report, date_of_birth, case, found_on, screened)),
        tuple(corresponding_marks(report_marks, case_marks)),
    )


def adjusted_fmr(face_fmr: float | None, secondary: Agreement) -> float:
    """Return the face's FMR (1 without a face) divided by the secondary likelihood ratio, in (0, 1]."""
    fmr = 1.0 if face_fmr is None else face_fmr
    return min(1.0, max(1e-300, fmr / 10**secondary.log10_lr))
