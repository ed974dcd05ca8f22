"""``facetrace key ...``: create an encryption key, rotate to a new one, show where encryption stands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from facetrace.cli.accounts import cli_actor
from facetrace.cli.output import console, emit_json, progress_bar
from facetrace.config import get_settings
from facetrace.crypto import Keyring, generate_key, key_id, keyring_from, read_key_file, write_key_file
from facetrace.errors import ConfigError
from facetrace.store.db import Database
from facetrace.store.rotation import pending, rotate

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
key_app = typer.Typer(help="Encryption at rest: create, rotate and inspect the operator's key.", no_args_is_help=True)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@key_app.command("generate")
def key_generate(
    path: Annotated[Path, typer.Argument(help="Where to write the new key file (outside the data home).")],
    json_out: JsonOpt = False,
) -> None:
    """Write a new random 256-bit key (base64) to PATH, readable by its owner only (mode 0600).

    Never overwrites a file. Keep the key apart from the data (another disk, a secrets mount) and
    keep a copy offline: without it the encrypted data cannot be read by anyone.
    """

    settings = get_settings()
    target = path.expanduser()
    if target.resolve().is_relative_to(settings.home.expanduser().resolve()):
        raise ConfigError(f"{target} is inside the data home {settings.home}: keep the key apart from the data")
    key = generate_key()
    write_key_file(target, key)
    read_key_file(target, home=settings.home)  # the same checks as on use
    kid = key_id(key).hex()
    if json_out:
        emit_json({"key_file": str(target), "key_id": kid})
    else:
        _say(f"key {kid} written to {target} (mode 0600)")
        _say(f"use it: FACETRACE_KEY_FILE={target}")
        _say(f"to encrypt existing data: facetrace key rotate --new-key-file {target}")


@key_app.command("rotate")
def key_rotate(
    new_key_file: Annotated[Path, typer.Option("--new-key-file", help="The key to encrypt everything with.")],
    old_key_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--old-key-file", help="A key the data is encrypted with now (repeatable). Default: the configured keys."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-encrypt every template, contact detail, notification, photo and index file with the new key.

    Also encrypts a gallery stored unencrypted (no old key needed). Resumable: after an interruption, run
    it again with the same keys; it rewrites only what is not yet encrypted with the new key. Stop the
    server first, or give it both keys (FACETRACE_KEY_FILE=NEW, FACETRACE_PREVIOUS_KEY_FILE=OLD). Then
    set FACETRACE_KEY_FILE to the new key; the old key is no longer needed.
    """

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    keyring = keyring_from(key_file=new_key_file, key=None, home=settings.home)
    for path in old_key_file or []:
        keyring = keyring.plus(Keyring([read_key_file(path, home=settings.home)]))
    if not old_key_file:
        keyring = keyring.plus(settings.keyring)
    db = Database(settings.db_url, keyring=keyring)
    try:
        with progress_bar("re-encrypting", enabled=not json_out and sys.stderr.isatty()) as update:
            outcome = rotate(
                db,
                keyring,
                media_dir=settings.media_dir,
                index_dir=settings.index_dir,
                actor=cli_actor(),
                progress=update,
            )
        left = sum(pending(db, Keyring([read_key_file(new_key_file, home=settings.home)])).values())
    finally:
        db.dispose()
    result: dict[str, Any] = {**outcome.as_dict(), "values_left": left}
    if json_out:
        emit_json(result)
        return
    media = outcome.media
    _say(
        f"key {outcome.key_id}: {result['values_resealed']} value(s) re-encrypted "
        f"({media['resealed']} photo(s), {outcome.index_files['resealed']} index file(s)) in {outcome.seconds:.1f}s"
    )
    if left:
        _say(f"{left} value(s) are still not encrypted with the new key (written meanwhile?): run it again")
    else:
        _say(f"done: set FACETRACE_KEY_FILE={new_key_file}; the old key is no longer needed")


@key_app.command("status")
def key_status(json_out: JsonOpt = False) -> None:
    """Show whether data is encrypted at rest, with which key, and how many values are not (yet)."""

    settings = get_settings()
    keyring = settings.keyring
    db = Database(settings.db_url, keyring=keyring)
    try:
        left = pending(db, keyring) if keyring.enabled else {}
    finally:
        db.dispose()
    result = {
        "encrypted": keyring.enabled,
        "key_ids": keyring.key_ids,
        "values_not_on_current_key": left,
        "vector_backend": "milvus (not encrypted by facetrace)" if settings.vector_url else "faiss",
    }
    if json_out:
        emit_json(result)
        return
    if not keyring.enabled:
        _say("encryption at rest is OFF: set FACETRACE_KEY_FILE (see `facetrace key generate`)")
        return
    _say(f"encryption at rest is on: key {keyring.key_ids[0]}")
    waiting = {k: v for k, v in left.items() if v}
    _say("every encrypted column is on the current key" if not waiting else f"not yet on the current key: {waiting}")
