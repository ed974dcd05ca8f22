"""Reconciliation beyond the face from the shell (``facetrace report|case describe|mark-add|facts``,
``search marks``, ``lead agreement|reopen``, ``identification confirm-exception``), driven in-process
through the CLI's entry point (the one that turns errors into one line), on SQLite, without faces."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from facetrace.cli.main import run
from facetrace.config import get_settings
from facetrace.store.accounts import User
from facetrace.store.db import Database

PROVENANCE = ("--reported-by", "her mother", "--source", "hotline", "--legal-basis", "consent of the family")


@dataclass
class Outcome:
    code: int
    out: str
    err: str


Invoke = Callable[..., Outcome]


@pytest.fixture()
def invoke(tmp_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``facetrace ARGS`` in this process through :func:`facetrace.cli.main.run`; return the exit
    code and what it printed."""
    db = Database(get_settings().db_url)
    with db.session() as session:
        for name, roles in {
            "ivan": ["intake"],
            "olena": ["examiner"],
            "petro": ["reviewer"],
            "maria": ["reviewer"],
            "root": ["admin"],
        }.items():
            session.add(User(username=name, display_name=name, password_hash="!", roles=roles, disabled=False))
    db.dispose()
    monkeypatch.setenv("FACETRACE_WORKERS", "1")
    monkeypatch.setenv("COLUMNS", "200")

    def call(*args: str | Path) -> Outcome:
        monkeypatch.setattr(sys, "argv", ["facetrace", *map(str, args)])
        capsys.readouterr()
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return call


@pytest.fixture()
def cli(invoke: Invoke) -> Callable[..., Any]:
    """Run ``facetrace ARGS --json``; return the parsed output (asserting success)."""

    def call(*args: str | Path) -> Any:
        result = invoke(*args, "--json")
        assert result.code == 0, result.err
        return json.loads(result.out)

    return call


def test_describe_and_the_other_facts_round_trip(cli: Callable[..., Any], invoke: Invoke) -> None:
    ref = cli("report", "add", "--as", "ivan", "--name", "Kelly Clarkson", "--dob", "1982-04-24", *PROVENANCE)[
        "report"
    ]["reference"]
    described = cli(
        "report", "describe", ref, "--as", "ivan", "--sex", "female", "--height", "165", "--build", "slight",
        "--hair-colour", "blond", "--hair-length", "long", "--eye-colour", "blue", "--facial-hair", "none",
    )  # fmt: skip
    expected = {
        "sex": "female",
        "age_min": None,
        "age_max": None,
        "height_min": 165,
        "height_max": 165,
        "build": "slight",
        "hair_colour": "blond",
        "hair_length": "long",
        "eye_colour": "blue",
        "facial_hair": "none",
    }
    assert described["descriptors"] == expected and "matching" in described
    # describe replaces: what is left out becomes unknown
    assert cli("report", "describe", ref, "--as", "ivan", "--sex", "female")["descriptors"]["build"] is None
    cli("report", "describe", ref, "--as", "ivan", *[a for k, v in expected.items() if v for a in _opt(k, v)])
    effect = cli(
        "report", "effect-add", ref, "--as", "ivan", "--kind", "jewellery", "--colour", "gold",
        "--inscription", "K & J", "--description", "wedding ring",
    )  # fmt: skip
    dna = cli(
        "report", "reference-add", ref, "--as", "ivan", "--kind", "dna", "--status", "requested",
        "--holder", "Kyiv lab", "--sample-reference", "S-1", "--note", "mother's sample",
    )  # fmt: skip
    assert cli("reference", "status", str(dna["id"]), "collected", "--as", "olena")["status"] == "collected"
    mark = cli(
        "report", "mark-add", ref, "--as", "ivan", "--type", "scar", "--region", "upper_arm", "--side", "right",
        "--aspect", "outer", "--description", "appendix-like", "--keywords", "long, thin",
    )["mark"]  # fmt: skip
    assert mark["location"] == "right upper arm (outer)" and mark["keywords"] == ["long", "thin"]

    facts = cli("report", "facts", ref, "--as", "olena")
    assert facts["descriptors"] == {**expected, "height_min": 165, "height_max": 165}
    assert [(e["id"], e["kind"], e["inscription"]) for e in facts["effects"]] == [(effect["id"], "jewellery", "K & J")]
    assert [(r["kind"], r["status"], r["holder"]) for r in facts["primary_references"]] == [
        ("dna", "collected", "Kyiv lab")
    ]
    assert [m["id"] for m in facts["marks"]] == [mark["id"]] and facts["rejected_leads"] == []
    shown = invoke("report", "facts", ref, "--as", "olena")
    assert shown.code == 0 and "descriptors: sex=female" in shown.out and "K & J" in shown.out, shown.out
    assert cli("mark", "remove", str(mark["id"]), "--as", "ivan", "--reason", "wrong report") == {"removed": mark["id"]}
    assert cli("report", "facts", ref, "--as", "olena")["marks"] == []

    case = cli("case", "add", "--as", "ivan", "--kind", "body_part")["case"]["reference"]
    body = cli("case", "add", "--as", "ivan", "--condition", "deceased")["case"]["reference"]
    kind = cli("case", "kind", case, "body_part", "--parent-case", body, "--as", "olena")
    assert kind == {"kind": "body_part", "condition": "deceased", "parent_case": body}
    cli("case", "describe", case, "--as", "olena", "--sex", "female", "--age-min", "25", "--age-max", "35")
    case_facts = cli("case", "facts", case, "--as", "olena")
    assert case_facts["kind"] == "body_part" and case_facts["parent_case"] == body
    assert (case_facts["descriptors"]["age_min"], case_facts["descriptors"]["age_max"]) == (25, 35)
    (exclusion,) = case_facts["exclusions"]  # the report's date of birth makes her too old
    assert exclusion["report"] == ref and exclusion["reasons"][0].startswith("age: born 1982-04-24")
    shown = invoke("case", "facts", case, "--as", "olena")
    assert shown.code == 0 and f"excludes report {ref}: age: born 1982-04-24" in shown.out, shown.out


def _opt(key: str, value: object) -> list[str]:
    if key == "height_min":
        return ["--height", str(value)]
    if key == "height_max":
        return []
    return ["--" + key.replace("_", "-"), str(value)]


def test_a_faceless_case_finds_its_report_by_a_mark_then_reopen_and_confirm_by_exception(
    cli: Callable[..., Any], invoke: Invoke
) -> None:
    ref = cli("report", "add", "--as", "ivan", "--name", "Kelly Clarkson", *PROVENANCE)["report"]["reference"]
    cli(
        "report", "mark-add", ref, "--as", "ivan", "--type", "tattoo", "--region", "forearm", "--side", "left",
        "--aspect", "outer", "--keywords", "якорь, МАМА",
    )  # fmt: skip
    other = cli("report", "add", "--as", "ivan", "--name", "Someone Else", *PROVENANCE)["report"]["reference"]
    cli("report", "mark-add", other, "--as", "ivan", "--type", "scar", "--region", "cheek")
    case = cli("case", "add", "--as", "ivan", "--kind", "deceased")["case"]["reference"]
    added = cli(
        "case", "mark-add", case, "--as", "olena", "--type", "tattoo", "--region", "forearm", "--side", "left",
        "--description", "anchor and the letters MAMA",
    )  # fmt: skip
    (lead_id,) = added["matching"]["leads"]["created"]
    lead = cli("lead", "show", str(lead_id), "--as", "olena")
    assert lead["report"]["reference"] == ref and lead["basis"] == "marks"

    found = cli(
        "search", "marks", "--as", "olena", "--target", "reports", "--mark-type", "tattoo",
        "--mark-region", "forearm", "--mark-side", "left", "--keywords", "mama",
    )  # fmt: skip
    assert [r["reference"] for r in found["results"]][0] == ref
    table = invoke("search", "marks", "--as", "olena", "--target", "reports", "--mark-type", "tattoo",
                   "--mark-region", "forearm", "--keywords", "mama")  # fmt: skip
    assert table.code == 0 and ref in table.out and "result(s)" in table.out, table.out
    agreement = cli("lead", "agreement", str(lead_id), "--as", "olena")
    assert agreement["marks"][0]["shared_words"] == ["МАМА"]
    assert invoke("lead", "agreement", str(lead_id), "--as", "olena").code == 0

    # rejected twice, then reopened by a reviewer only
    cli("lead", "review", str(lead_id), "--as", "olena", "--decision", "reject", "--rationale", "Other anchor")
    cli("lead", "review", str(lead_id), "--as", "petro", "--decision", "reject", "--rationale", "Agree")
    (rejected,) = cli("case", "facts", case, "--as", "olena")["rejected_leads"]
    assert rejected["lead_id"] == lead_id
    refused = invoke("lead", "reopen", str(lead_id), "--as", "olena", "--rationale", "New photo")
    assert refused.code != 0 and "needs the role" in refused.err
    reopened = cli("lead", "reopen", str(lead_id), "--as", "petro", "--rationale", "A clearer photo of the tattoo")
    assert reopened["status"] == "open" and reopened["reopen_rationale"] == "A clearer photo of the tattoo"

    # confirmed by two, without a primary identifier: preliminary, notifications held
    cli("lead", "evidence", str(lead_id), "--as", "olena", "--kind", "witness", "--description", "Neighbour")
    cli("lead", "review", str(lead_id), "--as", "olena", "--decision", "confirm", "--rationale", "Same tattoo")
    second = invoke("lead", "review", str(lead_id), "--as", "petro", "--decision", "confirm", "--rationale", "Agree")
    assert second.code == 0, second.err
    assert "(preliminary)" in second.out and "notifications held: the identification is preliminary" in second.out
    (ident,) = cli("identification", "list", "--as", "olena")
    assert ident["level"] == "preliminary"
    listed = invoke("identification", "list", "--as", "olena")
    assert "preliminary" in listed.out

    refused = invoke("identification", "confirm-exception", str(ident["id"]), "--as", "petro", "--rationale", "x")
    assert refused.code != 0 and "needs the role" in refused.err
    assert "Traceback" not in refused.err and len(refused.err.strip().splitlines()) == 1
    done = cli(
        "identification", "confirm-exception", str(ident["id"]), "--as", "root", "--rationale", "No relative for DNA"
    )
    assert done["identification"]["level"] == "confirmed"
    shown = invoke("identification", "show", str(ident["id"]), "--as", "olena")
    assert ", confirmed; confirmed by olena and petro" in shown.out, shown.out
    assert "No relative for DNA" in shown.out


def test_case_match_widens_past_an_exclusion_for_an_examiner_only(cli: Callable[..., Any], invoke: Invoke) -> None:
    case = cli("case", "add", "--as", "ivan", "--condition", "deceased")["case"]["reference"]
    widened = cli("case", "match", case, "--widen", "--as", "olena")
    assert widened["widened"] is True
    refused = invoke("case", "match", case, "--widen", "--as", "ivan")
    assert refused.code != 0 and "role" in refused.err
    assert cli("case", "match", case, "--as", "ivan")["widened"] is False


def test_bad_input_is_one_line_naming_the_field(invoke: Invoke, cli: Callable[..., Any], tmp_path: Path) -> None:
    ref = cli("report", "add", "--as", "ivan", "--name", "Kelly Clarkson", *PROVENANCE)["report"]["reference"]
    case = cli("case", "add", "--as", "ivan", "--condition", "deceased")["case"]["reference"]
    dna = cli("report", "reference-add", ref, "--as", "ivan", "--kind", "dna", "--status", "requested")
    for args, message in [
        (("report", "describe", ref, "--sex", "unknown"), "sex: 'unknown' is not one of: female, male"),
        (("report", "describe", ref, "--hair-colour", "purple"), "hair_colour: 'purple' is not one of"),
        (("report", "describe", ref, "--height", "900"), "900 is impossible (between 40 and 250)"),
        (("report", "describe", ref, "--height", "tall"), "'--height'"),
        (("case", "describe", case, "--age-min", "40", "--age-max", "30"), "age_min, age_max: the range is upside"),
        (("case", "describe", case, "--height-min", "30"), "height_min: 30 is impossible"),
        (("report", "add", "--name", "X", *PROVENANCE, "--dob", "2999-01-01"), "is in the future"),
        (("report", "update", ref, "--dob", "2999"), "date of birth '2999' is in the future"),
        (("case", "add", "--kind", "asleep"), "kind must be one of"),
        (("case", "kind", case, "alien"), "case kind"),
        (("case", "mark-add", case, "--type", "tattoo", "--region", "tail"), "mark region: 'tail' is not one of"),
        (("case", "mark-add", case, "--type", "tatoo", "--region", "arm"), "mark type: 'tatoo' is not one of"),
        (("case", "mark-add", case, "--type", "scar", "--region", "chin", "--side", "up"), "mark side"),
        (
            ("case", "mark-add", case, "--type", "scar", "--region", "chin", "--photo", tmp_path / "gone.jpg"),
            "gone.jpg",
        ),
        (("report", "effect-add", ref, "--kind", "hat"), "effect kind"),
        (("report", "reference-add", ref, "--kind", "dna", "--status", "compared"), "dna status"),
        (("report", "reference-add", ref, "--kind", "blood", "--status", "requested"), "primary reference kind"),
        (("reference", "status", str(dna["id"]), "available"), "dna status"),
        (("search", "marks", "--target", "reports"), "search: give at least one descriptor or one mark"),
        (("search", "marks", "--target", "everything", "--sex", "female"), "target"),
        (("search", "marks", "--target", "cases", "--dob", "2999-01-01", "--sex", "female"), "in the future"),
        (("search", "marks", "--target", "cases", "--age-min", "20"), "age follows from its date of birth"),
        (("lead", "reopen", "999", "--rationale", "x", "--as", "petro"), "999"),
        (("search", tmp_path / "gone.jpg"), "gone.jpg"),  # search IMAGE still searches by face
    ]:
        full = args if "--as" in args or args[:2] == ("search", tmp_path / "gone.jpg") else (*args, "--as", "olena")
        result = invoke(*full)
        assert result.code != 0, args
        assert message in result.err, (args, result.err)
        assert result.err.startswith("error: "), (args, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, (args, result.err)
        assert result.out == "", (args, result.out)
