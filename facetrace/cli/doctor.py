"""``facetrace doctor``: check a deployment and, with ``--fix``, repair what is safe to repair."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from facetrace.cli.accounts import cli_actor
from facetrace.cli.output import console, emit_json, fail
from facetrace.config import get_settings
from facetrace.ops.doctor import CHECKS, CheckResult, DoctorOptions, DoctorReport, run_doctor

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_STYLE = {"ok": "green", "skip": "dim", "warn": "yellow", "fail": "bold red"}


def doctor(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Repair what is safe: rebuild or re-sync the index from the database, migrate a schema that is "
            "behind, quarantine altered photos, record missing ones in the audit trail, remove stale unreferenced "
            "media files. Nothing recorded is deleted.",
        ),
    ] = False,
    full_media: Annotated[
        bool, typer.Option("--full-media", help="Hash every photo file (default: a random sample).")
    ] = False,
    media_sample: Annotated[int, typer.Option(min=0, help="Photo files hashed without --full-media.")] = 200,
    disk_warn_percent: Annotated[
        float,
        typer.Option(envvar="FACETRACE_DOCTOR_DISK_WARN_PERCENT", min=0, max=100, help="Warn below this % free."),
    ] = 10.0,
    disk_fail_percent: Annotated[
        float,
        typer.Option(envvar="FACETRACE_DOCTOR_DISK_FAIL_PERCENT", min=0, max=100, help="Fail below this % free."),
    ] = 2.0,
    disk_warn_mb: Annotated[
        int | None,
        typer.Option(
            envvar="FACETRACE_DOCTOR_DISK_WARN_MB", min=0, help="Warn below this many MiB free (default 512)."
        ),
    ] = None,
    orphan_age: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds an unreferenced media file must have existed before --fix removes it (a younger one "
            "may belong to an enrollment in progress).",
        ),
    ] = 3600.0,
    smtp_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the SMTP server.")] = 5.0,
    only: Annotated[
        list[str] | None, typer.Option("--check", help=f"Run only this check (repeatable): {', '.join(CHECKS)}.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check configuration, database, index, model files, calibration, photos, disk space, the notification
    outbox and the SMTP server.

    Exit code: 0 all ok, 1 warnings (works, needs attention), 2 failures (broken or data at risk).
    """

    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"FACETRACE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        report = DoctorReport([CheckResult("config", "fail", f"invalid settings: {problems}")])
    else:
        options = DoctorOptions(
            fix=fix,
            full_media=full_media,
            media_sample=media_sample,
            disk_warn_percent=disk_warn_percent,
            disk_fail_percent=disk_fail_percent,
            disk_warn_mb=disk_warn_mb,
            smtp_timeout=smtp_timeout,
            orphan_min_age_s=orphan_age,
            only=tuple(only) if only else None,
            actor=cli_actor(),
        )
        try:
            report = run_doctor(settings, options)
        except ValueError as exc:
            fail(str(exc), 2)
    if json_out:
        emit_json(report.as_dict())
    else:
        table = Table("check", "status", "finding", "repaired")
        for result in report.checks:
            table.add_row(
                result.name,
                f"[{_STYLE[result.status]}]{result.status}[/]",
                Text(result.message),
                Text("; ".join(result.fixed)),
            )
        console.print(table)
        console.print(f"overall: [{_STYLE[report.status]}]{report.status}[/]")
    raise SystemExit(report.exit_code)
