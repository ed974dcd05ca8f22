"""settings saved in the product (organisation, SMTP, notification languages, review policy); edited drafts

One row per saved setting (``facetrace.store.settings_store``): its key and its value as JSON text,
sealed like the other encrypted columns when a key is set (so the SMTP password is never stored in
the clear then). A deployment's ``FACETRACE_*`` variables still win over a saved value.

``notifications.edited_at``: when the drafter edited a draft's text by hand (NULL: as rendered).

Revision ID: 0007_settings
Revises: 0006_names
Create Date: 2026-12-07 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_settings"
down_revision = "0006_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.add_column("notifications", sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("edited_at")
    op.drop_table("settings")
