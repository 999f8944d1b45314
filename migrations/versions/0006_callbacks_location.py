"""callbacks (citizens to call back, derived from the calls' records), calls.location (the
caller's latest location) and calls.callback_of (a callback call: the call it returns)

Revision ID: 0006_callbacks
Revises: 0005_note
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_callbacks"
down_revision = "0005_note"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("location", postgresql.JSONB(), nullable=True))
    op.add_column("calls", sa.Column("callback_of", sa.Text(), nullable=True))
    op.create_index("ix_calls_callback_of", "calls", ["callback_of"],
                    postgresql_where=sa.text("callback_of IS NOT NULL"))
    op.create_table(
        "callbacks",
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("caller_raw", sa.Text()),
        sa.Column("line_type", sa.Text()),
        sa.Column("trunk", sa.Text()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("closed_by_call", sa.Text()),
        sa.Column("closed_reason", sa.Text()),
        sa.PrimaryKeyConstraint("call_id"),
    )
    op.create_index("ix_callbacks_caller", "callbacks", ["caller"])
    op.create_index("ix_callbacks_open", "callbacks", ["ended_at"],
                    postgresql_where=sa.text("closed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_callbacks_open", table_name="callbacks")
    op.drop_index("ix_callbacks_caller", table_name="callbacks")
    op.drop_table("callbacks")
    op.drop_index("ix_calls_callback_of", table_name="calls")
    op.drop_column("calls", "callback_of")
    op.drop_column("calls", "location")
