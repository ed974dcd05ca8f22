"""``facetrace index ...``: rebuild the vector index, show it, migrate it to Milvus."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from facetrace.cli.output import console, emit_json, progress_bar
from facetrace.config import get_settings
from facetrace.gallery import Gallery

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _gallery() -> Any:
    return Gallery(get_settings())


def index_rebuild(
    factory: Annotated[
        str | None,
        typer.Option(
            help="FAISS index_factory string (e.g. 'Flat', 'IVF{nlist},Flat', 'IVF{nlist},SQ8'); "
            "'auto' = chosen by size. Default: FACETRACE_INDEX_FACTORY, else by size."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the vector index from the database.

    FAISS: into the index type that suits the gallery's size (or --factory); the current index answers
    searches until the new one replaces it. Milvus: this model's templates are inserted again.
    """
    gallery = _gallery()
    try:
        with progress_bar("indexing", enabled=not json_out and sys.stderr.isatty()) as update:
            count = gallery.rebuild_index(factory=factory, progress=update)
        info = gallery.index().describe()
    finally:
        gallery.close()
    if json_out:
        emit_json({"faces": count, "index": info})
    else:
        console.print(
            f"index rebuilt: {count} face(s), {_summary(info)}", markup=False, highlight=False, soft_wrap=True
        )


def index_info(json_out: JsonOpt = False) -> None:
    """Show the vector index: backend, type, size, search parameters and memory per template."""
    gallery = _gallery()
    try:
        info = gallery.index().describe()
    finally:
        gallery.close()
    if json_out:
        emit_json(info)
        return
    for key, value in info.items():
        console.print(f"{key}: {value}", markup=False, highlight=False)


def index_migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Target: milvus://[user:password@]host:port/collection or milvus-lite:///path/file.db.",
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Copy the gallery's templates to Milvus, checked against the current index.

    Afterwards set FACETRACE_VECTOR_URL to the same URL to search there. Idempotent: rerun it to catch up
    with enrollments made meanwhile.
    """
    gallery = _gallery()
    try:
        with progress_bar("copying", enabled=not json_out and sys.stderr.isatty()) as update:
            result = gallery.migrate_index(to, progress=update)
    finally:
        gallery.close()
    if json_out:
        emit_json(result)
        return
    check = result["check"]
    console.print(
        f"copied {result['copied']} template(s) to {result['target']['url']} "
        f"({result['already_there']} already there, {result['removed_from_target']} stale removed); "
        f"it now holds {result['target_count']}. Check: {check['same_best_hit']}/{check['searched']} "
        f"searches gave the same best hit in both indexes.\n"
        f"To search there from now on: export FACETRACE_VECTOR_URL='{to}'",
        markup=False,
        highlight=False,
        soft_wrap=True,  # keep the export line whole, for copying
    )


def _summary(info: dict[str, Any]) -> str:
    if info.get("backend") == "faiss":
        text = f"FAISS {info['factory']}"
        if info.get("nprobe"):
            text += f" (nprobe {info['nprobe']})"
        if info.get("bytes_per_template"):
            text += f", {info['bytes_per_template']:.0f} bytes per template"
        return text
    return f"{info.get('backend')} {info.get('url', '')}"


def register(index_app: typer.Typer) -> None:
    """Add the index commands to ``facetrace index``."""
    index_app.command("rebuild")(index_rebuild)
    index_app.command("info")(index_info)
    index_app.command("migrate")(index_migrate)
