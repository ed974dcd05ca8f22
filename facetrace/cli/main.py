"""The ``facetrace`` command. Every command takes ``--json``; errors are one line on stderr."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from facetrace.cli.accounts import audit_app, cli_actor, cli_audit, person_records, search_records, user_app
from facetrace.cli.backup import register as register_backup
from facetrace.cli.doctor import doctor
from facetrace.cli.evaluation import register as register_evaluation
from facetrace.cli.index import register as register_index_commands
from facetrace.cli.key import key_app
from facetrace.cli.output import console, emit_json, fail, progress_bar
from facetrace.cli.reconciliation import register as register_reconciliation
from facetrace.cli.retention import register as register_retention
from facetrace.cli.serve import serve, worker
from facetrace.cli.video import enroll_video_command, search_video_command
from facetrace.cli.workflow import register as register_workflow
from facetrace.config import Settings, get_settings
from facetrace.errors import FacetraceError, disk_full_error
from facetrace.fsutil import read_bytes
from facetrace.gallery import Gallery, read_folder, read_manifest
from facetrace.logs import setup_logging
from facetrace.vision.video import is_video_file
from facetrace.workflow.erasure import Eraser
from facetrace.workflow.retention import parse_retain_until


class _ImageByDefault(TyperGroup):
    """``facetrace search``: ``search IMAGE_OR_VIDEO`` (the ``image`` command, as before) unless the
    first word names another of its commands (``search marks``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click: its Context
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["image", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    help="facetrace: face identification for humanitarian identification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
search_app = typer.Typer(
    cls=_ImageByDefault,
    help="Search by face (search IMAGE_OR_VIDEO) or by marks and descriptors (search marks).",
    no_args_is_help=True,
)
person_app = typer.Typer(help="List, show and erase enrolled persons.", no_args_is_help=True)
index_app = typer.Typer(help="Maintain the vector index.", no_args_is_help=True)
app.add_typer(person_app, name="person")
app.add_typer(index_app, name="index")
register_index_commands(index_app)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(key_app, name="key")
app.command()(serve)
app.command()(worker)
app.command()(doctor)
register_workflow(app)  # report, case, lead, identification, notification
register_evaluation(app)  # eval, calibrate
register_retention(app)  # retention apply
register_backup(app)  # backup, restore
app.add_typer(search_app, name="search")
register_reconciliation(app, search_app)  # mark, reference, search marks; describe, facts... on report and case

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.callback()
def main(
    home: Annotated[
        Path | None, typer.Option(help="Data home (default: $FACETRACE_HOME or a per-user folder).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    if home is not None:
        os.environ["FACETRACE_HOME"] = str(home)
    # Text or JSON lines as FACETRACE_LOG_FORMAT says; `serve --log-json` switches to JSON.
    setup_logging(logging.INFO if verbose else logging.WARNING)


def _settings() -> Settings:
    return get_settings()


def _gallery() -> Gallery:
    return Gallery(_settings())


def _read(path: Path) -> bytes:
    return read_bytes(path)


@app.command()
def init(json_out: JsonOpt = False) -> None:
    """Create the data home and its database."""
    gallery = _gallery()
    info = {"home": str(gallery.settings.home), "database": gallery.db.safe_url, "model_id": gallery.model_id}
    if json_out:
        emit_json(info)
    else:
        console.print(f"facetrace home ready at {info['home']}")


@app.command()
def enroll(
    folder: Annotated[
        Path | None, typer.Argument(help="Folder in IDENTITY/IMAGE layout, or a video of one person.")
    ] = None,
    manifest: Annotated[Path | None, typer.Option(help="CSV manifest instead of a folder.")] = None,
    source: Annotated[str | None, typer.Option(help="Provenance: where the photos come from (folder import).")] = None,
    legal_basis: Annotated[str | None, typer.Option(help="Legal basis for holding them (folder import).")] = None,
    person_id: Annotated[str | None, typer.Option("--id", help="Video: the person's external id.")] = None,
    name: Annotated[str | None, typer.Option(help="Video: the person's name.")] = None,
    workers: Annotated[int, typer.Option(help="Processes (0 = every core).")] = 0,
    retain_until: Annotated[
        str | None, typer.Option(help="Folder import: erase these persons after this date (ISO).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Enroll reference photos. Idempotent and resumable; exits non-zero only if nothing was enrolled.

    Given a video file instead of a folder, enrolls the best faces of its longest track for one person.
    """

    if folder is not None and manifest is None and folder.is_file():
        enroll_video_command(
            folder,
            person_id=person_id,
            name=name,
            source=source,
            legal_basis=legal_basis,
            workers=workers,
            json_out=json_out,
        )
        return
    if (folder is None) == (manifest is None):
        fail("give either a FOLDER or --manifest FILE.csv")
    problems: list[Any] = []
    if manifest is not None:
        items, problems = read_manifest(manifest)
    else:
        assert folder is not None
        if not source or not legal_basis:
            fail("a folder import needs --source and --legal-basis (every record carries its provenance)")
        items = read_folder(folder, source=source or "", legal_basis=legal_basis or "")
        if retain_until:
            for item in items:
                item.retain_until = parse_retain_until(retain_until, "--retain-until")
    gallery = _gallery()
    with progress_bar("enrolling", enabled=not json_out and sys.stderr.isatty()) as update:
        outcome = gallery.enroll(items, progress=update, workers=workers)
    summary = {k: v for k, v in outcome.as_dict().items() if k != "errors"}
    cli_audit(
        gallery.db, "person.enroll", records=person_records(gallery.db, [i.external_id for i in items]), detail=summary
    )
    gallery.close()
    outcome.errors[:0] = [{"file": p.where, "error": p.message} for p in problems]
    result = outcome.as_dict()
    if json_out:
        emit_json(result)
    else:
        console.print(
            f"enrolled {outcome.images_enrolled} image(s), {outcome.persons_created} new person(s); "
            f"{outcome.images_skipped} already enrolled; {len(outcome.errors)} error(s)"
        )
        for error in outcome.errors[:50]:
            console.print(f"  {error['file']}: {error['error']}", markup=False, highlight=False)
        if len(outcome.errors) > 50:
            console.print(f"  ... and {len(outcome.errors) - 50} more (use --json for all)")
    if outcome.images_enrolled == 0 and outcome.images_skipped == 0:
        fail(f"nothing could be enrolled: {len(outcome.errors)} error(s)")


@search_app.command("image")
def search(
    image: Annotated[Path, typer.Argument(metavar="IMAGE_OR_VIDEO")],
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Candidates per face.")] = 5,
    thumbnails: Annotated[
        Path | None, typer.Option(help="Video: save each track's thumbnail JPEG in this folder.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Video: processes (0 = every core).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Search every face of an IMAGE, or every person tracked in a VIDEO (MP4, MOV, WebM, AVI: told
    apart by content), against the gallery, with calibrated match decisions."""

    if is_video_file(image):
        search_video_command(image, top=top, json_out=json_out, thumbnails=thumbnails, workers=workers or None)
        return
    gallery = _gallery()
    result = gallery.search(_read(image), name=image.name, top_k=top).to_dict()
    cli_audit(gallery.db, "search", records=search_records(result), detail={"image": image.name})
    if json_out:
        emit_json(result)
        return
    policy = result["policy"]
    console.print(f"{image.name}: {len(result['faces'])} face(s); gallery of {result['gallery']['persons']} persons")
    console.print(
        f"threshold {policy['threshold']:.4f} for target FPIR {policy['target_fpir']}: {policy['explanation']}"
    )
    for number, face in enumerate(result["faces"], start=1):
        verdict = f"MATCH {face['match']}" if face["match"] else "no match"
        console.print(f"\nface {number} box={face['box']} quality={face['quality']['score']:.0f}: {verdict}")
        table = Table("rank", "person", "name", "score", "FPIR", "decision")
        for cand in face["candidates"]:
            table.add_row(
                str(cand["rank"]),
                cand["person"]["external_id"],
                cand["person"]["name"],
                f"{cand['score']:.3f}",
                f"{cand['fpir']:.2g}",
                ("match: " if cand["match"] else "no: ") + cand["reason"],
            )
        console.print(table)


@app.command()
def compare(a: Path, b: Path, json_out: JsonOpt = False) -> None:
    """1:1 verification: are the largest faces in A and B the same person?"""
    gallery = _gallery()
    result = gallery.compare(_read(a), _read(b), names=(a.name, b.name)).to_dict()
    if json_out:
        emit_json(result)
    else:
        verdict = "same person (match)" if result["match"] else "no match"
        console.print(
            f"score {result['score']:.3f}, FMR {result['fmr']:.2g}, threshold {result['threshold']:.3f} "
            f"(FMR {result['target_fmr']}): {verdict}"
        )


@person_app.command("list")
def person_list(
    query: Annotated[str | None, typer.Option(help="Filter by name or id.")] = None,
    limit: int = 100,
    offset: int = 0,
    json_out: JsonOpt = False,
) -> None:
    """List enrolled persons."""
    persons = _gallery().list_persons(offset=offset, limit=limit, query=query)
    if json_out:
        emit_json(persons)
        return
    table = Table("external id", "name", "faces", "source", "legal basis")
    for p in persons:
        table.add_row(p["external_id"], p["name"], str(p["faces"]), p["source"], p["legal_basis"])
    console.print(table)


@person_app.command("show")
def person_show(external_id: str, json_out: JsonOpt = False) -> None:
    """Show one person with their images and faces."""
    gallery = _gallery()
    person = gallery.get_person(external_id)
    cli_audit(gallery.db, "person.view", records=[f"person:{person['id']}"])
    if json_out:
        emit_json(person)
        return
    console.print(
        f"{person['external_id']}: {person['name']}  (source: {person['source']}; legal basis: {person['legal_basis']})"
    )
    for image in person["images"]:
        console.print(f"  image {image['original_name']} sha256 {image['sha256'][:12]} faces {len(image['faces'])}")


@person_app.command("delete")
def person_delete(
    external_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    force: Annotated[
        bool, typer.Option(help="Erase even while its report has a lead under review or a pending notification.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Erase a person: their faces leave the database and index, their media files are removed, and
    stored job results no longer name them (one audit event; see docs/retention.md)."""
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Erase {external_id} and all their images?"):
        fail("not erased", 1)

    gallery = _gallery()
    reason = "erasure request" if reason is None else reason
    result = Eraser(gallery).erase_person(external_id, actor=cli_actor(), reason=reason, source="cli", force=force)
    if json_out:
        emit_json(result)
    else:
        console.print(
            f"erased {external_id}: {result['faces_removed']} face(s), {result['media_files_removed']} file(s)"
        )


@app.command()
def stats(json_out: JsonOpt = False) -> None:
    """Counts, model, index type and disk use."""
    info = _gallery().stats()
    if json_out:
        emit_json(info)
        return
    for key, value in info.items():
        console.print(f"{key}: {value}", markup=False, highlight=False)


def _fail_if_usage_error(exc: Exception) -> None:
    """Print click's usage errors (bad option, unknown command...) as one ``error:`` line and exit.

    Typer vendors click, so its exception classes are recognised by their interface.
    """
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise SystemExit(2) from None  # the help has been printed
    format_message = getattr(exc, "format_message", None)
    exit_code = getattr(exc, "exit_code", None)
    if not callable(format_message) or not isinstance(exit_code, int):
        return
    message = " ".join(line.strip() for line in str(format_message()).splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    command_path = getattr(ctx, "command_path", None)
    # Usage errors carry the command's context: point at its help.
    hint = f" (see '{command_path} --help')" if command_path else ""
    fail(message + hint, exit_code)


def run() -> None:
    """Entry point: run the CLI, turning every failure into one line on stderr."""
    code: Any = 0
    try:
        # Not standalone: click's usage errors come here, to be printed as one line like ours.
        code = app(standalone_mode=False)
    except FacetraceError as exc:
        fail(exc.message)
    except typer.Abort:
        fail("aborted", 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:  # never a traceback for a user
        if (full := disk_full_error(exc)) is not None:
            fail(full.message)
        _fail_if_usage_error(exc)
        logging.getLogger("facetrace").debug("internal error", exc_info=True)
        fail(f"internal error: {type(exc).__name__}: {exc}", 2)
    if code == 130:  # typer turns Ctrl-C into exit code 130
        fail("interrupted", 130)
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    run()
