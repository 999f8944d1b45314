"""records schema: calls, call_events, dispatches, operators, blocklist, audit, referrals

Revision ID: 0001
Revises:
Create Date: 2026-11-26 13:50:58.489305
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "block_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_block_audit_number_at", "block_audit", ["number", "at"], unique=False)
    op.create_table(
        "blocklist",
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "call_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_call_events_call_seq", "call_events", ["call_id", "seq"], unique=False)
    op.create_index(
        "ix_call_events_dispatch",
        "call_events",
        [sa.literal_column("(data ->> 'dispatch_id')")],
        unique=False,
        postgresql_where=sa.text("(data ->> 'dispatch_id') IS NOT NULL"),
    )
    op.create_table(
        "calls",
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("caller_raw", sa.Text(), nullable=True),
        sa.Column("caller", sa.Text(), nullable=True),
        sa.Column("line_type", sa.Text(), nullable=True),
        sa.Column("trunk", sa.Text(), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("operator_answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agency_bridged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column("operator", sa.Text(), nullable=True),
        sa.Column("disposition", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column(
            "agencies", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("priority", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "flags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("recording_path", sa.Text(), nullable=True),
        sa.Column("recording_seconds", sa.Float(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("call_id"),
    )
    op.create_index("ix_calls_arrived_at", "calls", ["arrived_at"], unique=False)
    op.create_index("ix_calls_caller_arrived_at", "calls", ["caller", "arrived_at"], unique=False)
    op.create_index("ix_calls_disposition", "calls", ["disposition"], unique=False)
    op.create_table(
        "dispatches",
        sa.Column("dispatch_id", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("agency", sa.Text(), nullable=True),
        sa.Column("line", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("moving_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("dispatch_id"),
    )
    op.create_index("ix_dispatches_call_id", "dispatches", ["call_id"], unique=False)
    op.create_index(
        "ix_dispatches_open",
        "dispatches",
        ["requested_at"],
        unique=False,
        postgresql_where=sa.text("moving_at IS NULL"),
    )
    op.create_table(
        "operator_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        "ix_operator_events_operator_at", "operator_events", ["operator", "at"], unique=False
    )
    op.create_table(
        "operators",
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("operator"),
    )
    op.create_table(
        "referrals",
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "referred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("number"),
    )


def downgrade() -> None:
    op.drop_table("referrals")
    op.drop_table("operators")
    op.drop_index("ix_operator_events_operator_at", table_name="operator_events")
    op.drop_table("operator_events")
    op.drop_index(
        "ix_dispatches_open", table_name="dispatches", postgresql_where=sa.text("moving_at IS NULL")
    )
    op.drop_index("ix_dispatches_call_id", table_name="dispatches")
    op.drop_table("dispatches")
    op.drop_index("ix_calls_disposition", table_name="calls")
    op.drop_index("ix_calls_caller_arrived_at", table_name="calls")
    op.drop_index("ix_calls_arrived_at", table_name="calls")
    op.drop_table("calls")
    op.drop_index(
        "ix_call_events_dispatch",
        table_name="call_events",
        postgresql_where=sa.text("(data ->> 'dispatch_id') IS NOT NULL"),
    )
    op.drop_index("ix_call_events_call_seq", table_name="call_events")
    op.drop_table("call_events")
    op.drop_table("blocklist")
    op.drop_index("ix_block_audit_number_at", table_name="block_audit")
    op.drop_table("block_audit")
