"""callbacks: the indexes a records batch finds the entries it can change by (a number's
entries by their closing time, entries by the call that closed them) and the one it finds an
entry's closing call by (a number's calls that reached an operator, by arrival)

Revision ID: 0007_callbacks_state
Revises: 0006_callbacks
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_callbacks_state"
down_revision = "0006_callbacks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_callbacks_caller_closed_at", "callbacks", ["caller", "closed_at"])
    op.drop_index("ix_callbacks_caller", table_name="callbacks")
    op.create_index("ix_callbacks_closed_by_call", "callbacks", ["closed_by_call"],
                    postgresql_where=sa.text("closed_by_call IS NOT NULL"))
    op.create_index("ix_calls_caller_reached", "calls", ["caller", "arrived_at"],
                    postgresql_where=sa.text("operator_answered_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_calls_caller_reached", table_name="calls")
    op.drop_index("ix_callbacks_closed_by_call", table_name="callbacks")
    op.create_index("ix_callbacks_caller", "callbacks", ["caller"])
    op.drop_index("ix_callbacks_caller_closed_at", table_name="callbacks")
