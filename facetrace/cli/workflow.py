"""The identification workflow from the shell: ``facetrace report|case|lead|identification|notification``.

Every command acts as the user named by ``--as USERNAME`` (or ``$FACETRACE_USER``), whose roles
decide what is allowed; the shell is trusted to name the user (whoever can run these commands can
read the data home anyway), and each audit event also records the OS user as its source
(``cli:OSUSER``). Every command takes ``--json``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from facetrace.cli.accounts import cli_actor
from facetrace.cli.output import console, emit_json, fail
from facetrace.config import get_settings
from facetrace.errors import FacetraceError
from facetrace.fsutil import read_bytes
from facetrace.gallery import Gallery
from facetrace.store.accounts import User, get_user
from facetrace.workflow import PhotoInput, Workflow

if TYPE_CHECKING:
    from facetrace.workflow import PhotoInput, Workflow

report_app = typer.Typer(help="Missing-person reports: provenance, contacts, reference photos.", no_args_is_help=True)
case_app = typer.Typer(help="Cases: unidentified persons, with their photos.", no_args_is_help=True)
lead_app = typer.Typer(
    help="Leads (case-report pairs above the review threshold): review, evidence.", no_args_is_help=True
)
identification_app = typer.Typer(help="Identifications: list, show, withdraw.", no_args_is_help=True)
notification_app = typer.Typer(
    help="Family notifications: draft, approve, send (at most once), resolve.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AsOpt = Annotated[
    str,
    typer.Option(
        "--as", envvar="FACETRACE_USER", help="The acting user (default: $FACETRACE_USER).", show_default=False
    ),
]
PhotosOpt = Annotated[list[Path] | None, typer.Option("--photo", help="A photo file; repeat for several.")]
ReasonOpt = Annotated[str, typer.Option(help="The legal reason, kept in the audit trail.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Erase even with a lead under review or a pending notification.")
]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]


def register(app: typer.Typer) -> None:
    """Add the workflow command groups to the ``facetrace`` command."""
    app.add_typer(report_app, name="report")
    app.add_typer(case_app, name="case")
    app.add_typer(lead_app, name="lead")
    app.add_typer(identification_app, name="identification")
    app.add_typer(notification_app, name="notification")


@contextmanager
def _session(username: str) -> Iterator[tuple[Workflow, User]]:
    """Yield the workflow and the acting user. Raises FacetraceError for an unknown user."""
    # Imported here, not above: the gallery loads the face models and the index libraries, and
    # ``facetrace --help`` (or any other command) should not wait for them.

    if not username:
        raise FacetraceError("name the acting user with --as USERNAME (or set FACETRACE_USER)")
    gallery = Gallery(get_settings())
    try:
        with gallery.db.sessions() as session:
            user = get_user(session, username)
            session.expunge(user)
        yield Workflow(gallery, source=cli_actor()), user
    finally:
        gallery.close()


def _photos(paths: list[Path] | None) -> list[PhotoInput]:
    out = []
    for path in paths or []:
        out.append(PhotoInput(path.name, read_bytes(path)))
    return out


def _contact(text: str) -> dict[str, str]:
    """Parse ``name=...,relation=...,email=...,phone=...,language=...``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise FacetraceError(f"--contact {text!r}: write key=value pairs separated by commas")
        out[key.strip()] = value.strip()
    return out


def _print(data: Any, json_out: bool, line: str) -> None:
    if json_out:
        emit_json(data)
    else:
        console.print(line, markup=False, highlight=False)


def _matching_line(matching: dict[str, Any] | None) -> str:
    if not matching:
        return ""
    leads = matching.get("leads", {})
    text = (
        f"; matching (threshold {matching['threshold']:.3f} for FPIR {matching['review_fpir']} "
        f"over {matching['gallery_size']} persons): {len(leads.get('created', []))} new lead(s)"
    )
    if matching.get("duplicates_flagged"):
        text += f", {len(matching['duplicates_flagged'])} possible duplicate report(s) flagged"
    return text


def _exit_on_photo_errors(result: dict[str, Any], json_out: bool) -> None:
    errors = result.get("photos", {}).get("errors", [])
    if errors and not json_out:
        for error in errors:
            console.print(f"  {error['file']}: {error['error']}", markup=False, highlight=False)
    if errors:
        raise SystemExit(1)


# -- what reports and cases share -----------------------------------------------------------------
def _get_record(wf: Workflow, actor: User, kind: str, reference: str) -> dict[str, Any]:
    return wf.reports.get_report(actor, reference) if kind == "report" else wf.cases.get_case(actor, reference)


def _show_command(kind: str, doc: str) -> Callable[..., None]:
    """Return the ``show`` command of reports or cases (``kind``), with ``doc`` as its help."""

    def show(reference: str, user: AsOpt = "", json_out: JsonOpt = False) -> None:
        with _session(user) as (wf, actor):
            record = _get_record(wf, actor, kind, reference)
        if json_out:
            emit_json(record)
        elif kind == "report":
            _print_report(record)
        else:
            _print_case(record)

    show.__doc__ = doc
    return show


def _print_report(r: dict[str, Any]) -> None:
    p = r["provenance"]
    console.print(
        f"{r['reference']}: {r['name']} (born {r['date_of_birth'] or '?'}) - {r['status']}\n"
        f"  reported by {p['reported_by']}; source {p['source']}; legal basis {p['legal_basis']}; "
        f"consent {'yes' if p['consent'] else 'no'} {p['consent_date'] or ''}",
        markup=False,
        highlight=False,
    )
    for c in r["contacts"]:
        console.print(
            f"  contact {c['id']}: {c['name']} ({c['relation']}) "
            f"{c['email'] or ''} {c['phone'] or ''} [{c['language']}]",
            markup=False,
        )
    console.print(f"  {len(r['photos'])} photo(s), {len(r['leads'])} lead(s), {len(r['duplicates'])} duplicate flag(s)")


def _print_case(c: dict[str, Any]) -> None:
    console.print(
        f"{c['reference']}: {c['condition']}, found {c['found_at'] or '?'} at {c['found_place'] or '?'}; "
        f"held by {c['holding_organisation'] or '?'} - {c['status']}\n"
        f"  {len(c['photos'])} photo(s), {len(c['leads'])} lead(s)",
        markup=False,
        highlight=False,
    )


def _match_command(kind: str, doc: str) -> Callable[..., None]:
    """Return the ``match`` command of reports or cases (``kind``), with ``doc`` as its help."""

    def match(reference: str, user: AsOpt = "", json_out: JsonOpt = False) -> None:
        with _session(user) as (wf, actor):
            if kind == "report":
                result = wf.matching.match_report(actor, reference)
            else:
                result = wf.matching.match_case(actor, reference)
        _print(result, json_out, f"{kind} {reference}{_matching_line(result)}")

    def match_case(
        reference: str,
        user: AsOpt = "",
        widen: Annotated[
            bool,
            typer.Option(
                "--widen",
                help="Search all reports, ignoring the exclusions (sex, age, height); examiner or reviewer, audited.",
            ),
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        with _session(user) as (wf, actor):
            result = wf.matching.match_case(actor, reference, widen=widen)
        widened = " (widened: exclusions ignored)" if widen else ""
        _print(result, json_out, f"{kind} {reference}{widened}{_matching_line(result)}")

    command = match if kind == "report" else match_case
    command.__doc__ = doc
    return command


def _photo_add_command(kind: str, doc: str) -> Callable[..., None]:
    """Return the ``photo-add`` command of reports or cases (``kind``), with ``doc`` as its help.
    It exits 1 when a photo could not be enrolled (reports only: a case takes all or none)."""

    def photo_add(reference: str, photos: list[Path], user: AsOpt = "", json_out: JsonOpt = False) -> None:
        data = _photos(photos)
        with _session(user) as (wf, actor):
            if kind == "report":
                result = wf.reports.add_report_photos(actor, reference, data)
            else:
                result = wf.cases.add_case_photos(actor, reference, data)
        p = result["photos"]
        if kind == "report":
            done = f"{p['enrolled']} enrolled, {p['skipped']} already there, {len(p['errors'])} error(s)"
        else:
            done = f"{len(p['added'])} photo(s) added, {p['skipped']} already there"
        line = f"{kind} {result[kind]['reference']}: {done}{_matching_line(result['matching'])}"
        _print(result, json_out, line)
        _exit_on_photo_errors(result, json_out)

    photo_add.__doc__ = doc
    return photo_add


def _update(
    kind: str, reference: str, user: str, json_out: bool, retain_until: str | None, **options: str | None
) -> None:
    """Change the fields of a report or case (``kind``) whose option was given; ``retain_until``
    'none' (or empty) removes the retention date."""
    fields: dict[str, Any] = {key: value for key, value in options.items() if value is not None}
    if retain_until is not None:
        fields["retain_until"] = None if retain_until.strip().lower() in ("", "none") else retain_until
    with _session(user) as (wf, actor):
        if kind == "report":
            result = wf.reports.update_report(actor, reference, **fields)
        else:
            result = wf.cases.update_case(actor, reference, **fields)
    _print(
        result,
        json_out,
        f"{kind} {result[kind]['reference']}: changed {', '.join(result['changed']) or 'nothing'}"
        f"{_matching_line(result['matching'])}",
    )


# -- reports --------------------------------------------------------------------------------------
@report_app.command("add")
def report_add(
    user: AsOpt = "",
    name: Annotated[str, typer.Option(help="Name of the person sought.")] = "",
    reported_by: Annotated[str, typer.Option(help="Provenance: who reported.")] = "",
    source: Annotated[str, typer.Option(help="Provenance: source of the report.")] = "",
    legal_basis: Annotated[str, typer.Option(help="Provenance: legal basis for holding it.")] = "",
    consent: Annotated[bool, typer.Option("--consent", help="The reporter consented.")] = False,
    consent_date: Annotated[str | None, typer.Option(help="Date of consent (YYYY-MM-DD).")] = None,
    date_of_birth: Annotated[str | None, typer.Option("--dob", help="YYYY, YYYY-MM or YYYY-MM-DD.")] = None,
    description: Annotated[str, typer.Option(help="Description.")] = "",
    reference: Annotated[str | None, typer.Option(help="Your reference (default: R-NNNNNN).")] = None,
    contact: Annotated[
        list[str] | None,
        typer.Option(help="name=..,relation=..,email=..,phone=..,language=..; repeat for several."),
    ] = None,
    photo: PhotosOpt = None,
    retain_until: Annotated[str | None, typer.Option(help="Erase after this date (ISO date or date-time).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a missing-person report and match it against the open cases.
    Exits 1 (after creating the report) if a photo could not be enrolled."""
    contacts = [_contact(c) for c in contact or []]
    photos = _photos(photo)
    with _session(user) as (wf, actor):
        result = wf.reports.create_report(
            actor,
            name=name,
            reported_by=reported_by,
            source=source,
            legal_basis=legal_basis,
            consent=consent,
            consent_date=consent_date,
            date_of_birth=date_of_birth,
            description=description,
            reference=reference,
            contacts=contacts,
            photos=photos,
            retain_until=retain_until,
        )
    r = result["report"]
    _print(
        result,
        json_out,
        f"report {r['reference']} ({r['name']}): {len(result['contacts'])} contact(s), "
        f"{result['photos']['enrolled']} photo(s) enrolled{_matching_line(result['matching'])}",
    )
    _exit_on_photo_errors(result, json_out)


@report_app.command("update")
def report_update(
    reference: str,
    user: AsOpt = "",
    name: Annotated[str | None, typer.Option()] = None,
    date_of_birth: Annotated[str | None, typer.Option("--dob")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="missing, located_alive or closed.")] = None,
    reported_by: Annotated[str | None, typer.Option()] = None,
    source: Annotated[str | None, typer.Option()] = None,
    legal_basis: Annotated[str | None, typer.Option()] = None,
    retain_until: Annotated[
        str | None, typer.Option(help="Erase after this date (ISO date or date-time); 'none' removes it.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a report's fields, then match it again."""
    _update(
        "report",
        reference,
        user,
        json_out,
        retain_until,
        name=name,
        date_of_birth=date_of_birth,
        description=description,
        status=status,
        reported_by=reported_by,
        source=source,
        legal_basis=legal_basis,
    )


report_app.command("photo-add")(
    _photo_add_command("report", "Enroll more reference photos of a report (idempotent), then match it again.")
)


@report_app.command("contact-add")
def report_contact_add(
    reference: str,
    user: AsOpt = "",
    name: Annotated[str, typer.Option()] = "",
    relation: Annotated[str, typer.Option(help="e.g. mother, brother, lawyer.")] = "",
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    language: Annotated[str, typer.Option(help="Preferred language code (en, uk, ru...).")] = "en",
    json_out: JsonOpt = False,
) -> None:
    """Register a family contact on a report (the only possible notification recipients)."""
    with _session(user) as (wf, actor):
        result = wf.reports.add_contact(
            actor, reference, name=name, relation=relation, email=email, phone=phone, language=language
        )
    _print(result, json_out, f"contact {result['id']} registered: {result['name']} ({result['relation']})")


@report_app.command("list")
def report_list(
    user: AsOpt = "",
    status: Annotated[str | None, typer.Option()] = None,
    query: Annotated[
        str | None,
        typer.Option(help="A name in any script or spelling (melnik finds Мельник), or part of a reference."),
    ] = None,
    limit: int = 100,
    offset: int = 0,
    json_out: JsonOpt = False,
) -> None:
    """List reports, newest first; with --query, ranked by name: exact, containing, close spellings."""
    with _session(user) as (wf, actor):
        rows = wf.reports.list_reports(actor, status=status, query=query, offset=offset, limit=limit)
    if json_out:
        emit_json(rows)
        return
    table = Table("reference", "name", "born", "status", "reported by")
    for r in rows:
        table.add_row(r["reference"], r["name"], r["date_of_birth"] or "", r["status"], r["provenance"]["reported_by"])
    console.print(table)


report_app.command("show")(
    _show_command("report", "Show a report with its contacts, photos, leads, duplicates and identifications.")
)


report_app.command("match")(_match_command("report", "Search a report against all open cases again (idempotent)."))


@report_app.command("duplicates")
def report_duplicates(
    user: AsOpt = "",
    status: Annotated[str, typer.Option(help="open, merged, dismissed or all.")] = "open",
    json_out: JsonOpt = False,
) -> None:
    """List possible duplicate reports (the same person reported twice)."""
    with _session(user) as (wf, actor):
        rows = wf.matching.list_duplicates(actor, status=None if status == "all" else status)
    if json_out:
        emit_json(rows)
        return
    table = Table("flag", "report", "other report", "score", "status")
    for f in rows:
        a, b = f["report"] or {}, f["other_report"] or {}
        table.add_row(
            str(f["id"]),
            f"{a.get('reference')} {a.get('name')}",
            f"{b.get('reference')} {b.get('name')}",
            f"{f['score']:.3f}",
            f["status"],
        )
    console.print(table)


@report_app.command("merge")
def report_merge(
    source: str,
    into: str,
    user: AsOpt = "",
    rationale: Annotated[str, typer.Option(help="Why they are the same person.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Merge report SOURCE into report INTO (both histories are kept)."""
    with _session(user) as (wf, actor):
        result = wf.matching.merge_reports(actor, source, into, rationale=rationale)
    _print(result, json_out, f"report {result['source']['reference']} merged into {result['into']['reference']}")


@report_app.command("dismiss-duplicate")
def report_dismiss_duplicate(
    flag_id: int,
    user: AsOpt = "",
    rationale: Annotated[str, typer.Option(help="Why they are different people.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Record that two flagged reports are different people."""
    with _session(user) as (wf, actor):
        result = wf.matching.dismiss_duplicate(actor, flag_id, rationale=rationale)
    _print(result, json_out, f"duplicate flag {flag_id} dismissed")


# -- cases ----------------------------------------------------------------------------------------
@case_app.command("add")
def case_add(
    user: AsOpt = "",
    condition: Annotated[str, typer.Option(help="deceased or alive (or give --kind).")] = "",
    found_at: Annotated[str | None, typer.Option(help="When found (ISO date or date-time).")] = None,
    found_place: Annotated[str, typer.Option(help="Where found.")] = "",
    holding_organisation: Annotated[str, typer.Option(help="Who holds the person or remains.")] = "",
    description: Annotated[str, typer.Option()] = "",
    kind: Annotated[
        str | None,
        typer.Option(help="deceased, living, detained or body_part; sets the condition (give either or both)."),
    ] = None,
    reference: Annotated[str | None, typer.Option(help="Your reference (default: C-NNNNNN).")] = None,
    photo: PhotosOpt = None,
    retain_until: Annotated[str | None, typer.Option(help="Erase after this date (ISO date or date-time).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Open a case with its photos and search it against all reports."""
    photos = _photos(photo)
    with _session(user) as (wf, actor):
        result = wf.cases.create_case(
            actor,
            condition=condition or None,
            kind=kind,
            found_at=found_at,
            found_place=found_place,
            holding_organisation=holding_organisation,
            description=description,
            reference=reference,
            photos=photos,
            retain_until=retain_until,
        )
    c = result["case"]
    _print(
        result,
        json_out,
        f"case {c['reference']} ({c['condition']}): {len(result['photos']['added'])} photo(s)"
        f"{_matching_line(result['matching'])}",
    )


@case_app.command("update")
def case_update(
    reference: str,
    user: AsOpt = "",
    condition: Annotated[str | None, typer.Option()] = None,
    found_at: Annotated[str | None, typer.Option()] = None,
    found_place: Annotated[str | None, typer.Option()] = None,
    holding_organisation: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="open or closed.")] = None,
    retain_until: Annotated[
        str | None, typer.Option(help="Erase after this date (ISO date or date-time); 'none' removes it.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a case's fields; an open case is searched again."""
    _update(
        "case",
        reference,
        user,
        json_out,
        retain_until,
        condition=condition,
        found_at=found_at,
        found_place=found_place,
        holding_organisation=holding_organisation,
        description=description,
        status=status,
    )


case_app.command("photo-add")(
    _photo_add_command("case", "Add photos to a case (all checked first), then search it again.")
)


@case_app.command("list")
def case_list(
    user: AsOpt = "",
    status: Annotated[str | None, typer.Option()] = None,
    query: Annotated[
        str | None, typer.Option(help="Part of a reference, or the name (any script) of a report a lead names.")
    ] = None,
    limit: int = 100,
    offset: int = 0,
    json_out: JsonOpt = False,
) -> None:
    """List cases, newest first; with --query, ranked by the names of the reports their leads name."""
    with _session(user) as (wf, actor):
        rows = wf.cases.list_cases(actor, status=status, query=query, offset=offset, limit=limit)
    if json_out:
        emit_json(rows)
        return
    table = Table("reference", "condition", "found", "place", "status")
    for c in rows:
        table.add_row(c["reference"], c["condition"], c["found_at"] or "", c["found_place"], c["status"])
    console.print(table)


case_app.command("show")(_show_command("case", "Show a case with its photos, leads and identifications."))


case_app.command("match")(
    _match_command("case", "Search a case against all reports again (idempotent); --widen ignores the exclusions.")
)


# -- leads ----------------------------------------------------------------------------------------
@lead_app.command("list")
def lead_list(
    user: AsOpt = "",
    status: Annotated[str | None, typer.Option()] = None,
    case: Annotated[str | None, typer.Option(help="Only this case.")] = None,
    report: Annotated[str | None, typer.Option(help="Only this report.")] = None,
    limit: int = 100,
    offset: int = 0,
    json_out: JsonOpt = False,
) -> None:
    """List leads, best score first."""
    with _session(user) as (wf, actor):
        rows = wf.reviews.list_leads(actor, status=status, case=case, report=report, offset=offset, limit=limit)
    if json_out:
        emit_json(rows)
        return
    table = Table("lead", "case", "report", "name", "basis", "score", "FPIR", "status")
    for lead in rows:
        table.add_row(
            str(lead["id"]),
            lead["case"],
            lead["report"],
            lead["report_name"],
            lead.get("basis") or "face",
            f"{lead['score']:.3f}" if lead.get("basis") != "marks" else "",
            f"{lead['fpir']:.2g}" if lead.get("basis") != "marks" else "",
            lead["status"],
        )
    console.print(table)


@lead_app.command("show")
def lead_show(lead_id: int, user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Show a lead with its reviews and evidence."""
    with _session(user) as (wf, actor):
        lead = wf.reviews.get_lead(actor, lead_id)
    if json_out:
        emit_json(lead)
        return
    console.print(
        f"lead {lead['id']}: case {lead['case']['reference']} - report {lead['report']['reference']} "
        f"({lead['report']['name']}); score {lead['score']:.3f}, FPIR {lead['fpir']:.2g}, {lead['status']}",
        markup=False,
    )
    for r in lead["reviews"]:
        console.print(f"  review by {r['reviewer']}: {r['decision']} - {r['rationale']}", markup=False)
    for e in lead["evidence"]:
        console.print(f"  evidence ({e['kind']}) by {e['recorded_by']}: {e['description']}", markup=False)


@lead_app.command("review")
def lead_review(
    lead_id: int,
    user: AsOpt = "",
    decision: Annotated[str, typer.Option(help="confirm, reject or inconclusive.")] = "",
    rationale: Annotated[str, typer.Option(help="Why (required).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Review a lead. A reviewer's confirmation after another user's establishes the identification."""
    with _session(user) as (wf, actor):
        result = wf.reviews.review_lead(actor, lead_id, decision=decision, rationale=rationale)
    ident = result["identification"]
    line = f"lead {lead_id}: {decision} recorded; lead is {result['lead']['status']}"
    if ident:
        notes = result["notifications"]
        line += (
            f"; identification {ident['id']} established ({ident['level']}), {len(notes['drafted'])} "
            "notification(s) drafted for approval"
        )
        if notes.get("held"):
            line += f"; notifications held: {notes['held']}"
    elif result["waiting_for"]:
        line += f"; waiting for {result['waiting_for']}"
    _print(result, json_out, line)


@lead_app.command("evidence")
def lead_evidence(
    lead_id: int,
    user: AsOpt = "",
    kind: Annotated[
        str, typer.Option(help="dna, fingerprints, dental, documents, personal_effects, witness or other.")
    ] = "",
    description: Annotated[str, typer.Option()] = "",
    reference: Annotated[str | None, typer.Option(help="e.g. a lab report number.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Record corroborating evidence on a lead."""
    with _session(user) as (wf, actor):
        result = wf.reviews.add_evidence(actor, lead_id, kind=kind, description=description, reference=reference)
    line = f"evidence {result['id']} ({result['kind']}) recorded on lead {lead_id}"
    if ident := result.get("identification"):
        notes = ident.get("notifications") or {}
        line += (
            f"; identification {ident['id']} is now {ident['level']}, "
            f"{len(notes.get('drafted', []))} notification(s) drafted for approval"
        )
        if notes.get("held"):
            line += f"; notifications held: {notes['held']}"
    _print(result, json_out, line)


@lead_app.command("rematch")
def lead_rematch(user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Search every open case and every report again (after a recalibration or bulk import)."""
    with _session(user) as (wf, actor):
        result = wf.matching.match_all(actor)
    _print(
        result,
        json_out,
        f"{result['cases']} case(s), {result['reports']} report(s): {len(result['leads']['created'])} new lead(s), "
        f"{len(result['duplicates_flagged'])} duplicate flag(s)",
    )


# -- identifications ------------------------------------------------------------------------------
@identification_app.command("list")
def identification_list(
    user: AsOpt = "", status: Annotated[str | None, typer.Option()] = None, json_out: JsonOpt = False
) -> None:
    """List identifications, newest first."""
    with _session(user) as (wf, actor):
        rows = wf.identifications.list_identifications(actor, status=status)
    if json_out:
        emit_json(rows)
        return
    table = Table("id", "case", "report", "name", "status", "level", "confirmed")
    for i in rows:
        table.add_row(
            str(i["id"]),
            i["case"],
            i["report"],
            i["report_name"],
            i["status"],
            i.get("level") or "",
            i["confirmed_at"] or "",
        )
    console.print(table)


@identification_app.command("show")
def identification_show(identification_id: int, user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Show an identification with its reviews, evidence and notifications."""
    with _session(user) as (wf, actor):
        i = wf.identifications.get_identification(actor, identification_id)
    if json_out:
        emit_json(i)
        return
    console.print(
        f"identification {i['id']}: case {i['case']['reference']} = report {i['report']['reference']} "
        f"({i['report']['name']}) - {i['status']}, {i.get('level')}; confirmed by {i['first_confirmed_by']} and "
        f"{i['second_confirmed_by']}; {i['evidence_count']} evidence item(s)",
        markup=False,
    )
    if i.get("level_basis"):
        console.print(f"  level basis: {i['level_basis']}", markup=False)
    elif i.get("level") == "preliminary":
        console.print(
            "  preliminary: no DNA, dental or fingerprint result yet (family notifications may be held until one, "
            "or an admin's confirm-exception)",
            markup=False,
        )
    for n in i["notifications"]:
        console.print(f"  notification {n['id']} ({n['kind']}) to {n['recipient']}: {n['status']}", markup=False)


@identification_app.command("withdraw")
def identification_withdraw(
    identification_id: int,
    user: AsOpt = "",
    reason: Annotated[str, typer.Option(help="Why (required).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Withdraw an identification: unsent notifications are cancelled, corrections drafted."""
    with _session(user) as (wf, actor):
        result = wf.identifications.withdraw_identification(actor, identification_id, reason=reason)
    n = result["notifications"]
    _print(
        result,
        json_out,
        f"identification {identification_id} withdrawn; {len(n['cancelled'])} notification(s) cancelled, "
        f"{len(n['corrections_drafted'])} correction(s) drafted for approval",
    )


# -- notifications --------------------------------------------------------------------------------
@notification_app.command("list")
def notification_list(
    user: AsOpt = "",
    status: Annotated[str | None, typer.Option()] = None,
    identification: Annotated[int | None, typer.Option(help="Only this identification.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List notifications, newest first."""
    with _session(user) as (wf, actor):
        rows = wf.notifications.list_notifications(actor, status=status, identification_id=identification)
    if json_out:
        emit_json(rows)
        return
    table = Table("id", "kind", "to", "language", "status", "attempts", "identification")
    for n in rows:
        table.add_row(
            str(n["id"]),
            n["kind"],
            n["recipient"],
            n["language"],
            n["status"],
            str(n["attempts"]),
            str(n["identification_id"]),
        )
    console.print(table)


@notification_app.command("show")
def notification_show(notification_id: int, user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Show a notification's text, state and delivery attempts."""
    with _session(user) as (wf, actor):
        n = wf.notifications.get_notification(actor, notification_id)
    if json_out:
        emit_json(n)
        return
    console.print(
        f"notification {n['id']} ({n['kind']}, {n['language']}) to {n['recipient']}: {n['status']}\n"
        f"Message-ID: {n['message_id']}\nSubject: {n['subject']}\n\n{n['body']}",
        markup=False,
        highlight=False,
    )
    for a in n["delivery_attempts"]:
        console.print(f"  attempt {a['number']}: {a['outcome'] or 'unfinished'} {a['detail']}", markup=False)


@notification_app.command("draft")
def notification_draft(identification_id: int, contact_id: int, user: AsOpt = "", json_out: JsonOpt = False) -> None:
    """Draft a notification to one registered contact of the identified report."""
    with _session(user) as (wf, actor):
        n = wf.notifications.draft_notification(actor, identification_id, contact_id)
    _print(n, json_out, f"notification {n['id']} drafted ({n['kind']}, {n['language']}) to {n['recipient']}")


@notification_app.command("approve")
def notification_approve(
    notification_id: int,
    user: AsOpt = "",
    include_image: Annotated[
        list[int] | None,
        typer.Option(help="Attach this photo of the case (image id); repeat for several. Default: none."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Approve a drafted notification (a reviewer other than the drafter)."""
    with _session(user) as (wf, actor):
        n = wf.notifications.approve_notification(actor, notification_id, include_images=include_image)
    extra = f" with {len(n['attachments'])} photo(s)" if n["attachments"] else ""
    _print(n, json_out, f"notification {n['id']} approved{extra}; send it with: facetrace notification send")


@notification_app.command("cancel")
def notification_cancel(
    notification_id: int,
    user: AsOpt = "",
    reason: Annotated[str, typer.Option(help="Why (required).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Cancel a notification not yet sent."""
    with _session(user) as (wf, actor):
        n = wf.notifications.cancel_notification(actor, notification_id, reason=reason)
    _print(n, json_out, f"notification {n['id']} cancelled")


@notification_app.command("send")
def notification_send(
    notification_ids: Annotated[list[int] | None, typer.Argument(help="Only these (default: all approved).")] = None,
    user: AsOpt = "",
    stale_after: Annotated[
        float | None,
        typer.Option(help="Seconds after which a message stuck in 'sending' is marked 'unknown' (never resent)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Send approved notifications by SMTP, each at most once. Exits 1 if any was not accepted."""
    with _session(user) as (wf, actor):
        result = wf.outbox.send_notifications(
            actor, notification_ids=notification_ids or None, stale_after_s=stale_after
        )
    if json_out:
        emit_json(result)
    else:
        console.print(
            f"{result['sent']} sent, {result['failed']} failed (will retry), {result['refused']} refused, "
            f"{result['unknown']} unknown; {len(result['marked_unknown'])} stuck message(s) marked unknown",
            markup=False,
        )
        for r in result["results"]:
            if r["status"] != "sent":
                console.print(f"  notification {r['id']}: {r['status']} - {r['detail']}", markup=False)
    if any(r["status"] != "sent" for r in result["results"]) or result["marked_unknown"]:
        raise SystemExit(1)


@notification_app.command("resolve")
def notification_resolve(
    notification_id: int,
    user: AsOpt = "",
    delivered: Annotated[bool, typer.Option("--delivered", help="It did go out (e.g. found in the mail log).")] = False,
    resend: Annotated[bool, typer.Option("--resend", help="It did not go out: queue it again.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Do not send it.")] = False,
    rationale: Annotated[str, typer.Option(help="How you know (required).")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Settle a notification whose delivery is unknown, failed or refused."""
    chosen = [name for name, flag in (("delivered", delivered), ("resend", resend), ("cancel", cancel)) if flag]
    if len(chosen) != 1:
        fail("give exactly one of --delivered, --resend, --cancel")
    with _session(user) as (wf, actor):
        n = wf.outbox.resolve_notification(actor, notification_id, resolution=chosen[0], rationale=rationale)
    _print(n, json_out, f"notification {n['id']} is now {n['status']}")


def _erase_command(kind: str, doc: str) -> Callable[..., None]:
    """Return the ``erase`` command of reports or cases (``kind``), with ``doc`` as its help."""

    def erase(
        reference: str,
        user: AsOpt = "",
        reason: ReasonOpt = "erasure request",
        force: ForceOpt = False,
        yes: YesOpt = False,
        json_out: JsonOpt = False,
    ) -> None:
        _erase(kind, reference, user, reason, force, yes, json_out)

    erase.__doc__ = doc
    return erase


def _erase(kind: str, reference: str, user: str, reason: str, force: bool, yes: bool, json_out: bool) -> None:
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Erase {kind} {reference} and everything it holds?"):
        fail("not erased", 1)
    with _session(user) as (wf, actor):
        result = wf.erasure.erase_record(actor, kind, reference, reason=reason, force=force)
    _print(
        result,
        json_out,
        f"{kind} {reference} erased: {result['faces']} face(s), {result['images']} image(s), "
        f"{result['media_files_removed']} file(s), {result['leads']} lead(s), "
        f"{result['identifications']} identification(s), {result['notifications']} notification(s)",
    )


report_app.command("erase")(
    _erase_command(
        "report",
        """Erase a report end to end: merged reports, photos, templates, contacts, leads, identifications,
    notifications. Irreversible; the audit trail keeps that it happened, not the data.""",
    )
)
case_app.command("erase")(
    _erase_command(
        "case", "Erase a case end to end: photos, templates, leads, identifications, notifications. Irreversible."
    )
)
