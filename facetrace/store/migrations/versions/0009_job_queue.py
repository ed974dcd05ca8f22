"""a durable job queue shared by several processes; search rate limits shared by them

``jobs``: the worker (host:pid:id) that claimed a running job, its last heartbeat, how many times
it was started, and a cancel request that the process running it reads at its next progress report.
``rate_buckets``: the search token buckets, one row per user or client address (PostgreSQL
deployments with several processes; the SQLite default keeps them in the server's memory).

Revision ID: 0009_job_queue
Revises: 0008_reconciliation
Create Date: 2026-12-07 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_job_queue"
down_revision = "0008_reconciliation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("refusing", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    with op.batch_alter_table("jobs") as batch:
        for column in ("cancel_requested", "attempts", "heartbeat_at", "worker"):
            batch.drop_column(column)
