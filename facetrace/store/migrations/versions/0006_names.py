"""names across scripts: reports and persons carry an indexed normalised name key

``name_key`` is the name as :func:`facetrace.store.names.name_key` writes it (Cyrillic and Latin
spellings, diacritics and transliteration variants folded: Melnyk, Мельник, Mel'nik -> melnik); the
models set it with every name, and this migration fills it for the rows that exist. Names are stored
in clear (docs/security.md), so the key is too.

Revision ID: 0006_names
Revises: 0005
Create Date: 2026-12-07 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facetrace.store.names import name_key

revision = "0006_names"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("reports", "persons")
BATCH = 1000


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("name_key", sa.Text(), nullable=False, server_default=""))
            batch.create_index(f"ix_{table}_name_key", ["name_key"])
    conn = op.get_bind()
    for table in TABLES:
        rows = sa.table(table, sa.column("id", sa.Integer()), sa.column("name", sa.String()))
        keys = sa.table(table, sa.column("id", sa.Integer()), sa.column("name_key", sa.Text()))
        last = 0
        while True:  # in batches by id: a large gallery is never held in memory at once
            batch_rows = conn.execute(
                sa.select(rows.c.id, rows.c.name).where(rows.c.id > last).order_by(rows.c.id).limit(BATCH)
            ).all()
            if not batch_rows:
                break
            conn.execute(
                keys.update().where(keys.c.id == sa.bindparam("row_id")).values(name_key=sa.bindparam("key")),
                [{"row_id": row_id, "key": name_key(name or "")} for row_id, name in batch_rows],
            )
            last = batch_rows[-1][0]


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_name_key")
            batch.drop_column("name_key")
