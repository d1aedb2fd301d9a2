"""Ticket comments remember the run that wrote them.

An undo may remove only what its own run made: undoing a ticket's creation must leave a
comment another run added, and undoing a comment must find that comment still its own.
Existing comments get their run from the journal (the `ticket_comment` or `ticket_close`
step whose undo names the comment); a comment no step names stays without one.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_comments") as batch:
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch.create_index("ix_ticket_comments_run_id", ["run_id"], unique=False)
    bind = op.get_bind()
    steps = bind.execute(
        sa.text(
            "SELECT run_id, undo FROM steps "
            "WHERE name IN ('ticket_comment', 'ticket_close') AND undo IS NOT NULL"
        )
    ).all()
    for run_id, undo in steps:
        data = json.loads(undo) if isinstance(undo, str) else undo
        comment = (data or {}).get("comment_id")
        if isinstance(comment, int):
            bind.execute(
                sa.text("UPDATE ticket_comments SET run_id = :run WHERE id = :id AND run_id IS NULL"),
                {"run": run_id, "id": comment},
            )


def downgrade() -> None:
    with op.batch_alter_table("ticket_comments") as batch:
        batch.drop_index("ix_ticket_comments_run_id")
        batch.drop_column("run_id")
