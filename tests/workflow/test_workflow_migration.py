"""Migrations at head match the models; 0003 (workflow) goes down to 0002 and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from facetrace.store.db import alembic_config
from facetrace.store.models import Base
from facetrace.workflow import Workflow

WORKFLOW_TABLES = {
    "reports",
    "contacts",
    "cases",
    "case_images",
    "leads",
    "reviews",
    "evidence",
    "identifications",
    "duplicate_flags",
    "notifications",
    "notification_attempts",
}


def _table_of(diff: object) -> str:
    """Return the table an Alembic autogenerate difference is about."""
    item = diff[0] if isinstance(diff, list) else diff
    assert isinstance(item, tuple)
    op = str(item[0])
    if op.endswith("_table"):
        return str(item[1].name)
    if op.endswith(("_index", "_constraint", "_fk")):
        return str(item[1].table.name)
    return str(item[2])  # add_column, remove_column, modify_*: (op, schema, table, ...)


def test_migration_matches_the_models_and_downgrades(wf: Workflow) -> None:
    db = wf.db
    assert db.current_revision() == db.head_revision()
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diffs == [], [(_table_of(d), d) for d in diffs]
    assert set(inspect(db.engine).get_table_names()) >= WORKFLOW_TABLES

    with db.engine.begin() as conn:
        cfg = alembic_config(db.url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    assert not WORKFLOW_TABLES & set(inspect(db.engine).get_table_names())
    assert "users" in inspect(db.engine).get_table_names()
    db.migrate()
    assert db.current_revision() == db.head_revision()
    assert set(inspect(db.engine).get_table_names()) >= WORKFLOW_TABLES
