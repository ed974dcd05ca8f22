"""Reconciliation beyond the face, as pure functions (no database, no face model): the age of a
(possibly partial) date of birth, parsing descriptors and marks, the exclusion rules with their
tolerances, and the agreement of a report and a case with its likelihood ratios."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pytest

from facetrace.workflow.common import InvalidInput
from facetrace.workflow.reconcile.agreement import (
    AGREES,
    DISAGREES,
    FIELD_MODEL,
    KEYWORD_LR,
    MARK_RARITY,
    MAX_LOG10_LR,
    UNKNOWN,
    Agreement,
    FieldAgreement,
    MarkPair,
    adjusted_fmr,
    agreement,
    compare_descriptors,
    corresponding_marks,
    shared_words,
)
from facetrace.workflow.reconcile.facts import (
    Descriptors,
    Mark,
    Span,
    age_on,
    keywords_of,
    parse_descriptors,
    parse_mark,
)
from facetrace.workflow.reconcile.rules import Exclusion, ExclusionRules, exclusions, rules_from

FOUND = date(2020, 6, 15)
DEFAULT_RULES = ExclusionRules()  # sex on, age and height with a tolerance of 5


def _case_age(low: int | None, high: int | None) -> Descriptors:
    return Descriptors(age_min=low, age_max=high)


def _excluded_by_age(date_of_birth: str, low: int | None, high: int | None, tolerance: float = 5.0) -> bool:
    rules = ExclusionRules(sex=False, age_tolerance_years=tolerance, height_tolerance_cm=None)
    found = exclusions(Descriptors(), date_of_birth, _case_age(low, high), FOUND, rules)
    assert [e.rule for e in found] in ([], ["age"])
    return bool(found)


def _field(result: list[FieldAgreement], name: str) -> FieldAgreement:
    (only,) = [f for f in result if f.field == name]
    return only


def _one(name: str, value: str) -> Descriptors:
    """Descriptors with only this categorical field known."""
    return parse_descriptors({name: value}, record="case")


def _agreement_of(fields: list[tuple[str, str]], marks: int = 0) -> Agreement:
    """An agreement with these (field, verdict) pairs and ``marks`` corresponding tattoo pairs."""
    tattoo = Mark("tattoo", "forearm")
    return Agreement(
        tuple(FieldAgreement(f, v, "", "", 1.0) for f, v in fields),
        tuple(MarkPair(tattoo, tattoo, (), 20.0) for _ in range(marks)),
    )


# -- age_on ----------------------------------------------------------------------------------------
def test_age_on_a_full_date_of_birth_counts_whole_years_and_the_birthday_itself() -> None:
    assert age_on("1980-06-15", date(2020, 6, 14)) == Span(39.0, 39.0)
    assert age_on("1980-06-15", date(2020, 6, 15)) == Span(40.0, 40.0)  # the birthday is the found date
    assert age_on("1980-06-15", date(2020, 6, 16)) == Span(40.0, 40.0)
    assert age_on("1980-06-15", date(1980, 6, 15)) == Span(0.0, 0.0)


def test_age_on_a_29_february_birthday_counts_from_1_march_in_common_years() -> None:
    assert age_on("2000-02-29", date(2021, 2, 28)) == Span(20.0, 20.0)
    assert age_on("2000-02-29", date(2021, 3, 1)) == Span(21.0, 21.0)
    assert age_on("2000-02-29", date(2024, 2, 28)) == Span(23.0, 23.0)
    assert age_on("2000-02-29", date(2024, 2, 29)) == Span(24.0, 24.0)


def test_age_on_a_month_only_date_of_birth_is_an_interval_over_that_month() -> None:
    assert age_on("1980-06", date(2020, 5, 31)) == Span(39.0, 39.0)
    assert age_on("1980-06", date(2020, 6, 1)) == Span(39.0, 40.0)  # born 1 June: 40 today
    assert age_on("1980-06", date(2020, 6, 30)) == Span(40.0, 40.0)  # June has 30 days
    assert age_on("1980-12", date(2020, 12, 30)) == Span(39.0, 40.0)  # December has 31 days
    assert age_on("1980-12", date(2020, 12, 31)) == Span(40.0, 40.0)
    # February: 29 days in a leap year of birth, 28 otherwise.
    assert age_on("2000-02", date(2021, 2, 28)) == Span(20.0, 21.0)
    assert age_on("2001-02", date(2021, 2, 28)) == Span(20.0, 20.0)


def test_age_on_a_year_only_date_of_birth_is_an_interval_over_that_year() -> None:
    assert age_on("1980", date(2020, 1, 1)) == Span(39.0, 40.0)
    assert age_on("1980", date(2020, 12, 30)) == Span(39.0, 40.0)
    assert age_on("1980", date(2020, 12, 31)) == Span(40.0, 40.0)
    assert age_on("2000", date(2021, 2, 28)) == Span(20.0, 21.0)


def test_age_on_no_date_of_birth_is_unknown() -> None:
    assert age_on(None, FOUND) == Span()
    assert age_on("", FOUND) == Span()
    assert not age_on(None, FOUND).known


@pytest.mark.parametrize(("partial", "first", "last"), [("2000", 1, 366), ("2000-02", 32, 60), ("1999-12", 335, 365)])
def test_age_on_a_partial_date_of_birth_spans_exactly_the_ages_of_its_days(partial: str, first: int, last: int) -> None:
    year = int(partial[:4])
    days = [date(year, 1, 1) + timedelta(days=n - 1) for n in range(first, last + 1)]
    for found in (date(2021, 2, 28), date(2024, 2, 29), date(2020, 12, 31), date(2021, 1, 1)):
        ages = [float(found.year - d.year - ((found.month, found.day) < (d.month, d.day))) for d in days]
        assert age_on(partial, found) == Span(min(ages), max(ages)), (partial, found)


# -- exclusion rules -------------------------------------------------------------------------------
def test_a_different_sex_excludes_with_both_values_in_words() -> None:
    found = exclusions(Descriptors(sex="female"), None, Descriptors(sex="male"), FOUND, DEFAULT_RULES)
    assert found == [Exclusion("sex", "sex: the report says female, the case says male")]
    assert found[0].to_dict() == {"rule": "sex", "reason": "sex: the report says female, the case says male"}


@pytest.mark.parametrize(("report", "case"), [("male", "male"), (None, "male"), ("female", None), (None, None)])
def test_the_same_sex_or_an_unknown_one_never_excludes(report: str | None, case: str | None) -> None:
    assert exclusions(Descriptors(sex=report), None, Descriptors(sex=case), FOUND, DEFAULT_RULES) == []


def test_age_excludes_only_beyond_the_tolerance_on_either_side() -> None:
    dob = "1980-06-15"  # 40 on FOUND
    assert not _excluded_by_age(dob, 45, 50)  # 5 years apart: within the tolerance
    assert _excluded_by_age(dob, 46, 50)
    assert not _excluded_by_age(dob, 30, 35)
    assert _excluded_by_age(dob, 30, 34)
    assert not _excluded_by_age(dob, 38, 42)  # inside the range
    # An open-ended estimate.
    assert not _excluded_by_age(dob, 45, None)
    assert _excluded_by_age(dob, None, 34)
    # The tolerance is the admin's: 0 excludes any gap, a fraction is compared as is.
    assert _excluded_by_age(dob, 41, 50, tolerance=0)
    assert not _excluded_by_age(dob, 40, 50, tolerance=0)
    assert _excluded_by_age(dob, 43, 50, tolerance=2.5)
    assert not _excluded_by_age(dob, 42, 50, tolerance=2.5)


def test_an_age_exclusion_reason_names_the_date_of_birth_both_ages_the_gap_and_the_tolerance() -> None:
    found = exclusions(Descriptors(), "1980-06-15", _case_age(46, 50), FOUND, DEFAULT_RULES)
    assert found == [
        Exclusion(
            "age",
            "age: born 1980-06-15, the reported person was 40 years old on 2020-06-15; "
            "the case's estimated age is 46-50 years (6 years apart, tolerance 5)",
        )
    ]
    partial = exclusions(Descriptors(), "1980", _case_age(20, 33), FOUND, DEFAULT_RULES)
    assert [e.reason for e in partial] == [
        "age: born 1980, the reported person was 39-40 years old on 2020-06-15; "
        "the case's estimated age is 20-33 years (6 years apart, tolerance 5)"
    ]


@pytest.mark.parametrize(
    ("dob", "low", "high", "excluded"),
    [
        # Born in 1980: 39 or 40 on 15 June 2020. A true age of 40 (born before 15 June) is 5 from 45.
        ("1980", 45, 50, False),
        ("1980", 46, 50, True),
        ("1980", 30, 34, False),  # a true age of 39 is 5 from 34
        ("1980", 30, 33, True),
        # Born in June 1980: 39 (born after the 15th) or 40.
        ("1980-06", 45, 50, False),
        ("1980-06", 46, 50, True),
        ("1980-06", 25, 34, False),
        ("1980-06", 25, 33, True),
        # Born in July 1980: 39 only.
        ("1980-07", 44, 50, False),
        ("1980-07", 45, 50, True),
    ],
)
def test_a_partial_date_of_birth_never_excludes_a_true_age_at_the_boundary(
    dob: str, low: int, high: int, excluded: bool
) -> None:
    assert _excluded_by_age(dob, low, high) is excluded


@pytest.mark.parametrize("partial", ["1980", "1980-06", "1980-02", "1979-12"])
def test_a_partial_date_of_birth_is_excluded_exactly_when_every_day_it_covers_is(partial: str) -> None:
    parts = [int(p) for p in partial.split("-")]
    first = date(parts[0], parts[1] if len(parts) > 1 else 1, 1)
    days = [first + timedelta(days=n) for n in range(366)]
    days = [d for d in days if d.year == first.year and (len(parts) == 1 or d.month == first.month)]
    for low in range(30, 50):
        for high in (low, low + 4):
            every_day = all(_excluded_by_age(d.isoformat(), low, high) for d in days)
            assert _excluded_by_age(partial, low, high) is every_day, (partial, low, high)


def test_age_never_excludes_without_a_date_of_birth_a_found_date_or_a_case_estimate() -> None:
    case = _case_age(60, 70)
    assert exclusions(Descriptors(), None, case, FOUND, DEFAULT_RULES) == []
    assert exclusions(Descriptors(), "1980-06-15", case, None, DEFAULT_RULES) == []
    assert exclusions(Descriptors(), "1980-06-15", Descriptors(), FOUND, DEFAULT_RULES) == []


@pytest.mark.parametrize(
    ("report", "case", "excluded"),
    [
        ((170, 170), (175, 180), False),  # 5 cm apart: within the tolerance
        ((170, 170), (176, 180), True),
        ((170, 170), (160, 165), False),
        ((170, 170), (160, 164), True),
        ((168, 172), (177, 185), False),
        ((168, 172), (178, 185), True),
        ((170, 170), (165, 175), False),
        ((170, 170), (176, None), True),  # "at least 176 cm"
        ((170, 170), (None, 164), True),
        ((None, None), (200, 210), False),
        ((170, 170), (None, None), False),
    ],
)
def test_height_excludes_only_beyond_the_tolerance_on_either_side(
    report: tuple[int | None, int | None], case: tuple[int | None, int | None], excluded: bool
) -> None:
    found = exclusions(
        Descriptors(height_min=report[0], height_max=report[1]),
        None,
        Descriptors(height_min=case[0], height_max=case[1]),
        FOUND,
        DEFAULT_RULES,
    )
    assert [e.rule for e in found] == (["height"] if excluded else [])


def test_a_height_exclusion_reason_names_both_heights_the_gap_and_the_tolerance() -> None:
    one = exclusions(
        Descriptors(height_min=170, height_max=170),
        None,
        Descriptors(height_min=176, height_max=180),
        FOUND,
        DEFAULT_RULES,
    )
    assert one == [
        Exclusion("height", "height: the report says 170 cm, the case says 176-180 cm (6 cm apart, tolerance 5)")
    ]
    rules = rules_from("height", 5, 2.5)
    open_ended = exclusions(
        Descriptors(height_min=168, height_max=172), None, Descriptors(height_min=175), FOUND, rules
    )
    assert [e.reason for e in open_ended] == [
        "height: the report says 168-172 cm, the case says at least 175 cm (3 cm apart, tolerance 2.5)"
    ]


def test_rules_from_the_settings_switch_rules_on_and_off() -> None:
    assert rules_from("sex,age,height", 4, 7) == ExclusionRules(True, 4, 7)
    assert rules_from(" Sex , AGE,height ", 4, 7) == ExclusionRules(True, 4, 7)
    assert rules_from("sex", 4, 7) == ExclusionRules(True, None, None)
    assert rules_from("age,height", 4, 7) == ExclusionRules(False, 4, 7)
    assert rules_from("none", 4, 7) == ExclusionRules(False, None, None)
    assert rules_from("", 4, 7) == ExclusionRules(False, None, None)


def test_only_the_rules_switched_on_exclude() -> None:
    report = Descriptors(sex="female", height_min=150, height_max=150)
    case = Descriptors(sex="male", age_min=70, age_max=80, height_min=190, height_max=195)
    everything = exclusions(report, "1980-06-15", case, FOUND, rules_from("sex,age,height", 5, 5))
    assert [e.rule for e in everything] == ["sex", "age", "height"]
    assert [e.rule for e in exclusions(report, "1980-06-15", case, FOUND, rules_from("sex", 5, 5))] == ["sex"]
    assert [e.rule for e in exclusions(report, "1980-06-15", case, FOUND, rules_from("age", 5, 5))] == ["age"]
    assert exclusions(report, "1980-06-15", case, FOUND, rules_from("none", 5, 5)) == []
    # A tolerance wide enough absorbs any estimate.
    assert [e.rule for e in exclusions(report, "1980-06-15", case, FOUND, rules_from("age,height", 40, 45))] == []


def test_an_unknown_field_never_excludes() -> None:
    known = Descriptors(sex="male", age_min=70, age_max=80, height_min=190, height_max=195)
    assert exclusions(Descriptors(), None, known, FOUND, DEFAULT_RULES) == []
    assert (
        exclusions(
            Descriptors(sex="female", height_min=150, height_max=150), "1950", Descriptors(), FOUND, DEFAULT_RULES
        )
        == []
    )


# -- parse_descriptors -----------------------------------------------------------------------------
def test_parse_descriptors_normalises_codes_heights_and_empty_values() -> None:
    parsed = parse_descriptors(
        {
            "sex": "FEMALE",
            "hair_colour": " Brown ",
            "height": "171.6",
            "build": "",
            "eye_colour": None,
            "facial_hair": "None",
        },
        record="report",
    )
    assert parsed == Descriptors(sex="female", hair_colour="brown", height_min=172, height_max=172, facial_hair="none")
    assert parsed.known() == ["sex", "height_min", "height_max", "hair_colour", "facial_hair"]
    assert parsed.to_dict() == {
        "sex": "female",
        "age_min": None,
        "age_max": None,
        "height_min": 172,
        "height_max": 172,
        "build": None,
        "hair_colour": "brown",
        "hair_length": None,
        "eye_colour": None,
        "facial_hair": "none",
    }
    assert parse_descriptors(None, record="report") == Descriptors()
    assert parse_descriptors({"height": "", "sex": "  ", "height_min": " "}, record="report") == Descriptors()
    assert parse_descriptors({"height_min": 160, "height_max": "175"}, record="report").height == Span(160, 175)
    case = parse_descriptors({"age_min": "30", "age_max": 40.0, "sex": "Male"}, record="case")
    assert (case.age, case.sex) == (Span(30, 40), "male")


def test_parse_descriptors_accepts_the_limits_of_age_and_height() -> None:
    assert parse_descriptors({"age_min": 0, "age_max": 120}, record="case").age == Span(0, 120)
    assert parse_descriptors({"height_min": 40, "height_max": 250}, record="case").height == Span(40, 250)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sex": "x"}, "sex: 'x' is not one of: female, male"),
        ({"hair_colour": "purple"}, "hair_colour: 'purple' is not one of: black, brown, blond, red, grey, white, none"),
        ({"facial_hair": "goatee"}, "facial_hair: 'goatee' is not one of"),
    ],
)
def test_parse_descriptors_refuses_an_unknown_code_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_descriptors(data, record="case")
    assert str(raised.value).startswith(message)
    assert raised.value.status == 422


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"age_min": 130}, "age_min: 130 is impossible (between 0 and 120)"),
        ({"age_max": -1}, "age_max: -1 is impossible (between 0 and 120)"),
        ({"age_max": 121}, "age_max: 121 is impossible (between 0 and 120)"),
        ({"height_min": 10}, "height_min: 10 is impossible (between 40 and 250)"),
        ({"height_max": 300}, "height_max: 300 is impossible (between 40 and 250)"),
        ({"height_min": 39.4}, "height_min: 39.4 is impossible (between 40 and 250)"),
        ({"height": 251}, "height: 251 is impossible (between 40 and 250)"),
        ({"height_min": "abc"}, "height_min: 'abc' is not a number"),
        ({"age_min": [30]}, "age_min: [30] is not a number"),
        ({"height_max": math.nan}, "height_max: nan is impossible (between 40 and 250)"),
        ({"height_max": "NaN"}, "height_max: 'NaN' is impossible (between 40 and 250)"),
        ({"height_max": "inf"}, "height_max: 'inf' is impossible (between 40 and 250)"),
    ],
)
def test_parse_descriptors_refuses_an_impossible_age_or_height(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_descriptors(data, record="case")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"age_min": 40, "age_max": 30}, "age_min, age_max: the range is upside down (40 > 30)"),
        ({"height_min": 180, "height_max": 170}, "height_min, height_max: the range is upside down (180 > 170)"),
    ],
)
def test_parse_descriptors_refuses_a_range_upside_down_naming_both_fields(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_descriptors(data, record="case")
    assert str(raised.value) == message


@pytest.mark.parametrize("key", ["age_min", "age_max"])
def test_parse_descriptors_refuses_an_age_range_on_a_report(key: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_descriptors({key: 30}, record="report")
    assert str(raised.value) == f"descriptors: unknown field(s) {key} (a report's age follows from its date of birth)"
    assert parse_descriptors({key: 30}, record="case").to_dict()[key] == 30


def test_parse_descriptors_refuses_an_unknown_field() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_descriptors({"weight": 80, "sex": "male", "shoe_size": 42}, record="case")
    assert str(raised.value) == "descriptors: unknown field(s) shoe_size, weight"


# -- parse_mark ------------------------------------------------------------------------------------
def test_parse_mark_normalises_codes_description_and_keywords() -> None:
    mark = parse_mark(
        {
            "type": "Tattoo",
            "region": "UPPER_ARM",
            "side": " Left",
            "aspect": "outer",
            "description": "  an anchor  ",
            "keywords": " anchor, rose ,, anchor,Rose ",
        }
    )
    assert mark == Mark("tattoo", "upper_arm", "left", "outer", "an anchor", ("anchor", "rose", "Rose"))
    assert mark.location() == "left upper arm (outer)"
    assert mark.summary() == "tattoo, left upper arm (outer): anchor, rose, Rose"
    bare = parse_mark({"type": "scar", "region": "chin", "side": "", "keywords": None})
    assert bare == Mark("scar", "chin")
    assert bare.summary() == "scar, chin"
    described = parse_mark({"type": "scar", "region": "knee", "description": "surgical", "keywords": []})
    assert described.summary() == "scar, knee: surgical"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "tattoo", "region": "tail"}, "mark region: 'tail' is not one of: scalp, forehead"),
        ({"type": "brand", "region": "hand"}, "mark type: 'brand' is not one of: tattoo, scar"),
        (
            {"type": "tattoo", "region": "hand", "side": "top"},
            "mark side: 'top' is not one of: left, right, centre, both",
        ),
        ({"type": "tattoo", "region": "hand", "aspect": "side"}, "mark aspect: 'side' is not one of: front, back"),
        ({"type": "tattoo"}, "mark type and mark region are required"),
        ({"region": "hand"}, "mark type and mark region are required"),
        ({"type": "tattoo", "region": " "}, "mark type and mark region are required"),
        ({"type": "tattoo", "region": "hand", "colour": "blue"}, "mark: unknown field(s) colour"),
        ({"type": "tattoo", "region": "hand", "description": "x" * 2001}, "mark description: at most 2000 characters"),
    ],
)
def test_parse_mark_refuses_bad_input_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_mark(data)
    assert str(raised.value).startswith(message)
    assert raised.value.status == 422


def test_mark_keywords_are_deduplicated_and_at_most_20() -> None:
    twenty = [f"word{n}" for n in range(20)]
    assert keywords_of(",".join(twenty)) == tuple(twenty)
    assert keywords_of([*twenty, "word0", " word1 "]) == tuple(twenty)  # duplicates do not count
    assert parse_mark({"type": "tattoo", "region": "hand", "keywords": twenty}).keywords == tuple(twenty)
    with pytest.raises(InvalidInput, match="keywords: at most 20"):
        parse_mark({"type": "tattoo", "region": "hand", "keywords": ",".join([*twenty, "word20"])})
    assert keywords_of("x" * 150) == ("x" * 100,)


def test_parse_mark_refuses_keywords_that_are_neither_a_list_nor_a_text() -> None:
    with pytest.raises(InvalidInput, match="keywords"):
        parse_mark({"type": "tattoo", "region": "hand", "keywords": 5})


# -- agreement: descriptors ------------------------------------------------------------------------
def test_each_descriptor_gets_a_verdict_both_values_in_words_and_its_lr() -> None:
    report = Descriptors(
        sex="female", height_min=170, height_max=170, build="slight", hair_colour="brown", facial_hair="none"
    )
    case = Descriptors(
        sex="female",
        age_min=35,
        age_max=45,
        height_min=165,
        height_max=175,
        build="heavy",
        eye_colour="blue",
        facial_hair="moustache_and_beard",
    )
    result = compare_descriptors(report, "1980-06-15", case, FOUND)
    assert [(f.field, f.verdict, f.report_value, f.case_value) for f in result] == [
        ("sex", AGREES, "female", "female"),
        ("age", AGREES, "40 years", "35-45 years"),
        ("height", AGREES, "170 cm", "165-175 cm"),
        ("build", DISAGREES, "slight", "heavy"),
        ("hair_colour", UNKNOWN, "brown", "unknown"),
        ("hair_length", UNKNOWN, "unknown", "unknown"),
        ("eye_colour", UNKNOWN, "unknown", "blue"),
        ("facial_hair", DISAGREES, "none", "moustache and beard"),
    ]
    lrs = {f.field: f.lr for f in result}
    assert lrs["sex"] == pytest.approx(0.97 / 0.5)  # (1 - e) / p
    assert lrs["age"] == pytest.approx(0.7 / 0.3)
    assert lrs["height"] == pytest.approx(0.7 / 0.35)
    assert lrs["build"] == pytest.approx(0.25 / 0.6)  # e / (1 - p)
    assert lrs["facial_hair"] == pytest.approx(0.4 / 0.6)
    assert lrs["hair_colour"] == lrs["hair_length"] == lrs["eye_colour"] == 1.0


@pytest.mark.parametrize("name", ["sex", "build", "hair_colour", "hair_length", "eye_colour", "facial_hair"])
def test_the_lr_of_a_categorical_descriptor_follows_the_module_formula(name: str) -> None:
    p, e = FIELD_MODEL[name]
    values = {"sex": ("female", "male"), "build": ("slight", "heavy"), "hair_colour": ("red", "grey")}
    values |= {"hair_length": ("bald", "long"), "eye_colour": ("green", "brown"), "facial_hair": ("none", "beard")}
    a, b = values[name]
    same = _field(compare_descriptors(_one(name, a), None, _one(name, a), FOUND), name)
    other = _field(compare_descriptors(_one(name, a), None, _one(name, b), FOUND), name)
    missing = _field(compare_descriptors(_one(name, a), None, Descriptors(), FOUND), name)
    assert (same.verdict, same.lr) == (AGREES, pytest.approx((1 - e) / p))
    assert (other.verdict, other.lr) == (DISAGREES, pytest.approx(e / (1 - p)))
    assert (missing.verdict, missing.lr) == (UNKNOWN, 1.0)
    assert same.lr > 1 > other.lr


def test_age_and_height_agree_when_they_overlap_and_are_unknown_without_a_value() -> None:
    case = Descriptors(age_min=41, age_max=45, height_min=171, height_max=180)
    tall = Descriptors(height_min=181, height_max=181)
    # Born 1980-06-15: 40 on FOUND, one year under the estimate (no tolerance here: a disagreement).
    assert _field(compare_descriptors(tall, "1980-06-15", case, FOUND), "age").verdict == DISAGREES
    assert _field(compare_descriptors(tall, "1980-06-15", case, FOUND), "height").verdict == DISAGREES
    # Born in 1980: 39 or 40 on FOUND ... or 40 to 41 a year later.
    assert _field(compare_descriptors(tall, "1980", case, date(2021, 6, 15)), "age").verdict == AGREES
    assert _field(compare_descriptors(tall, "1980", case, date(2021, 6, 15)), "age").report_value == "40-41 years"
    assert _field(compare_descriptors(tall, "1980-06-15", case, None), "age").verdict == UNKNOWN
    assert _field(compare_descriptors(tall, None, case, FOUND), "age").verdict == UNKNOWN
    assert _field(compare_descriptors(Descriptors(), None, case, FOUND), "height").verdict == UNKNOWN
    age = _field(compare_descriptors(tall, "1980-06-15", Descriptors(), FOUND), "age")
    assert (age.verdict, age.report_value, age.case_value, age.lr) == (UNKNOWN, "40 years", "unknown", 1.0)


# -- agreement: marks ------------------------------------------------------------------------------
def test_a_corresponding_mark_needs_the_same_type_and_region_and_is_worth_its_rarity() -> None:
    report = [Mark("tattoo", "forearm", "left", id=1)]
    assert [(p.case_mark.id, p.lr) for p in corresponding_marks(report, [Mark("tattoo", "forearm", id=7)])] == [
        (7, pytest.approx(1 / MARK_RARITY["tattoo"]))
    ]
    assert corresponding_marks(report, [Mark("scar", "forearm"), Mark("tattoo", "wrist")]) == []
    amputation = corresponding_marks([Mark("amputation", "finger")], [Mark("amputation", "finger")])
    assert [p.lr for p in amputation] == [pytest.approx(100.0)]


@pytest.mark.parametrize(
    ("side_a", "side_b", "corresponds"),
    [
        ("left", "left", True),
        ("left", "right", False),
        ("right", "left", False),
        ("left", "centre", False),
        ("left", "both", True),
        ("both", "right", True),
        (None, "right", True),
        ("left", None, True),
        (None, None, True),
    ],
)
def test_sides_correspond_unless_they_contradict(side_a: str | None, side_b: str | None, corresponds: bool) -> None:
    pairs = corresponding_marks([Mark("scar", "knee", side_a)], [Mark("scar", "knee", side_b)])
    assert len(pairs) == (1 if corresponds else 0)


@pytest.mark.parametrize(
    ("report", "case", "words"),
    [
        (Mark("tattoo", "forearm", keywords=("якорь",)), Mark("tattoo", "forearm", keywords=("yakor",)), ("якорь",)),
        (Mark("tattoo", "forearm", keywords=("yakor",)), Mark("tattoo", "forearm", keywords=("ЯКОРЬ",)), ("yakor",)),
        (Mark("tattoo", "chest", description="напис МАМА"), Mark("tattoo", "chest", keywords=("mama",)), ("МАМА",)),
        (
            Mark("tattoo", "chest", keywords=("anchor",)),
            Mark("tattoo", "chest", description="two anchors"),
            ("anchor",),
        ),
    ],
)
def test_a_word_shared_across_scripts_multiplies_the_lr(report: Mark, case: Mark, words: tuple[str, ...]) -> None:
    assert shared_words(report, case) == words
    (pair,) = corresponding_marks([report], [case])
    assert pair.words == words
    assert pair.lr == pytest.approx(KEYWORD_LR / MARK_RARITY["tattoo"])
    assert pair.lr == pytest.approx(200.0)


def test_marks_without_a_shared_word_are_worth_their_rarity_only() -> None:
    report = Mark("tattoo", "forearm", keywords=("anchor",))
    case = Mark("tattoo", "forearm", keywords=("rose", "якір"))
    assert shared_words(report, case) == ()
    (pair,) = corresponding_marks([report], [case])
    assert (pair.words, pair.lr) == ((), pytest.approx(20.0))


def test_each_case_mark_is_used_once_and_the_best_one_is_taken() -> None:
    report = [Mark("tattoo", "forearm", keywords=("anchor",), id=1), Mark("tattoo", "forearm", id=2)]
    case = [
        Mark("tattoo", "forearm", keywords=("heart",), id=10),
        Mark("tattoo", "forearm", keywords=("anchor",), id=11),
    ]
    pairs = corresponding_marks(report, case)
    assert [(p.report_mark.id, p.case_mark.id, p.lr) for p in pairs] == [(1, 11, 200.0), (2, 10, 20.0)]
    only = corresponding_marks(report, case[:1])
    assert [(p.report_mark.id, p.case_mark.id) for p in only] == [(1, 10)]
    assert corresponding_marks([], case) == corresponding_marks(report, []) == []


def test_the_corresponding_marks_do_not_depend_on_the_order_of_the_report_marks() -> None:
    plain = Mark("tattoo", "forearm", id=1)
    anchor = Mark("tattoo", "forearm", keywords=("anchor",), id=2)
    case = [Mark("tattoo", "forearm", keywords=("anchor",), id=11), Mark("tattoo", "forearm", id=12)]

    def total(report: list[Mark]) -> float:
        return math.prod(p.lr for p in corresponding_marks(report, case))

    assert total([anchor, plain]) == pytest.approx(4000.0)
    assert total([plain, anchor]) == pytest.approx(4000.0)


def test_a_common_word_in_two_descriptions_is_not_a_shared_keyword() -> None:
    report = Mark("tattoo", "forearm", description="a tattoo of a rose with the name Olha")
    case = Mark("tattoo", "forearm", description="faded tattoo, the lines blurred")
    assert shared_words(report, case) == ()
    (pair,) = corresponding_marks([report], [case])
    assert pair.lr == pytest.approx(20.0)


# -- agreement: combined LR, adjusted FMR, summary -------------------------------------------------
def test_agreement_combines_descriptors_and_marks_in_log10() -> None:
    report = Descriptors(sex="male", height_min=180, height_max=180)
    case = Descriptors(sex="male", height_min=190, height_max=195)
    result = agreement(report, None, [Mark("tattoo", "hand")], case, FOUND, [Mark("tattoo", "hand")])
    expected = math.log10(0.97 / 0.5) + math.log10(0.3 / 0.65) + math.log10(20)
    assert result.log10_lr == pytest.approx(expected)
    assert (result.count(AGREES), result.count(DISAGREES), result.count(UNKNOWN)) == (1, 1, 6)
    assert len(result.marks) == 1


def test_the_combined_lr_is_capped_both_ways() -> None:
    marks = [Mark("amputation", region) for region in ("finger", "toe", "hand")]  # 100 each: 10**6
    strong = agreement(Descriptors(), None, marks, Descriptors(), FOUND, marks)
    assert sum(math.log10(m.lr) for m in strong.marks) == pytest.approx(6.0)
    assert strong.log10_lr == MAX_LOG10_LR == 4.0
    report = Descriptors(
        sex="female",
        height_min=150,
        height_max=150,
        build="slight",
        hair_colour="red",
        hair_length="bald",
        eye_colour="green",
        facial_hair="none",
    )
    case = Descriptors(
        sex="male",
        age_min=70,
        age_max=80,
        height_min=190,
        height_max=195,
        build="heavy",
        hair_colour="grey",
        hair_length="long",
        eye_colour="brown",
        facial_hair="beard",
    )
    weak = agreement(report, "1990", [], case, FOUND, [])
    assert weak.count(DISAGREES) == 8
    total = sum(math.log10(f.lr) for f in weak.fields)
    assert weak.log10_lr == pytest.approx(max(total, -MAX_LOG10_LR)) and weak.log10_lr >= -MAX_LOG10_LR
    assert Agreement(weak.fields + weak.fields, ()).log10_lr == -MAX_LOG10_LR  # twice as much: capped


def test_adjusted_fmr_divides_the_face_fmr_by_the_secondary_lr_within_zero_and_one() -> None:
    nothing = _agreement_of([])
    hundred = Agreement((), (MarkPair(Mark("amputation", "toe"), Mark("amputation", "toe"), (), 100.0),))
    tenth = Agreement((FieldAgreement("sex", DISAGREES, "female", "male", 0.1),), ())
    capped = Agreement((), tuple(MarkPair(Mark("tattoo", "hand"), Mark("tattoo", "hand"), (), 1e3) for _ in range(3)))
    assert adjusted_fmr(None, nothing) == 1.0  # no face, no secondary evidence
    assert adjusted_fmr(None, hundred) == pytest.approx(0.01)
    assert adjusted_fmr(None, capped) == pytest.approx(1e-4)
    assert adjusted_fmr(None, tenth) == 1.0  # clipped: never above 1
    assert adjusted_fmr(1e-3, nothing) == pytest.approx(1e-3)
    assert adjusted_fmr(1e-3, hundred) == pytest.approx(1e-5)
    assert adjusted_fmr(1e-3, tenth) == pytest.approx(1e-2)
    assert adjusted_fmr(0.5, tenth) == 1.0
    assert adjusted_fmr(0.0, hundred) == 1e-300  # clipped: never 0
    assert adjusted_fmr(1e-300, capped) == 1e-300


@pytest.mark.parametrize(
    ("fields", "marks", "text"),
    [
        ([AGREES] * 3 + [DISAGREES] + [UNKNOWN] * 4, 1, "agree: 3, disagree: 1, unknown: 4; 1 corresponding mark"),
        ([AGREES] * 2 + [DISAGREES] * 2 + [UNKNOWN] * 4, 0, "agree: 2, disagree: 2, unknown: 4"),
        ([UNKNOWN] * 8, 2, "agree: 0, disagree: 0, unknown: 8; 2 corresponding marks"),
    ],
)
def test_agreement_summary_wording(fields: list[str], marks: int, text: str) -> None:
    result = _agreement_of(list(zip(FIELD_MODEL, fields, strict=True)), marks)
    assert result.summary() == text
    assert result.to_dict()["summary"] == text


def test_agreement_to_dict_keys_and_values() -> None:
    report_mark = Mark("tattoo", "forearm", "left", "outer", keywords=("якорь",), id=3)
    case_mark = Mark("tattoo", "forearm", None, None, description="faded yakor", id=9)
    result = agreement(
        Descriptors(sex="female", hair_colour="brown"),
        "1980",
        [report_mark],
        Descriptors(sex="male"),
        FOUND,
        [case_mark],
    )
    data = result.to_dict()
    assert list(data) == ["fields", "marks", "agrees", "disagrees", "unknown", "log10_lr", "summary"]
    assert (data["agrees"], data["disagrees"], data["unknown"]) == (0, 1, 7)
    assert data["summary"] == "agree: 0, disagree: 1, unknown: 7; 1 corresponding mark"
    assert data["log10_lr"] == round(math.log10(0.03 / 0.5) + math.log10(200.0), 3)
    fields = data["fields"]
    assert isinstance(fields, list)
    assert fields[0] == {
        "field": "sex",
        "label": "Sex",
        "screened": False,
        "verdict": DISAGREES,
        "report": "female",
        "case": "male",
        "lr": 0.06,
    }
    assert [f["label"] for f in fields] == [
        "Sex",
        "Age",
        "Height",
        "Build",
        "Hair colour",
        "Hair length",
        "Eye colour",
        "Facial hair",
    ]
    assert data["marks"] == [
        {
            "report_mark_id": 3,
            "case_mark_id": 9,
            "type": "tattoo",
            "region": "forearm",
            "report": "tattoo, left forearm (outer): якорь",
            "case": "tattoo, forearm: faded yakor",
            "shared_words": ["якорь"],
            "lr": 200.0,
        }
    ]


def test_a_field_an_exclusion_rule_screened_weighs_nothing_when_it_agrees() -> None:
    report = Descriptors(sex="female", height_min=160, height_max=160, eye_colour="blue")
    case = Descriptors(sex="female", height_min=150, height_max=158, eye_colour="blue")
    plain = agreement(report, None, [], case, FOUND, [])
    screened = agreement(report, None, [], case, FOUND, [], ExclusionRules().fields())
    by_field = {f.field: f for f in screened.fields}
    assert by_field["sex"].verdict == AGREES and by_field["sex"].lr == 1.0 and by_field["sex"].screened
    assert by_field["height"].verdict == DISAGREES and not by_field["height"].screened  # a disagreement still counts
    assert by_field["eye_colour"].lr == pytest.approx(0.85 / 0.35) and not by_field["eye_colour"].screened
    assert screened.log10_lr == pytest.approx(plain.log10_lr - math.log10(0.97 / 0.5))
    assert ExclusionRules().fields() == {"sex", "age", "height"}
    assert rules_from("age", 5, 5).fields() == {"age"} and rules_from("none", 5, 5).fields() == frozenset()
