"""Backup and restore of a data home: the database, media files, index files, calibration and templates.

Archive: a tar file (gzip-compressed when its name ends in ``.gz``/``.tgz``) with

- ``db/TABLE.jsonl``: a logical dump of each table (a header line with the column names, then one JSON
  array per row; bytes as base64, dates as ISO text). Taken from one consistent snapshot while the
  server may be running: SQLite through its online backup API (a copy of the file at one instant),
  PostgreSQL in one REPEATABLE READ transaction. A logical dump rather than ``pg_dump`` because it
  restores into SQLite *or* PostgreSQL (a gallery can move between them), needs no client tools of the
  server's exact version, and copies every value exactly as stored.
- ``media/...``: the media files that the snapshot's images use (content-addressed, so a file is
  never changed, only added or erased; one erased after the snapshot is listed as missing).
- ``home/...``: the calibration file, notification templates and FAISS index files (an index is
  brought in line with the database when the restored gallery opens, so a copy slightly newer or
  older than the snapshot is repaired, and a missing or damaged one is rebuilt from the database).
- ``manifest.json``: format, facetrace version, schema revision, source database kind, row counts
  and the sha256 and size of every other member.

Encryption at rest: values and files are copied as stored, never decrypted, so an encrypted
deployment's backup holds ciphertext; the key (``FACETRACE_KEY_FILE`` / ``FACETRACE_KEY``) is never
put into an archive, and the restored home needs the same key.

Restore checks every member's checksum before writing anything, refuses a non-empty home or target
database and member names that would leave the home, creates the schema at the archive's revision,
loads the rows, then migrates to the newest revision.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from alembic import command
from sqlalchemy import Date, DateTime, LargeBinary, MetaData, Table, create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url

from facetrace import __version__
from facetrace.config import Settings
from facetrace.errors import ConfigError, FacetraceError
from facetrace.store.db import Database, alembic_config

FORMAT = "facetrace-backup/1"
MANIFEST = "manifest.json"
ProgressFn = Callable[[int, int, int], None]  # done, total, errors
_CHUNK = 1 << 20
#: What reading a damaged (truncated, garbled) tar or gzip stream raises.
_DAMAGED = (tarfile.TarError, OSError, EOFError, zlib.error)
_ROWS = 1000


class BackupError(FacetraceError):
    """An archive that cannot be written or restored (corrupt, unsafe, or a target not empty)."""

    code = "backup_error"
    status = 422


# -- backup ---------------------------------------------------------------------------------------
def create_backup(settings: Settings, out: Path, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Write a backup archive of the data home of ``settings`` to ``out``; return its manifest.

    The archive is written under a temporary name and renamed when complete.

    Raises:
        BackupError: ``out`` exists already.
        ConfigError: the database cannot be opened.
    """
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists already; choose a new file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    if settings.db_url.startswith("sqlite:///") and not Path(settings.db_url.removeprefix("sqlite:///")).is_file():
        raise BackupError(f"no database in {settings.home}: nothing to back up")
    # Not migrated: a backup taken before an upgrade keeps the schema it was taken at.
    database = Database(settings.db_url, migrate=False)
    members: dict[str, dict[str, Any]] = {}
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _open_tar_for_write(tmp, out.name) as tar, tempfile.TemporaryDirectory(prefix="facetrace-backup-") as work:
            with _snapshot(database, Path(work)) as conn:
                try:
                    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                except Exception:
                    raise BackupError(f"{database.safe_url} is not a facetrace database") from None
                counts, media = _dump_tables(conn, tar, members, Path(work))
            files = _home_files(settings)
            total = len(media) + len(files)
            missing: list[str] = []
            done = 0
            for rel in media:
                source = settings.media_dir / rel
                if _safe_member(f"media/{rel}") and source.is_file():
                    _add_file(tar, members, f"media/{rel}", source)
                else:
                    missing.append(rel)
                done += 1
                if progress:
                    progress(done, total, len(missing))
            for name, source in files:
                _add_file(tar, members, f"home/{name}", source)
                done += 1
                if progress:
                    progress(done, total, len(missing))
            manifest = {
                "format": FORMAT,
                "facetrace_version": __version__,
                "created_at": datetime.now(UTC).isoformat(),
                "schema_revision": revision,
                "database": database.engine.dialect.name,
                "vector_url": _safe_vector_url(settings.vector_url),
                "encrypted_at_rest": _encrypted(settings),
                "rows": counts,
                "missing_media": missing,
                "members": members,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        database.dispose()
    return {k: v for k, v in manifest.items() if k != "members"} | {"archive": str(out), "files": len(members)}


def _encrypted(settings: Settings) -> bool:
    try:
        return bool(getattr(settings, "encrypted", False))
    except FacetraceError:
        return True  # a key is configured (but refused here): say the data may be ciphertext


def _safe_vector_url(url: str | None) -> str | None:
    if not url:
        return None
    return url.split("@")[-1] if "@" in url else url.split("?")[0]


@contextlib.contextmanager
def _open_tar_for_write(path: Path, name: str) -> Iterator[tarfile.TarFile]:
    mode = "w:gz" if name.endswith((".gz", ".tgz")) else "w"
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        yield tar


@contextlib.contextmanager
def _snapshot(database: Database, work: Path) -> Iterator[Connection]:
    """Yield a connection that sees the database at one instant."""
    if database.engine.dialect.name == "sqlite":
        source = database.url.removeprefix("sqlite:///")
        copy = work / "snapshot.db"
        src = sqlite3.connect(source, timeout=30)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # the online backup API: a consistent copy while others write
        finally:
            dst.close()
            src.close()
        engine = create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()
            copy.unlink(missing_ok=True)
        return
    with database.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        yield conn


def _tables(conn: Connection) -> list[Table]:
    meta = MetaData()
    meta.reflect(conn)
    return [t for t in meta.sorted_tables if t.name != "alembic_version"]


def _dump_tables(
    conn: Connection, tar: tarfile.TarFile, members: dict[str, dict[str, Any]], work: Path
) -> tuple[dict[str, int], list[str]]:
    counts: dict[str, int] = {}
    media: set[str] = set()
    for table in _tables(conn):
        path = work / f"{table.name}.jsonl"
        columns = [c.name for c in table.columns]
        order = [table.c[name] for name in columns if table.c[name].primary_key]
        n = 0
        with path.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps({"table": table.name, "columns": columns}) + "\n")
            result = conn.execution_options(yield_per=_ROWS).execute(table.select().order_by(*order))
            for row in result:
                handle.write(json.dumps([_encode(v) for v in row], ensure_ascii=False) + "\n")
                n += 1
                if table.name == "images":
                    media.add(str(row._mapping["media_path"]))
        counts[table.name] = n
        _add_file(tar, members, f"db/{table.name}.jsonl", path)
        path.unlink()
    return counts, sorted(media)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _home_files(settings: Settings) -> list[tuple[str, Path]]:
    """Return (name in the archive below ``home/``, path) of the calibration, templates and index files."""
    home = settings.home
    excluded = {
        p.resolve() for p in (getattr(settings, "key_file", None), getattr(settings, "previous_key_file", None)) if p
    }
    out: list[tuple[str, Path]] = []
    calibration = settings.calibration_path or home / "calibration.json"
    if calibration.is_file():
        out.append(("calibration.json", calibration))
    for folder in ("templates", "index"):
        root = home / folder
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    out.append((path.relative_to(home).as_posix(), path))
    return [(name, path) for name, path in out if path.resolve() not in excluded]


def _add_file(tar: tarfile.TarFile, members: dict[str, dict[str, Any]], name: str, path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        size = handle.tell()
        handle.seek(0)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(datetime.now(UTC).timestamp())
        tar.addfile(info, handle)
    members[name] = {"sha256": digest.hexdigest(), "size": size}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


# -- restore --------------------------------------------------------------------------------------
def read_manifest(archive: Path) -> dict[str, Any]:
    """Return the manifest of a backup archive.

    Raises:
        BackupError: not a readable archive, or no valid manifest in it.
    """
    with _open_tar(archive) as tar:
        return _manifest(tar)


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except FileNotFoundError:
        raise BackupError(f"{archive}: file not found") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive}: not a readable backup archive ({exc})") from None


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        handle = tar.extractfile(member)
        manifest = json.loads(handle.read()) if handle is not None else None
    except (KeyError, ValueError, *_DAMAGED) as exc:
        raise BackupError(f"the archive has no readable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"not a facetrace backup (expected format {FORMAT})")
    if not isinstance(manifest.get("members"), dict):
        raise BackupError(f"{MANIFEST} lists no members")
    return manifest


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(path.parts)
        and not path.is_absolute()
        and ".." not in path.parts
        and "\\" not in name
        and ":" not in path.parts[0]
        and path.parts[0] in ("db", "media", "home")
        and all(p not in ("", ".") for p in path.parts)
    )


def verify_archive(archive: Path, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Check every member of ``archive`` against its manifest (names, types, sizes, sha256) without
    writing anything; return the manifest.

    Raises:
        BackupError: a member is missing, extra, unsafe (absolute, ``..``, a link or device) or corrupt.
    """
    with _open_tar(archive) as tar:
        manifest = _manifest(tar)
        expected: dict[str, Any] = manifest["members"]
        for name in expected:
            if not _safe_member(name):
                raise BackupError(f"archive member {name!r} would leave the data home; refused")
        seen: set[str] = set()
        done = 0
        try:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if not _safe_member(member.name):
                    raise BackupError(f"archive member {member.name!r} would leave the data home; refused")
                if not member.isfile():
                    raise BackupError(f"archive member {member.name!r} is not a regular file; refused")
                want = expected.get(member.name)
                if want is None:
                    raise BackupError(f"archive member {member.name!r} is not in the manifest; refused")
                if member.name in seen:
                    raise BackupError(f"archive member {member.name!r} appears twice; refused")
                seen.add(member.name)
                handle = tar.extractfile(member)
                assert handle is not None
                digest, size = _hash_stream(handle)
                if size != want.get("size") or digest != want.get("sha256"):
                    raise BackupError(
                        f"archive member {member.name!r} is corrupt (checksum mismatch); nothing restored"
                    )
                done += 1
                if progress:
                    progress(done, 2 * len(expected), 0)
        except _DAMAGED as exc:
            raise BackupError(f"the archive is damaged ({exc}); nothing restored") from None
        missing = sorted(set(expected) - seen)
        if missing:
            raise BackupError(f"archive member {missing[0]!r} is missing ({len(missing)} in all); nothing restored")
    return manifest


def _hash_stream(handle: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def restore_backup(
    archive: Path, home: Path, *, database_url: str | None = None, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Restore ``archive`` into the new data home ``home`` (and the database at ``database_url``, default
    the home's SQLite file); return a summary. The index is not opened here: the caller opens the
    gallery, which brings the index in line with the restored database (or rebuilds it).

    Raises:
        BackupError: the archive is corrupt or unsafe, ``home`` is not empty, or the target database
            already holds tables. Nothing is left behind when a restore fails.
    """
    home = Path(home)
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise BackupError(f"{home} is not empty: restore into a new, empty data home")
    manifest = verify_archive(archive, progress=progress)
    url = database_url or f"sqlite:///{home / 'facetrace.db'}"
    engine = _target_engine(url)
    try:
        if inspect(engine).get_table_names():
            raise BackupError(f"the target database {_safe_url(url)} is not empty; restore into an empty one")
    except BackupError:
        engine.dispose()
        raise
    except Exception as exc:
        engine.dispose()
        raise ConfigError(f"cannot open database {_safe_url(url)}: {exc}") from None
    created_home = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    try:
        revision = manifest.get("schema_revision")
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, str(revision) if revision else "head")
        with _open_tar(archive) as tar:
            rows = _load_tables(engine, tar, manifest)
            files = _extract_files(tar, manifest, home, progress)
    except BaseException:
        engine.dispose()
        _undo(url, home, created_home)
        raise
    engine.dispose()
    database = Database(url)  # migrates an older revision to the newest
    try:
        head = database.current_revision()
    finally:
        database.dispose()
    return {
        "home": str(home),
        "database": _safe_url(url),
        "from_revision": manifest.get("schema_revision"),
        "schema_revision": head,
        "backup_created_at": manifest.get("created_at"),
        "facetrace_version": manifest.get("facetrace_version"),
        "rows": rows,
        "files": files,
        "missing_media": manifest.get("missing_media", []),
        "encrypted_at_rest": manifest.get("encrypted_at_rest", False),
    }


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid database url>"


def _target_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        make_url(url)
        # No foreign-key pragma on SQLite: rows are loaded table by table, links fixed up afterwards.
        return create_engine(url)
    except Exception as exc:
        raise ConfigError(f"cannot open database {_safe_url(url)}: {exc}") from None


def _load_tables(engine: Engine, tar: tarfile.TarFile, manifest: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        tables = {t.name: t for t in _tables(conn)}
        deferred: list[tuple[Table, str, list[tuple[Any, Any]]]] = []
        order = [t for t in tables.values()]
        for table in order:
            name = f"db/{table.name}.jsonl"
            if name not in manifest["members"]:
                continue
            handle = tar.extractfile(name)
            assert handle is not None
            lines = io.TextIOWrapper(handle, encoding="utf-8")
            header = json.loads(lines.readline())
            columns: list[str] = header["columns"]
            unknown = [c for c in columns if c not in table.c]
            if unknown:
                raise BackupError(
                    f"table {table.name}: column(s) {', '.join(unknown)} "
                    f"not in schema {manifest.get('schema_revision')}"
                )
            # A column pointing into its own table (merged_into_id, corrects_id) is loaded afterwards.
            self_refs = [c for c in columns if any(fk.column.table is table for fk in table.c[c].foreign_keys)]
            later: dict[str, list[tuple[Any, Any]]] = {c: [] for c in self_refs}
            batch: list[dict[str, Any]] = []
            n = 0
            for line in lines:
                values = json.loads(line)
                row = {c: _decode(table.c[c].type, v) for c, v in zip(columns, values, strict=True)}
                for column in self_refs:
                    if row[column] is not None:
                        later[column].append((row["id"], row[column]))
                        row[column] = None
                batch.append(row)
                n += 1
                if len(batch) >= _ROWS:
                    conn.execute(table.insert(), batch)
                    batch = []
            if batch:
                conn.execute(table.insert(), batch)
            counts[table.name] = n
            deferred.extend((table, column, pairs) for column, pairs in later.items() if pairs)
        for table, column, pairs in deferred:
            for row_id, value in pairs:
                conn.execute(table.update().where(table.c.id == row_id).values({column: value}))
        if engine.dialect.name == "postgresql":
            for table in order:
                if "id" in table.c and table.c.id.autoincrement and counts.get(table.name):
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f'(SELECT max(id) FROM "{table.name}"))'
                        )
                    )
    return counts


def _decode(column_type: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column_type, LargeBinary):
        return base64.b64decode(value)
    if isinstance(column_type, DateTime):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(column_type, Date):
        return date.fromisoformat(value)
    return value


def _extract_files(tar: tarfile.TarFile, manifest: dict[str, Any], home: Path, progress: ProgressFn | None) -> int:
    names = sorted(n for n in manifest["members"] if not n.startswith("db/"))
    total = 2 * len(manifest["members"])
    for number, name in enumerate(names, start=1):
        top, _, rest = name.partition("/")
        target = (home / "media" / rest) if top == "media" else (home / rest)
        if not target.resolve().is_relative_to(home.resolve()):
            raise BackupError(f"archive member {name!r} would leave the data home; refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tar.extractfile(name)
        assert handle is not None
        with target.open("wb") as out:
            shutil.copyfileobj(handle, out, _CHUNK)
        target.chmod(0o600)
        if progress:
            progress(len(manifest["members"]) + number, total, 0)
    return len(names)


def _undo(url: str, home: Path, created_home: bool) -> None:
    """Remove what a failed restore created: the home's contents and the tables it created."""
    if not url.startswith("sqlite:///"):
        with contextlib.suppress(Exception):
            engine = create_engine(url)
            meta = MetaData()
            meta.reflect(engine)
            meta.drop_all(engine)
            engine.dispose()
    if created_home:
        shutil.rmtree(home, ignore_errors=True)
    else:
        for child in home.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
