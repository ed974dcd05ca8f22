"""``facetrace backup OUT`` and ``facetrace restore ARCHIVE --home NEWHOME`` (see facetrace.store.backup)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from facetrace.cli.accounts import cli_audit
from facetrace.cli.output import console, emit_json, progress_bar
from facetrace.config import get_settings
from facetrace.gallery import Gallery
from facetrace.store.backup import create_backup, restore_backup
from facetrace.store.db import Database

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def backup(
    out: Annotated[Path, typer.Argument(help="The archive to write (.tar, or .tar.gz to compress); must not exist.")],
    json_out: JsonOpt = False,
) -> None:
    """Back up the data home: a consistent snapshot of the database (while the server may run), the media
    files, index files, calibration and templates, with a manifest of checksums. Encrypted data stays
    encrypted; the key is never included."""

    settings = get_settings()
    with progress_bar("backing up", enabled=not json_out and sys.stderr.isatty()) as update:
        result = create_backup(settings, out, progress=update)
    database = Database(settings.db_url)
    try:
        cli_audit(database, "backup.create", detail={k: result[k] for k in ("schema_revision", "rows", "files")})
    finally:
        database.dispose()
    if json_out:
        emit_json(result)
        return
    rows = sum(result["rows"].values())
    console.print(
        f"backup written to {out}: {rows} row(s) in {len(result['rows'])} table(s), {result['files']} file(s), "
        f"schema {result['schema_revision']}",
        markup=False,
    )
    if result["missing_media"]:
        console.print(f"  {len(result['missing_media'])} media file(s) were missing (erased meanwhile?)")


def restore(
    archive: Annotated[Path, typer.Argument(help="A backup archive written by `facetrace backup`.")],
    home: Annotated[Path, typer.Option("--home", help="The new data home (must not exist or be empty).")],
    database_url: Annotated[
        str | None,
        typer.Option(help="Restore into this (empty) database instead of the new home's SQLite file."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup into a new data home: checksums verified first (nothing is written if one fails),
    the schema migrated to the newest revision, the index brought in line with the database (or rebuilt)."""

    with progress_bar("restoring", enabled=not json_out and sys.stderr.isatty()) as update:
        result: dict[str, Any] = restore_backup(archive, home, database_url=database_url, progress=update)
    # The restored home's own settings: the environment's other choices (model, key), this home and database.
    settings = get_settings(home=home, database_url=database_url, calibration_path=None)
    if not (home / "calibration.json").is_file():
        settings = get_settings(home=home, database_url=database_url)
    gallery = Gallery(settings)
    try:
        index = gallery.index()  # reconciles a copied index with the database, or rebuilds it
        result["index"] = {"backend": index.describe().get("backend"), "count": len(index)}
        cli_audit(
            gallery.db, "backup.restore", detail={"from_revision": result["from_revision"], "files": result["files"]}
        )
    finally:
        gallery.close()
    if json_out:
        emit_json(result)
        return
    console.print(
        f"restored into {result['home']} ({result['database']}): {sum(result['rows'].values())} row(s), "
        f"{result['files']} file(s); schema {result['from_revision']} -> {result['schema_revision']}; "
        f"index holds {result['index']['count']} template(s)",
        markup=False,
    )
    if database_url:
        console.print("set FACETRACE_DATABASE_URL to that database when using this home", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``facetrace backup`` and ``facetrace restore``."""
    app.command("backup")(backup)
    app.command("restore")(restore)
