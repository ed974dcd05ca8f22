"""Key rotation: re-encrypt every encrypted value, media file and index file with a new key.

Each value carries the id of the key that sealed it, so the work left is always visible in the data
itself: rows are rewritten in small committed batches and files one at a time (atomically), and a
rerun after a crash (with the new key and the old one) only rewrites what is still sealed with
another key or still plaintext. The same walk encrypts a gallery that was stored unencrypted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, LargeBinary, Table, Text, func, select, type_coerce, update
from sqlalchemy.types import TypeEngine

from facetrace.crypto import Keyring, text_blob
from facetrace.errors import ConfigError, FacetraceError
from facetrace.faults import fault_point
from facetrace.index.backends import IndexCorrupt, reseal_faiss_file
from facetrace.store.audit import append_event
from facetrace.store.db import Database
from facetrace.store.media import MediaStore
from facetrace.store.models import Base
from facetrace.store.schema import EncryptedColumn, encrypted_columns

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, int], None]  # done, total, errors
BATCH = 500
_RAW: dict[str, TypeEngine[Any]] = {"bytes": LargeBinary(), "text": Text(), "json": JSON()}


@dataclass
class RotationOutcome:
    """What one rotation run did."""

    key_id: str | None
    columns: dict[str, dict[str, int]] = field(default_factory=dict)  # "table.column": resealed / current
    media: dict[str, int] = field(default_factory=lambda: {"resealed": 0, "current": 0})
    index_files: dict[str, int] = field(default_factory=lambda: {"resealed": 0, "unreadable": 0})
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        resealed = sum(c["resealed"] for c in self.columns.values()) + self.media["resealed"]
        return {
            "key_id": self.key_id,
            "values_resealed": resealed,
            "columns": self.columns,
            "media": self.media,
            "index_files": self.index_files,
            "seconds": round(self.seconds, 1),
        }


def _table(column: EncryptedColumn) -> Table:
    table = Base.metadata.tables[column.table]
    assert isinstance(table, Table)
    return table


def _is_current(keyring: Keyring, kind: str, raw: Any) -> bool:
    if raw is None:
        return True
    if kind == "bytes":
        return keyring.is_current(bytes(raw))
    if kind == "text":
        return keyring.is_current_text(str(raw))
    # json: a sealed document is a JSON string "fte1:..."; anything else is a plaintext document
    if isinstance(raw, str) and text_blob(raw) is not None:
        return keyring.is_current_text(raw)
    return not keyring.enabled


def _reseal(keyring: Keyring, column: EncryptedColumn, raw: Any) -> Any:
    context = column.context
    if column.kind == "bytes":
        return keyring.seal(keyring.open(bytes(raw), context), context)
    if column.kind == "text":
        return keyring.seal_text(keyring.open_text(str(raw), context), context)
    if isinstance(raw, str) and text_blob(raw) is not None:
        document = keyring.open_text(raw, context)
    else:
        document = json.dumps(raw, separators=(",", ":"))
    return keyring.seal_text(document, context)


def pending(db: Database, keyring: Keyring) -> dict[str, int]:
    """Return, per encrypted column, how many stored values are not sealed with ``keyring``'s primary key
    (what a rotation has left to do). Reads every value's header, not its plaintext."""
    out: dict[str, int] = {}
    for column in encrypted_columns():
        table = _table(column)
        raw = type_coerce(table.c[column.column], _RAW[column.kind])
        count = 0
        with db.engine.connect() as conn:
            for (value,) in conn.execute(select(raw)).yield_per(5000):
                count += not _is_current(keyring, column.kind, value)
        out[f"{column.table}.{column.column}"] = count
    return out


def rotate(
    db: Database,
    keyring: Keyring,
    *,
    media_dir: Path,
    index_dir: Path,
    actor: str | None,
    source: str | None = "cli",
    progress: ProgressFn | None = None,
    batch: int = BATCH,
) -> RotationOutcome:
    """Rewrite every encrypted value, media file and FAISS index file sealed with ``keyring``'s primary key;
    return what was done. ``keyring`` must also hold every key the data is sealed with now.

    Audited (``key.rotate``, with key ids and counts, never keys), and once more on failure.

    Raises:
        ConfigError: ``keyring`` has no primary key.
        DecryptionError: a value is sealed with a key that ``keyring`` lacks, or fails authentication
            (nothing after it is rewritten; what was rewritten stays rewritten: fix and rerun).
    """
    if not keyring.enabled:
        raise ConfigError("a rotation needs the new key")
    started = time.perf_counter()
    outcome = RotationOutcome(key_id=keyring.key_ids[0])
    columns = encrypted_columns()
    media = MediaStore(media_dir, keyring=keyring)
    files = media.files()
    index_files = sorted(index_dir.glob("*.faiss")) if index_dir.exists() else []
    with db.engine.connect() as conn:
        counts = {
            c: int(
                conn.execute(
                    select(func.count()).select_from(_table(c)).where(_table(c).c[c.column].is_not(None))
                ).scalar()
                or 0
            )
            for c in columns
        }
    total = sum(counts.values()) + len(files) + len(index_files)
    done = 0
    try:
        for column in columns:
            stats = outcome.columns[f"{column.table}.{column.column}"] = {"resealed": 0, "current": 0}
            table = _table(column)
            ident = table.c.id
            raw = type_coerce(table.c[column.column], _RAW[column.kind])
            last = None
            while True:
                stmt = select(ident, raw).where(raw.is_not(None)).order_by(ident).limit(batch)
                if last is not None:
                    stmt = stmt.where(ident > last)
                with db.engine.begin() as conn:
                    rows = conn.execute(stmt).all()
                    if not rows:
                        break
                    for row_id, value in rows:
                        if _is_current(keyring, column.kind, value):
                            stats["current"] += 1
                            continue
                        new = _reseal(keyring, column, value)
                        conn.execute(
                            update(table)
                            .where(ident == row_id)
                            .values({column.column: type_coerce(new, _RAW[column.kind])})
                        )
                        stats["resealed"] += 1
                    last = rows[-1][0]
                done += len(rows)
                if progress:
                    progress(done, total, 0)
                fault_point("key.rotate.batch")
        for path in files:
            if media.reseal(path):
                outcome.media["resealed"] += 1
            else:
                outcome.media["current"] += 1
            done += 1
            if progress:
                progress(done, total, 0)
        for path in index_files:
            try:
                reseal_faiss_file(path, keyring)
            except IndexCorrupt as exc:  # rebuilt from the database when next opened
                log.warning("index file %s not re-encrypted: %s", path.name, exc)
                outcome.index_files["unreadable"] += 1
            else:
                outcome.index_files["resealed"] += 1
            done += 1
            if progress:
                progress(done, total, 0)
    except FacetraceError as exc:
        outcome.seconds = time.perf_counter() - started
        _audit(db, actor, source, "error", {**outcome.as_dict(), "error": exc.message})
        raise
    db.purge_deleted()  # no copy of a rewritten row lingers in SQLite's write-ahead log
    outcome.seconds = time.perf_counter() - started
    _audit(db, actor, source, "ok", outcome.as_dict())
    return outcome


def _audit(db: Database, actor: str | None, source: str | None, outcome: str, detail: dict[str, Any]) -> None:
    with db.session() as session:
        append_event(session, actor=actor, action="key.rotate", outcome=outcome, source=source, detail=detail)
