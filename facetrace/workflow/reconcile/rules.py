"""Exclusion: when the facts recorded on a report and on a case rule each other out.

Three rules, each with its tolerance, set by an admin (``Settings.exclusion_*``):

- **sex**: recorded on both and different;
- **age**: the report's age on the day the case was found (from its date of birth, an interval
  when the date is partial) lies outside the case's estimated age range by more than the tolerance;
- **height**: the report's height (or range) lies outside the case's height range by more than the
  tolerance.

An unknown field never excludes. Every exclusion is explained in words, naming both values. The
tolerances absorb estimation error; they never need to absorb a recording error, which the
examiner corrects (and an examiner can always widen a search to ignore exclusions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from facetrace.workflow.reconcile.facts import Descriptors, age_on


@dataclass(frozen=True)
class ExclusionRules:
    """Which rules apply and their tolerances (None: the rule is off)."""

    sex: bool = True
    age_tolerance_years: float | None = 5.0
    height_tolerance_cm: float | None = 5.0

    def fields(self) -> frozenset[str]:
        """Return the descriptors these rules screen pairs on (sex, age, height)."""
        on = {
            "sex": self.sex,
            "age": self.age_tolerance_years is not None,
            "height": self.height_tolerance_cm is not None,
        }
        return frozenset(name for name, applies in on.items() if applies)


@dataclass(frozen=True)
class Exclusion:
    """One rule that rules a pair out: its name and why, in words."""

    rule: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "reason": self.reason}


def rules_from(enabled: str, age_tolerance_years: float, height_tolerance_cm: float) -> ExclusionRules:
    """Return the rules of the settings: ``enabled`` lists the rules that apply (``sex,age,height``;
    ``none`` or "" for none) with their tolerances."""
    names = {r.strip().lower() for r in enabled.split(",")}
    return ExclusionRules(
        sex="sex" in names,
        age_tolerance_years=age_tolerance_years if "age" in names else None,
        height_tolerance_cm=height_tolerance_cm if "height" in names else None,
    )


def exclusions(
    report: Descriptors,
    date_of_birth: str | None,
    case: Descriptors,
    found_on: date | None,
    rules: ExclusionRules,
) -> list[Exclusion]:
    """Return the rules that rule out that this report and this case are one person (empty: they
    are compatible). ``found_on``: the day the case was found (or recorded), for the report's age."""
    out: list[Exclusion] = []
    if rules.sex and report.sex and case.sex and report.sex != case.sex:
        out.append(Exclusion("sex", f"sex: the report says {report.sex}, the case says {case.sex}"))
    if rules.age_tolerance_years is not None and found_on is not None and case.age.known:
        age = age_on(date_of_birth, found_on)
        gap = age.gap(case.age)
        if gap > rules.age_tolerance_years:
            out.append(
                Exclusion(
                    "age",
                    f"age: born {date_of_birth}, the reported person was {age.text('years')} old on "
                    f"{found_on.isoformat()}; the case's estimated age is {case.age.text('years')} "
                    f"({gap:g} years apart, tolerance {rules.age_tolerance_years:g})",
                )
            )
    if rules.height_tolerance_cm is not None:
        gap = report.height.gap(case.height)
        if gap > rules.height_tolerance_cm:
            out.append(
                Exclusion(
                    "height",
                    f"height: the report says {report.height.text('cm')}, the case says "
                    f"{case.height.text('cm')} ({gap:g} cm apart, tolerance {rules.height_tolerance_cm:g})",
                )
            )
    return out
