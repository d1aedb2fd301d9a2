"""Slack's AI surface: people's votes on outcomes (feedback), the assistant threads of the app's
DM with the channel each person is viewing (assistant_threads), and that channel on a request
(requests.context_channel_id).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("vote", sa.String(length=8), nullable=False),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("run_id", "user_id"),
    )
    op.create_index("ix_feedback_voted", "feedback", ["voted_at"], unique=False)
    op.create_table(
        "assistant_threads",
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "thread_ts"),
    )
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("context_channel_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("context_channel_id")
    op.drop_table("assistant_threads")
    op.drop_index("ix_feedback_voted", table_name="feedback")
    op.drop_table("feedback")
