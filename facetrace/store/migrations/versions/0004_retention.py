"""retention dates: persons, reports and cases carry an optional retain_until

`facetrace retention apply` erases every record whose date has passed. NULL means no limit has
been set for the record (the operator's policy may still set one later).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("persons", "reports", "cases")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("retain_until", sa.DateTime(timezone=True), nullable=True))
            batch.create_index(f"ix_{table}_retain_until", ["retain_until"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_retain_until")
            batch.drop_column("retain_until")
