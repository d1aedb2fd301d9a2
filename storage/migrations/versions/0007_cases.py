"""Cases: the runs started from one request, across agents (runs.case_id, parent_id,
handoff_key). A run with no case_id is a case's first run (every existing run is one).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("case_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("handoff_key", sa.String(length=64), nullable=True))
        batch.create_index("ix_runs_case", ["case_id"], unique=False)
        batch.create_unique_constraint("uq_runs_handoff", ["parent_id", "handoff_key"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_handoff", type_="unique")
        batch.drop_index("ix_runs_case")
        for name in ("handoff_key", "parent_id", "case_id"):
            batch.drop_column(name)
