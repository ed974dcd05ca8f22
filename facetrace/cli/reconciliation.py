"""Reconciliation beyond the face from the shell: descriptors, marks, effects and primary identifier
references of reports and cases (``facetrace report|case describe|mark-add|effect-add|reference-add|facts``),
a case's kind, ``facetrace mark|reference``, search without a face (``facetrace search marks``), a
lead's agreement and reopening, and an admin's confirmation by exception.

Every command acts as ``--as USERNAME`` and takes ``--json``; bad codes and impossible values are
one line naming the field (the workflow checks them), with a non-zero exit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from facetrace.cli.output import console, emit_json
from facetrace.cli.workflow import (
    AsOpt,
    JsonOpt,
    _matching_line,
    _photos,
    _print,
    _session,
    case_app,
    identification_app,
    lead_app,
    report_app,
)
from facetrace.workflow.common import check_date_of_birth
from facetrace.workflow.reconcile.vocabulary import (
    ASPECTS,
    BODY_REGIONS,
    BUILDS,
    CASE_KINDS,
    EFFECT_KINDS,
    EYE_COLOURS,
    FACIAL_HAIR,
    HAIR_COLOURS,
    HAIR_LENGTHS,
    MARK_TYPES,
    PRIMARY_KINDS,
    REFERENCE_STATUSES,
    SEXES,
    SIDES,
)

mark_app = typer.Typer(help="Distinguishing marks recorded on reports and cases.", no_args_is_help=True)
reference_app = typer.Typer(
    help="Primary identifier references (where DNA, dental records or fingerprints are held).", no_args_is_help=True
)


def _codes(codes: tuple[str, ...] | list[str]) -> str:
    return ", ".join(codes)


STATUSES_HELP = "; ".join(f"{kind}: {_codes(statuses)}" for kind, statuses in REFERENCE_STATUSES.items())

# -- options ----------------------------------------------------------------------------------------
SexOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(SEXES)}.")]
HeightOpt = Annotated[int | None, typer.Option(help="Height in cm (one value; 40-250).")]
HeightMinOpt = Annotated[int | None, typer.Option(help="Lowest height in cm (40-250).")]
HeightMaxOpt = Annotated[int | None, typer.Option(help="Highest height in cm (40-250).")]
AgeMinOpt = Annotated[int | None, typer.Option(help="Lowest estimated age in years (0-120).")]
AgeMaxOpt = Annotated[int | None, typer.Option(help="Highest estimated age in years (0-120).")]
BuildOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(BUILDS)}.")]
HairColourOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(HAIR_COLOURS)}.")]
HairLengthOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(HAIR_LENGTHS)}.")]
EyeColourOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(EYE_COLOURS)}.")]
FacialHairOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(FACIAL_HAIR)}.")]

MarkTypeOpt = Annotated[str, typer.Option("--type", help=f"One of: {_codes(MARK_TYPES)}.")]
RegionOpt = Annotated[str, typer.Option(help=f"Body region, one of: {_codes(BODY_REGIONS)}.")]
SideOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(SIDES)}.")]
AspectOpt = Annotated[str | None, typer.Option(help=f"One of: {_codes(ASPECTS)}.")]
KeywordsOpt = Annotated[str | None, typer.Option(help='Comma-separated words, e.g. "anchor, mama" (at most 20).')]
MarkPhotosOpt = Annotated[list[Path] | None, typer.Option("--photo", help="A photo of the mark; repeat for several.")]


def _known(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _descriptors_line(d: dict[str, Any]) -> str:
    known = [f"{key}={value}" for key, value in d.items() if value is not None]
    return ", ".join(known) or "all unknown"


# -- describe ----------------------------------------------------------------------------------------
def _describe(kind: str, reference: str, user: str, json_out: bool, descriptors: dict[str, Any]) -> None:
    with _session(user) as (wf, actor):
        result = wf.reconciliation.set_descriptors(actor, kind, reference, descriptors)
    _print(
        result,
        json_out,
        f"{kind} {reference}: {_descriptors_line(result['descriptors'])}{_matching_line(result['matching'])}",
    )


@report_app.command("describe")
def report_describe(
    reference: str,
    user: AsOpt = "",
    sex: SexOpt = None,
    height: HeightOpt = None,
    height_min: HeightMinOpt = None,
    height_max: HeightMaxOpt = None,
    build: BuildOpt = None,
    hair_colour: HairColourOpt = None,
    hair_length: HairLengthOpt = None,
    eye_colour: EyeColourOpt = None,
    facial_hair: FacialHairOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a report's descriptors, then match it again. REPLACES them all: a descriptor left out
    becomes unknown. The age follows from the report's date of birth (report update --dob)."""
    _describe(
        "report",
        reference,
        user,
        json_out,
        _known(
            sex=sex,
            height=height,
            height_min=height_min,
            height_max=height_max,
            build=build,
            hair_colour=hair_colour,
            hair_length=hair_length,
            eye_colour=eye_colour,
            facial_hair=facial_hair,
        ),
    )


@case_app.command("describe")
def case_describe(
    reference: str,
    user: AsOpt = "",
    sex: SexOpt = None,
    age_min: AgeMinOpt = None,
    age_max: AgeMaxOpt = None,
    height_min: HeightMinOpt = None,
    height_max: HeightMaxOpt = None,
    build: BuildOpt = None,
    hair_colour: HairColourOpt = None,
    hair_length: HairLengthOpt = None,
    eye_colour: EyeColourOpt = None,
    facial_hair: FacialHairOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a case's descriptors (estimated age range, height range...), then search it again.
    REPLACES them all: a descriptor left out becomes unknown."""
    _describe(
        "case",
        reference,
        user,
        json_out,
        _known(
            sex=sex,
            age_min=age_min,
            age_max=age_max,
            height_min=height_min,
            height_max=height_max,
            build=build,
            hair_colour=hair_colour,
            hair_length=hair_length,
            eye_colour=eye_colour,
            facial_hair=facial_hair,
        ),
    )


@case_app.command("kind")
def case_kind(
    reference: str,
    kind: Annotated[str, typer.Argument(help=f"One of: {_codes(CASE_KINDS)}.")],
    user: AsOpt = "",
    parent_case: Annotated[str | None, typer.Option(help="A body part: the case of the body it belongs to.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a case's kind; the condition follows (deceased and body_part: deceased; living and
    detained: alive)."""
    with _session(user) as (wf, actor):
        result = wf.reconciliation.set_case_kind(actor, reference, kind, parent_case=parent_case)
    parent = f", part of case {result['parent_case']}" if result["parent_case"] else ""
    _print(result, json_out, f"case {reference}: {result['kind']} ({result['condition']}){parent}")


# -- marks, effects, primary references ----------------------------------------------------------------
def _mark_add_command(kind: str) -> Callable[..., None]:
    def mark_add(
        reference: str,
        user: AsOpt = "",
        mark_type: MarkTypeOpt = "",
        region: RegionOpt = "",
        side: SideOpt = None,
        aspect: AspectOpt = None,
        description: Annotated[str | None, typer.Option(help="What it looks like.")] = None,
        keywords: KeywordsOpt = None,
        photo: MarkPhotosOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        photos = _photos(photo)
        mark = _known(
            type=mark_type, region=region, side=side, aspect=aspect, description=description, keywords=keywords
        )
        with _session(user) as (wf, actor):
            result = wf.reconciliation.add_mark(actor, kind, reference, mark, photos=photos)
        m = result["mark"]
        _print(
            result,
            json_out,
            f"mark {m['id']} recorded on {kind} {reference}: {m['summary']} "
            f"({len(m['photo_image_ids'])} photo(s)){_matching_line(result['matching'])}",
        )

    mark_add.__doc__ = (
        f"Record a distinguishing mark on a {kind} (type, coded body location, description, keywords, "
        f"photos), then {'match it' if kind == 'report' else 'search it'} again."
    )
    return mark_add


def _effect_add_command(kind: str) -> Callable[..., None]:
    def effect_add(
        reference: str,
        user: AsOpt = "",
        effect_kind: Annotated[str, typer.Option("--kind", help=f"One of: {_codes(EFFECT_KINDS)}.")] = "",
        colour: Annotated[str | None, typer.Option()] = None,
        inscription: Annotated[str | None, typer.Option(help="Text written or engraved on it.")] = None,
        description: Annotated[str | None, typer.Option()] = None,
        json_out: JsonOpt = False,
    ) -> None:
        item = _known(kind=effect_kind, colour=colour, inscription=inscription, description=description)
        with _session(user) as (wf, actor):
            result = wf.reconciliation.add_effect(actor, kind, reference, item)
        _print(result, json_out, f"effect {result['id']} ({result['kind']}) recorded on {kind} {reference}")

    effect_add.__doc__ = f"Record a piece of clothing or a personal effect on a {kind}."
    return effect_add


def _reference_add_command(kind: str) -> Callable[..., None]:
    def reference_add(
        reference: str,
        user: AsOpt = "",
        ref_kind: Annotated[str, typer.Option("--kind", help=f"One of: {_codes(PRIMARY_KINDS)}.")] = "",
        status: Annotated[str, typer.Option(help=f"By kind: {STATUSES_HELP}.")] = "",
        holder: Annotated[str | None, typer.Option(help="Who holds it (a lab, a dentist...).")] = None,
        sample_reference: Annotated[str | None, typer.Option(help="The holder's reference.")] = None,
        note: Annotated[str | None, typer.Option()] = None,
        json_out: JsonOpt = False,
    ) -> None:
        item = _known(kind=ref_kind, status=status, holder=holder, sample_reference=sample_reference, note=note)
        with _session(user) as (wf, actor):
            result = wf.reconciliation.add_primary_reference(actor, kind, reference, item)
        _print(
            result,
            json_out,
            f"primary reference {result['id']} ({result['kind']}, {result['status']}) recorded on {kind} {reference}",
        )

    reference_add.__doc__ = f"Record where a primary identifier of a {kind} is held (a reference only, never the data)."
    return reference_add


def _facts_command(kind: str) -> Callable[..., None]:
    def facts(reference: str, user: AsOpt = "", json_out: JsonOpt = False) -> None:
        with _session(user) as (wf, actor):
            result = wf.reconciliation.facts(actor, kind, reference)
        if json_out:
            emit_json(result)
            return
        _print_facts(kind, result)

    facts.__doc__ = (
        f"Show what a {kind} records beyond the face: descriptors, marks, effects, primary references"
        + (", its kind, the reports its facts exclude" if kind == "case" else "")
        + " and rejected leads."
    )
    return facts


def _line(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def _print_facts(kind: str, f: dict[str, Any]) -> None:
    head = f"{kind} {f['reference']}"
    if kind == "case":
        head += f": {f['kind']}" + (f", part of case {f['parent_case']}" if f.get("parent_case") else "")
    _line(head)
    _line(f"  descriptors: {_descriptors_line(f['descriptors'])}")
    if f["marks"]:
        table = Table("mark", "type", "location", "description", "keywords", "photos", title="marks")
        for m in f["marks"]:
            table.add_row(
                str(m["id"]),
                m["type"],
                m["location"],
                m["description"],
                ", ".join(m["keywords"]),
                str(len(m["photo_image_ids"])),
            )
        console.print(table)
    if f["effects"]:
        table = Table("effect", "kind", "colour", "inscription", "description", title="effects")
        for e in f["effects"]:
            table.add_row(str(e["id"]), e["kind"], e["colour"], e["inscription"], e["description"])
        console.print(table)
    if f["primary_references"]:
        table = Table("reference", "kind", "status", "holder", "sample", "note", title="primary references")
        for r in f["primary_references"]:
            table.add_row(str(r["id"]), r["kind"], r["status"], r["holder"], r["sample_reference"], r["note"])
        console.print(table)
    for ex in f.get("exclusions", []):
        _line(f"  excludes report {ex['report']}: {'; '.join(ex['reasons'])}")
    for lead in f["rejected_leads"]:
        why = "; ".join(f"{r['by']}: {r['rationale']}" for r in lead["rejections"])
        _line(f"  rejected lead {lead['lead_id']} ({lead['case']} - {lead['report']}): {why}")


for _kind in ("report", "case"):
    _app = report_app if _kind == "report" else case_app
    _app.command("mark-add")(_mark_add_command(_kind))
    _app.command("effect-add")(_effect_add_command(_kind))
    _app.command("reference-add")(_reference_add_command(_kind))
    _app.command("facts")(_facts_command(_kind))


@mark_app.command("remove")
def mark_remove(
    mark_id: int,
    user: AsOpt = "",
    reason: Annotated[str, typer.Option(help="Why (required), e.g. recorded on the wrong report.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Remove a mark recorded in error."""
    with _session(user) as (wf, actor):
        result = wf.reconciliation.remove_mark(actor, mark_id, reason=reason)
    _print(result, json_out, f"mark {mark_id} removed")


@mark_app.command("photo-add")
def mark_photo_add(mark_id: int, photos: list[Path], user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Add photos to a recorded mark."""
    data = _photos(photos)
    with _session(user) as (wf, actor):
        result = wf.reconciliation.add_mark_photos(actor, mark_id, data)
    _print(result, json_out, f"mark {mark_id}: {len(result['photo_image_ids'])} photo(s)")


@reference_app.command("status")
def reference_status(
    reference_id: int,
    status: Annotated[str, typer.Argument(help=f"By kind: {STATUSES_HELP}.")],
    user: AsOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Move a primary reference on (e.g. a DNA sample requested -> collected -> profiled -> matched)."""
    with _session(user) as (wf, actor):
        result = wf.reconciliation.set_primary_reference_status(actor, reference_id, status)
    _print(result, json_out, f"primary reference {reference_id} ({result['kind']}) is now {result['status']}")


# -- search without a face ----------------------------------------------------------------------------
def search_marks(
    user: AsOpt = "",
    target: Annotated[
        str, typer.Option(help="reports (the query describes an unidentified person) or cases (a missing one).")
    ] = "",
    sex: SexOpt = None,
    age_min: Annotated[int | None, typer.Option(help="--target reports: lowest estimated age (0-120).")] = None,
    age_max: Annotated[int | None, typer.Option(help="--target reports: highest estimated age (0-120).")] = None,
    date_of_birth: Annotated[
        str | None, typer.Option("--dob", help="--target cases: YYYY, YYYY-MM or YYYY-MM-DD.")
    ] = None,
    height: HeightOpt = None,
    height_min: HeightMinOpt = None,
    height_max: HeightMaxOpt = None,
    build: BuildOpt = None,
    hair_colour: HairColourOpt = None,
    hair_length: HairLengthOpt = None,
    eye_colour: EyeColourOpt = None,
    facial_hair: FacialHairOpt = None,
    mark_type: Annotated[str | None, typer.Option(help=f"A mark's type, one of: {_codes(MARK_TYPES)}.")] = None,
    mark_region: Annotated[
        str | None, typer.Option(help=f"The mark's body region, one of: {_codes(BODY_REGIONS)}.")
    ] = None,
    mark_side: Annotated[str | None, typer.Option(help=f"The mark's side, one of: {_codes(SIDES)}.")] = None,
    mark_aspect: Annotated[str | None, typer.Option(help=f"The mark's aspect, one of: {_codes(ASPECTS)}.")] = None,
    keywords: KeywordsOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many results (1-50).")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Search reports or cases by descriptors and a mark, without a face; ranked by agreement.
    Records the query's facts rule out are left out. Results are leads for examiners, never a match."""
    if height is not None:
        height_min = height_max = height
    descriptors = _known(
        sex=sex,
        height_min=height_min,
        height_max=height_max,
        build=build,
        hair_colour=hair_colour,
        hair_length=hair_length,
        eye_colour=eye_colour,
        facial_hair=facial_hair,
    )
    descriptors.update(_known(age_min=age_min, age_max=age_max))  # --target cases: refused, naming them
    mark = _known(type=mark_type, region=mark_region, side=mark_side, aspect=mark_aspect, keywords=keywords)
    marks = [mark] if mark else []
    dob = check_date_of_birth(date_of_birth)
    with _session(user) as (wf, actor):
        result = wf.reconciliation.search(
            actor, target=target, descriptors=descriptors, marks=marks, date_of_birth=dob, limit=limit
        )
    if json_out:
        emit_json(result)
        return
    table = Table("rank", target[:-1], "log10 LR", "agrees", "disagrees", "marks", "summary")
    for rank, hit in enumerate(result["results"], start=1):
        a = hit["agreement"]
        table.add_row(
            str(rank),
            hit["reference"],
            f"{a['log10_lr']:.2f}",
            str(a["agrees"]),
            str(a["disagrees"]),
            "; ".join(m["report"] if target == "reports" else m["case"] for m in a["marks"]),
            str(a["summary"]),
        )
    console.print(table)
    _line(f"{len(result['results'])} result(s); {result['excluded']} {target} excluded by the query's facts")


# -- leads and identifications ------------------------------------------------------------------------
@lead_app.command("agreement")
def lead_agreement(lead_id: int, user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Show what a lead's report and case agree and disagree on beyond the face, and the exclusions
    that apply to the pair."""
    with _session(user) as (wf, actor):
        a = wf.reconciliation.lead_agreement(actor, lead_id)
    if json_out:
        emit_json(a)
        return
    _line(f"lead {lead_id} ({a['basis']}): {a['summary']}; log10 LR {a['log10_lr']:.2f}")
    table = Table("field", "report", "case", "verdict")
    for f in a["fields"]:
        table.add_row(f["label"], str(f["report"] or ""), str(f["case"] or ""), f["verdict"])
    console.print(table)
    for m in a["marks"]:
        words = f" (shared: {', '.join(m['shared_words'])})" if m["shared_words"] else ""
        _line(f"  mark: report {m['report']} / case {m['case']}{words}")
    for e in a["exclusions"]:
        _line(f"  exclusion ({e['rule']}): {e['reason']}")


@lead_app.command("reopen")
def lead_reopen(
    lead_id: int,
    user: AsOpt = "",
    rationale: Annotated[str, typer.Option(help="Why (required), e.g. a new dental chart.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Reopen a rejected lead (reviewer): the rejections before it no longer stand."""
    with _session(user) as (wf, actor):
        lead = wf.reconciliation.reopen_lead(actor, lead_id, rationale=rationale)
    _print(lead, json_out, f"lead {lead_id} reopened; it is {lead['status']}")


@identification_app.command("confirm-exception")
def identification_confirm_exception(
    identification_id: int,
    user: AsOpt = "",
    rationale: Annotated[str, typer.Option(help="Why no primary identifier result can be had (required).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Confirm a preliminary identification without a DNA, dental or fingerprint result (admin only),
    recording why; the notifications the policy now allows are drafted."""
    with _session(user) as (wf, actor):
        result = wf.identifications.confirm_by_exception(actor, identification_id, rationale=rationale)
    notes = result["notifications"]
    line = (
        f"identification {identification_id} is {result['identification']['level']}; "
        f"{len(notes['drafted'])} notification(s) drafted for approval"
    )
    if notes.get("held"):
        line += f"; held: {notes['held']}"
    _print(result, json_out, line)


def register(app: typer.Typer, search_app: typer.Typer) -> None:
    """Add ``mark`` and ``reference`` to the ``facetrace`` command and ``marks`` to ``search``
    (the report, case, lead and identification commands are added to their groups on import)."""
    app.add_typer(mark_app, name="mark")
    app.add_typer(reference_app, name="reference")
    search_app.command("marks")(search_marks)
