"""Alembic environment: runs on a connection given by facetrace, or on the configured URL."""

from __future__ import annotations

import contextlib

from alembic import context
from sqlalchemy import create_engine

import facetrace.store.accounts  # noqa: F401  (registers the accounts and audit tables on Base)
import facetrace.store.jobs  # noqa: F401
import facetrace.store.rate_buckets  # noqa: F401
from facetrace.store.models import Base

with contextlib.suppress(ImportError):  # being written
    import facetrace.store.reconciliation_models  # noqa: F401  (marks, effects, primary references)
    import facetrace.store.workflow_models  # noqa: F401

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run_on(conn)


def _run_on(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
