"""What a record says of the person, as checked values: descriptors (sex, age, height, build,
hair, eyes, facial hair) and distinguishing marks.

A report (ante-mortem) gives a date of birth and a height or height range; a case (post-mortem)
gives an estimated age range and a height range. Every field may be unknown (None): an unknown
field neither agrees nor disagrees. Parsing raises ``InvalidInput`` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from facetrace.workflow.common import InvalidInput
from facetrace.workflow.reconcile.vocabulary import (
    ASPECTS,
    BODY_REGIONS,
    CHOICES,
    MARK_TYPES,
    SIDES,
)

MAX_AGE = 120
HEIGHT_CM = (40, 250)  # children and body parts included; beyond this a height is a typing error
DESCRIPTOR_FIELDS = ("sex", "build", "hair_colour", "hair_length", "eye_colour", "facial_hair")
RANGE_FIELDS = ("age_min", "age_max", "height_min", "height_max")


@dataclass(frozen=True)
class Span:
    """A closed interval; either end may be unknown (None)."""

    low: float | None = None
    high: float | None = None

    @property
    def known(self) -> bool:
        return self.low is not None or self.high is not None

    def gap(self, other: Span) -> float:
        """Return how far apart two spans are (0 when they overlap or either is unknown)."""
        if not self.known or not other.known:
            return 0.0
        lo_a = self.low if self.low is not None else float("-inf")
        hi_a = self.high if self.high is not None else float("inf")
        lo_b = other.low if other.low is not None else float("-inf")
        hi_b = other.high if other.high is not None else float("inf")
        return max(0.0, lo_a - hi_b, lo_b - hi_a)

    def text(self, unit: str) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} {unit}" if self.low == self.high else f"{self.low:g}-{self.high:g} {unit}"
        if self.low is not None:
            return f"at least {self.low:g} {unit}"
        if self.high is not None:
            return f"at most {self.high:g} {unit}"
        return "unknown"


@dataclass(frozen=True)
class Descriptors:
    """The structured descriptors of one record; None: unknown. Ages in years, heights in cm."""

    sex: str | None = None
    age_min: int | None = None  # cases: the estimated age range (reports give a date of birth)
    age_max: int | None = None
    height_min: int | None = None  # a report's single height is height_min = height_max
    height_max: int | None = None
    build: str | None = None
    hair_colour: str | None = None
    hair_length: str | None = None
    eye_colour: str | None = None
    facial_hair: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return every field, unknown ones as None (the JSON the API returns and the database keeps)."""
        return asdict(self)

    @property
    def height(self) -> Span:
        return Span(self.height_min, self.height_max)

    @property
    def age(self) -> Span:
        return Span(self.age_min, self.age_max)

    def known(self) -> list[str]:
        """Return the names of the fields that are known."""
        return [k for k, v in asdict(self).items() if v is not None]

    def stored(self) -> dict[str, Any]:
        """Return the known fields only: what a record's ``descriptors`` column keeps."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Mark:
    """A distinguishing mark: its type, coded body location, description and keywords."""

    type: str
    region: str
    side: str | None = None
    aspect: str | None = None
    description: str = ""
    keywords: tuple[str, ...] = field(default_factory=tuple)
    id: int | None = None

    def location(self) -> str:
        """Return the body location in words, e.g. ``left forearm (outer)``."""
        words = " ".join(w for w in (self.side, self.region.replace("_", " ")) if w)
        return f"{words} ({self.aspect})" if self.aspect else words

    def summary(self) -> str:
        """Return e.g. ``tattoo, left forearm (outer): anchor``."""
        what = f"{self.type}, {self.location()}"
        detail = ", ".join(self.keywords) or self.description
        return f"{what}: {detail}" if detail else what


def refuse_unknown(data: dict[str, Any], allowed: set[str] | frozenset[str], what: str, extra: str = "") -> None:
    """Refuse an object with a field that ``what`` does not have (naming them).

    Raises:
        InvalidInput: one or more unknown fields.
    """
    unknown = set(data) - set(allowed)
    if unknown:
        raise InvalidInput(f"{what}: unknown field(s) {', '.join(sorted(unknown))}{extra}")


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...], where: str) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lower()
    if text not in choices:
        raise InvalidInput(f"{where}{key}: {value!r} is not one of: {', '.join(choices)}")
    return text


def _number(data: dict[str, Any], key: str, low: int, high: int, where: str) -> int | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}{key}: {value!r} is not a number") from None
    if number != number or not low <= number <= high:  # NaN too
        raise InvalidInput(f"{where}{key}: {value!r} is impossible (between {low} and {high})")
    return round(number)


def parse_descriptors(data: dict[str, Any] | None, *, record: str) -> Descriptors:
    """Return checked descriptors from a JSON object. ``record`` is ``report`` or ``case``: a report
    gives its height as ``height`` (one value) or a range; only a case gives an age range (a
    report's age follows from its date of birth).

    Raises:
        InvalidInput: an unknown field or code, an impossible age or height, a range upside down.
    """
    data = dict(data or {})
    if "height" in data:
        height = _number(data, "height", *HEIGHT_CM, "")  # checked under the name the caller used
        data.pop("height")
        if height is not None:
            data["height_min"] = data["height_max"] = height
    allowed = set(DESCRIPTOR_FIELDS) | {"height_min", "height_max"}
    if record == "case":
        allowed |= {"age_min", "age_max"}
    ages = {"age_min", "age_max"} & (set(data) - allowed)
    refuse_unknown(data, allowed, "descriptors", " (a report's age follows from its date of birth)" if ages else "")
    values: dict[str, Any] = {k: _choice(data, k, CHOICES[k], "") for k in DESCRIPTOR_FIELDS}
    values["height_min"] = _number(data, "height_min", *HEIGHT_CM, "")
    values["height_max"] = _number(data, "height_max", *HEIGHT_CM, "")
    values["age_min"] = _number(data, "age_min", 0, MAX_AGE, "")
    values["age_max"] = _number(data, "age_max", 0, MAX_AGE, "")
    for low, high in (("age_min", "age_max"), ("height_min", "height_max")):
        if values[low] is not None and values[high] is not None and values[low] > values[high]:
            raise InvalidInput(f"{low}, {high}: the range is upside down ({values[low]} > {values[high]})")
    return Descriptors(**values)


def keywords_of(value: Any) -> tuple[str, ...]:
    """Return keywords from a list or a comma-separated text: trimmed, non-empty, at most 20.

    Raises:
        InvalidInput: neither a text nor a list of texts, or more than 20.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(w, str) for w in value):
        items = list(value)
    else:
        raise InvalidInput("keywords: a text (comma-separated) or a list of texts")
    words = tuple(dict.fromkeys(str(w).strip()[:100] for w in items if str(w).strip()))
    if len(words) > 20:
        raise InvalidInput("keywords: at most 20")
    return words


def parse_mark(data: dict[str, Any]) -> Mark:
    """Return a checked mark from a JSON object with ``type``, ``region`` and optional ``side``,
    ``aspect``, ``description`` and ``keywords``.

    Raises:
        InvalidInput: a missing or unknown code (naming the field), a field this object does not have.
    """
    refuse_unknown(data, {"type", "region", "side", "aspect", "description", "keywords"}, "mark")
    kind = _choice(data, "type", MARK_TYPES, "mark ")
    region = _choice(data, "region", BODY_REGIONS, "mark ")
    if kind is None or region is None:
        raise InvalidInput("mark type and mark region are required (body location from the list)")
    description = str(data.get("description") or "").strip()
    if len(description) > 2000:
        raise InvalidInput("mark description: at most 2000 characters")
    return Mark(
        type=kind,
        region=region,
        side=_choice(data, "side", SIDES, "mark "),
        aspect=_choice(data, "aspect", ASPECTS, "mark "),
        description=description,
        keywords=keywords_of(data.get("keywords")),
    )


def age_on(date_of_birth: str | None, on: date) -> Span:
    """Return the age in whole years on ``on`` of someone born on a (possibly partial) date of birth
    (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``): an interval when the date is partial. Unknown when no
    date of birth is recorded."""
    if not date_of_birth:
        return Span()
    parts = [int(p) for p in date_of_birth.split("-")]
    year = parts[0]
    earliest = date(year, parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    if len(parts) == 3:
        latest = earliest
    elif len(parts) == 2:
        latest = date(year + (parts[1] == 12), parts[1] % 12 + 1, 1).replace(day=1)
        latest = date.fromordinal(latest.toordinal() - 1)
    else:
        latest = date(year, 12, 31)

    def years(born: date) -> int:
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))

    return Span(float(years(latest)), float(years(earliest)))
