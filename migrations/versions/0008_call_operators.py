"""calls.operators: every operator the call was connected to, in order (a citizen whose
operator's desk phone died, or whose operator left while the daemon was away, goes back to the
queue and is connected to another: `operator` stays the first, `operators` names both), filled
for the calls already stored from their events

Revision ID: 0008_operators
Revises: 0007_callbacks_state
Create Date: 2026-12-04 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0008_operators"
down_revision = "0007_callbacks_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("operators", ARRAY(sa.Text), nullable=False,
                                     server_default=sa.text("'{}'")))
    op.execute(
        """
        UPDATE calls c SET operators = o.operators
        FROM (
          SELECT call_id, array_agg(data->>'operator' ORDER BY at, seq) AS operators
          FROM call_events
          WHERE type = 'connected'
          GROUP BY call_id
        ) o
        WHERE o.call_id = c.call_id
        """
    )


def downgrade() -> None:
    op.drop_column("calls", "operators")
