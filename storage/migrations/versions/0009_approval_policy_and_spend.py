"""Approval policy and budgets: each person's decision on an approval (approval_decisions), the
policy an approval was asked under (approvals.needed, approvers, self_approval), and a running
total of each capped agent's daily model spend (spend).

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Approvals asked for before this revision keep deciding as they did: one Approve by
    # whoever may control agents, the requester included.
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("needed", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("approvers", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("self_approval", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "approval_decisions",
        sa.Column("approval_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["approval_id"], ["approvals.id"]),
        sa.PrimaryKeyConstraint("approval_id", "user_id"),
    )
    op.create_table(
        "spend",
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("extra", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent", "day"),
    )


def downgrade() -> None:
    op.drop_table("spend")
    op.drop_table("approval_decisions")
    with op.batch_alter_table("approvals") as batch:
        for name in ("self_approval", "approvers", "needed"):
            batch.drop_column(name)
