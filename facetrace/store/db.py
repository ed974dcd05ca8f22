"""Database access: engine, sessions and schema migrations (Alembic, from the first version)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Integer, String, cast, create_engine, event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import facetrace.store.rate_buckets  # noqa: F401  (shared search rate limits)
import facetrace.store.reconciliation_models  # noqa: F401  (marks, effects, primary references)
import facetrace.store.workflow_models  # noqa: F401  (every table joins Base.metadata: VACUUM names only known ones)
from facetrace.config import get_settings
from facetrace.crypto import Keyring
from facetrace.errors import ConfigError
from facetrace.store.crypto import attach_keyring
from facetrace.store.models import Base, Meta

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
GALLERY_VERSION = "gallery_version"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets searches read while an import writes; foreign keys make erasure cascade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Erasure must not leave deleted rows (templates, names) readable in free pages of the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _transactional_sqlite_ddl(conn: Any) -> Any:
    """SQLite: make the migration one transaction; return the driver connection (None for other databases).

    Python's sqlite3 runs DDL outside any transaction (it only opens one before INSERT/UPDATE/DELETE), so a
    crash in the middle of a migration (kill -9 during the first ``facetrace init``) left some tables created
    and no schema revision recorded: every later open failed with "table ... already exists". With the
    driver's implicit transactions off and an explicit BEGIN, the whole migration commits or none of it.
    """
    if conn.dialect.name != "sqlite":
        return None
    driver = conn.connection.driver_connection
    driver.isolation_level = None
    return driver


class Database:
    """One database (SQLite or PostgreSQL) at ``url``, migrated to the newest schema on open.

    ``keyring`` seals and opens the encrypted columns (:mod:`facetrace.store.crypto`); None: the keys
    configured in the environment (``FACETRACE_KEY_FILE`` / ``FACETRACE_KEY``).
    """

    def __init__(self, url: str, *, migrate: bool = True, keyring: Keyring | None = None) -> None:
        self.url = url
        if keyring is None:
            keyring = get_settings().keyring
        self.keyring = keyring
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        except Exception as exc:  # bad URL or driver
            raise ConfigError(f"cannot open database {self.safe_url}: {exc}") from None
        attach_keyring(self.engine, keyring)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<invalid database url>"

    @property
    def single_process(self) -> bool:
        """Whether only one process may use this database (SQLite, the embedded default); PostgreSQL
        serves several server and worker processes."""
        return self.engine.dialect.name == "sqlite"

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` (default: newest) when it is behind.

        Raises:
            ConfigError: the database cannot be reached.
        """
        try:
            if revision == "head" and self.current_revision() == self.head_revision():
                return
            with self.engine.connect() as conn:
                sqlite = _transactional_sqlite_ddl(conn)
                try:
                    with conn.begin():
                        if sqlite is not None:
                            conn.exec_driver_sql("BEGIN IMMEDIATE")
                        cfg = alembic_config(self.url)
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, revision)
                finally:
                    if sqlite is not None:
                        sqlite.isolation_level = ""  # back to the driver's default for the pool
        except OperationalError as exc:
            raise ConfigError(f"cannot open database {self.safe_url}: {exc.orig}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @staticmethod
    def bump_gallery_version(session: Session) -> None:
        """Record, in the caller's transaction, that the gallery's faces changed."""
        # Incremented in SQL, not read-modify-write: two concurrent writers on PostgreSQL (read
        # committed) would otherwise both write the same number and one change would go unseen.
        bumped = session.execute(
            update(Meta)
            .where(Meta.key == GALLERY_VERSION)
            .values(value=cast(cast(Meta.value, Integer) + 1, String))
            .execution_options(synchronize_session=False)
        )
        if not bumped.rowcount:  # type: ignore[attr-defined]
            session.add(Meta(key=GALLERY_VERSION, value="1"))
            session.flush()

    def gallery_version(self) -> int:
        with self.sessions() as session:
            value = session.execute(select(Meta.value).where(Meta.key == GALLERY_VERSION)).scalar()
            return int(value) if value else 0

    def purge_deleted(self, tables: tuple[str, ...] = (), *, full: bool = False) -> None:
        """Make erased rows unreadable in the database's own files, best effort.

        SQLite: move committed changes into the database file and empty the write-ahead log (with
        ``secure_delete`` on, freed pages were already zeroed). PostgreSQL: VACUUM ``tables``, so that
        the dead row versions of erased rows are removed from their pages (VACUUM cannot run in a
        transaction: an autocommit connection). A plain VACUUM may leave an erased row's bytes in the
        page's free space until it is reused; ``full`` rewrites the tables (VACUUM FULL: no old bytes
        left in the database files, but the tables are locked while it runs). PostgreSQL's write-ahead
        log, replicas and backups keep old pages until they are recycled or expire: see docs/retention.md.
        """
        if self.engine.dialect.name == "postgresql":
            self._vacuum(tables, full=full)
            return
        if self.engine.dialect.name != "sqlite":
            return
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except OperationalError as exc:  # busy: the next checkpoint will do it
            log.info("WAL checkpoint after erasure postponed: %s", exc.orig)

    def _vacuum(self, tables: tuple[str, ...], *, full: bool) -> None:
        if not tables:
            return
        known = set(Base.metadata.tables)
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in tables:
                    if table in known:  # only our own table names reach the SQL text
                        conn.exec_driver_sql(f'VACUUM {"FULL " if full else ""}"{table}"')
        except OperationalError as exc:  # e.g. a lock timeout: autovacuum will do it later
            log.warning("VACUUM after erasure postponed: %s", exc.orig)

    def dispose(self) -> None:
        self.engine.dispose()
