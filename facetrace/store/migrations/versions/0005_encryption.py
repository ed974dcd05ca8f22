"""encryption at rest: encrypted text columns (contacts, notifications, photo names) become TEXT on PostgreSQL

With a key configured (FACETRACE_KEY_FILE) contact names, e-mail addresses and phone numbers, the
recipient, subject and bodies of notifications, and the original file names of photos are stored as
``fte1:`` + base64 of AES-256-GCM ciphertext (facetrace.store.crypto): about 4/3 of the plaintext
plus 60 characters, longer than the VARCHAR limits of 0001/0003. PostgreSQL enforces those limits,
so the columns become TEXT there (the application still limits the plaintext). SQLite does not
enforce declared lengths: its tables are left as they are (no table rebuild). Templates (BLOB/BYTEA)
and the persons' metadata (JSON) hold ciphertext without a schema change. No query filters on
these columns, so no blind index is needed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# table, column, length before this migration, nullable
COLUMNS = (
    ("images", "original_name", 500, False),
    ("contacts", "name", 300, False),
    ("contacts", "email", 320, True),
    ("contacts", "phone", 50, True),
    ("notifications", "recipient", 320, False),
    ("notifications", "subject", 500, False),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, length, nullable in COLUMNS:
        op.alter_column(
            table, column, type_=sa.Text(), existing_type=sa.String(length=length), existing_nullable=nullable
        )


def downgrade() -> None:
    # PostgreSQL refuses the change ("value too long") while encrypted values do not fit the old
    # lengths: nothing is truncated.
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, length, nullable in COLUMNS:
        op.alter_column(
            table, column, type_=sa.String(length=length), existing_type=sa.Text(), existing_nullable=nullable
        )
