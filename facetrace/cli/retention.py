"""``facetrace retention ...``: list and erase the records whose retention date has passed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from facetrace.cli.accounts import cli_actor
from facetrace.cli.output import console, emit_json, fail, progress_bar
from facetrace.config import get_settings
from facetrace.gallery import Gallery
from facetrace.workflow.retention import apply_retention, parse_retain_until

retention_app = typer.Typer(
    help="Retention: erase persons, reports and cases whose retain_until date has passed.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NowOpt = Annotated[
    str | None, typer.Option("--now", help="Apply as of this moment (ISO date or date-time; default: now).")
]


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what is due; erase nothing.")] = False,
    now: NowOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Erase records with a lead under review or a pending notification too.")
    ] = False,
    vacuum_full: Annotated[
        bool,
        typer.Option(
            "--vacuum-full/--no-vacuum-full",
            help="PostgreSQL: end with VACUUM FULL of the erased-from tables (locks them while it runs).",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Erase every record whose retain_until is at or before now, each with its own audit event
    (reason "retention expired"). Idempotent: safe to run again, e.g. after a crash, or daily from cron.
    Exits 1 when a due record was left in place (blocked)."""
    # Imported here, not above: the gallery (and the workflow package, which loads it) brings the
    # face models and the index libraries, and other commands should not wait for them.

    when = parse_retain_until(now, "--now") if now else None
    gallery = Gallery(get_settings())
    try:
        with progress_bar("erasing", enabled=not json_out and not dry_run and sys.stderr.isatty()) as update:
            result = apply_retention(
                gallery,
                now=when,
                dry_run=dry_run,
                force=force,
                actor=cli_actor(),
                source="cli",
                progress=update,
                vacuum_full=vacuum_full,
            )
    finally:
        gallery.close()
    if json_out:
        emit_json(result)
    else:
        verb = "due" if dry_run else "erased"
        rows = result["due"] if dry_run else result["erased"]
        table = Table("kind", "id", "reference", "retain until")
        for row in rows:
            table.add_row(row["kind"], str(row["id"]), row["reference"], row["retain_until"])
        if rows:
            console.print(table)
        console.print(
            f"{len(rows)} record(s) {verb} as of {result['now']}; {len(result['blocked'])} blocked; "
            f"{len(result['already_erased'])} already erased with another record",
            markup=False,
        )
        for row in result["blocked"]:
            console.print(f"  blocked: {row['reason']}", markup=False, highlight=False)
    if result["blocked"]:
        fail(f"{len(result['blocked'])} due record(s) not erased (see above; --force overrides)", 1)


def register(app: typer.Typer) -> None:
    """Add ``facetrace retention`` to the ``facetrace`` command."""
    app.add_typer(retention_app, name="retention")
