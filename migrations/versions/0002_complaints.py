"""complaints (answered within 3x24 hours), and an index of calls without an end

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Text(), nullable=True),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "filed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.Text(), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_complaints_call_id", "complaints", ["call_id"], unique=False)
    op.create_index(
        "ix_complaints_open",
        "complaints",
        ["filed_at"],
        unique=False,
        postgresql_where=sa.text("answered_at IS NULL"),
    )
    op.create_index(
        "ix_calls_open",
        "calls",
        ["arrived_at"],
        unique=False,
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_calls_open", table_name="calls", postgresql_where=sa.text("ended_at IS NULL"))
    op.drop_index(
        "ix_complaints_open",
        table_name="complaints",
        postgresql_where=sa.text("answered_at IS NULL"),
    )
    op.drop_index("ix_complaints_call_id", table_name="complaints")
    op.drop_table("complaints")
