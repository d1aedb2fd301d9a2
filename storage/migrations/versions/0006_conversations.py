"""Threads are conversations: a reply can steer the run in flight (requests.steers_run_id,
steer_seq), and a run keeps the thread's history it was shown (runs.history).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("steers_run_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("steer_seq", sa.Integer(), nullable=True))
        batch.create_index("ix_requests_steering", ["steers_run_id", "steer_seq"], unique=False)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("history", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("history")
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ix_requests_steering")
        batch.drop_column("steer_seq")
        batch.drop_column("steers_run_id")
