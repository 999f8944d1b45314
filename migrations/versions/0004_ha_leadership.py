"""ha_leader (which daemon is active, its epoch and heartbeat) and operator_choices (what each
operator chose, idle since when: shared by the daemons and the PBX nodes)

Revision ID: 0004_ha
Revises: 0003
Create Date: 2026-11-30 07:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_ha"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ha_leader",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=True),
        sa.Column("epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("beat", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO ha_leader (id) VALUES (1)")
    op.create_table(
        "operator_choices",
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("chosen", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("idle_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("operator"),
    )


def downgrade() -> None:
    op.drop_table("operator_choices")
    op.drop_table("ha_leader")
