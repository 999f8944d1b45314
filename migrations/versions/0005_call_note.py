"""calls.note: the operator's free-text note on a call (the latest NOTE event), set from the
web console

Revision ID: 0005_note
Revises: 0004_ha
Create Date: 2026-11-30 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_note"
down_revision = "0004_ha"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("calls", "note")
