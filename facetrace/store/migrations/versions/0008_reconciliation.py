"""reconciliation beyond the face: descriptors, kinds of case, marks, effects, primary references,
lead basis and reopening, identification levels

Every new field starts unknown: reports and cases get empty descriptors ({}); a case's kind follows
its condition (deceased -> deceased, alive -> living); leads are face leads; identifications made
before this migration stay *confirmed* (they were established under the policy of their time, and
their families may have been told), new ones start preliminary.

Revision ID: 0008_reconciliation
Revises: 0007_settings
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_reconciliation"
down_revision = "0007_settings"
branch_labels = None
depends_on = None

ONE_RECORD = "(report_id IS NULL) <> (case_id IS NULL)"


def _record_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), sa.ForeignKey("reports.id", ondelete="CASCADE"), nullable=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _indexes(table: str) -> None:
    op.create_index(f"ix_{table}_report_id", table, ["report_id"])
    op.create_index(f"ix_{table}_case_id", table, ["case_id"])


def _add_reference(table: str, column: str, target: str) -> None:
    """Add a nullable foreign-key column (no ON DELETE action: erasure clears it). SQLite takes
    REFERENCES in ADD COLUMN (alembic will not render it there); PostgreSQL gets the column and its
    constraint from alembic."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES {target}(id)")
        return
    op.add_column(table, sa.Column(column, sa.Integer(), sa.ForeignKey(f"{target}.id"), nullable=True))


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy of these tables: on SQLite a batch copy drops the old
    # table, and with foreign keys on that deletes (cascades to) every review, evidence item and
    # identification. So on SQLite the new CHECKs of old tables live in the workflow's checks only.
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("reports", sa.Column("descriptors", sa.JSON(), server_default="{}", nullable=False))
    op.add_column("cases", sa.Column("descriptors", sa.JSON(), server_default="{}", nullable=False))
    op.add_column("cases", sa.Column("kind", sa.String(length=20), server_default="deceased", nullable=False))
    op.execute("UPDATE cases SET kind = 'living' WHERE condition = 'alive'")
    _add_reference("cases", "parent_case_id", "cases")
    op.create_index("ix_cases_parent_case_id", "cases", ["parent_case_id"])
    op.add_column("leads", sa.Column("basis", sa.String(length=20), server_default="face", nullable=False))
    op.add_column("leads", sa.Column("secondary", sa.JSON(), nullable=True))
    op.add_column("leads", sa.Column("adjusted_fpir", sa.Float(), nullable=True))
    op.add_column("leads", sa.Column("reopened_after_review_id", sa.Integer(), nullable=True))
    _add_reference("leads", "reopened_by_id", "users")
    op.add_column("leads", sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("leads", sa.Column("reopen_rationale", sa.Text(), nullable=True))
    op.add_column(
        "identifications", sa.Column("level", sa.String(length=20), server_default="confirmed", nullable=False)
    )
    op.add_column("identifications", sa.Column("level_basis", sa.Text(), nullable=True))
    _add_reference("identifications", "level_confirmed_by_id", "users")
    op.add_column("identifications", sa.Column("level_confirmed_at", sa.DateTime(timezone=True), nullable=True))
    if postgres:
        op.create_check_constraint("ck_cases_kind", "cases", "kind IN ('deceased', 'living', 'detained', 'body_part')")
        op.create_check_constraint("ck_leads_basis", "leads", "basis IN ('face', 'face_and_secondary', 'marks')")
        op.create_check_constraint(
            "ck_identifications_level", "identifications", "level IN ('preliminary', 'confirmed')"
        )
    op.create_table(
        "marks",
        *_record_columns(),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("region", sa.String(length=30), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=True),
        sa.Column("aspect", sa.String(length=10), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint(ONE_RECORD, name="ck_marks_one_record"),
    )
    _indexes("marks")
    op.create_table(
        "mark_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mark_id", sa.Integer(), sa.ForeignKey("marks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("added_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id"),
    )
    op.create_index("ix_mark_photos_mark_id", "mark_photos", ["mark_id"])
    op.create_table(
        "effects",
        *_record_columns(),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("colour", sa.String(length=100), nullable=False),
        sa.Column("inscription", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint(ONE_RECORD, name="ck_effects_one_record"),
    )
    _indexes("effects")
    op.create_table(
        "primary_references",
        *_record_columns(),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("holder", sa.String(length=300), nullable=False),
        sa.Column("sample_reference", sa.String(length=300), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint(ONE_RECORD, name="ck_primary_references_one_record"),
    )
    _indexes("primary_references")


def downgrade() -> None:
    for table in ("primary_references", "effects", "mark_photos", "marks"):
        op.drop_table(table)
    op.drop_index("ix_cases_parent_case_id", table_name="cases")
    for table, columns in (
        ("identifications", ("level_confirmed_at", "level_confirmed_by_id", "level_basis", "level")),
        (
            "leads",
            (
                "reopen_rationale",
                "reopened_at",
                "reopened_by_id",
                "reopened_after_review_id",
                "adjusted_fpir",
                "secondary",
                "basis",
            ),
        ),
        ("cases", ("parent_case_id", "kind", "descriptors")),
        ("reports", ("descriptors",)),
    ):
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column)
