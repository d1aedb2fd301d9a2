"""What a waiting run waits for is data: wait_kind and wait_on (and wake_at for a timed wait);
how often a run crashed its worker: crashes.

Runs that wait now get their kind and reference from the sentence they carried
(`wait_reason` stays, for people).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The sentences 0.1.0 wrote, and what they meant.
_SENTENCES = [
    (re.compile(r"^paused \((all agents|.+)\)"), "paused"),
    (re.compile(r"^approval: (\S+) waits"), "approval"),
    (re.compile(r"^resource: (.+) \(held by run #\d+\)$"), "resource"),
    (re.compile(r"^needs a human: step (\d+) "), "human"),
]


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("wait_kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("wait_on", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("crashes", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_runs_status_wake", ["status", "wake_at"], unique=False)
    bind = op.get_bind()
    waiting = bind.execute(sa.text("SELECT id, wait_reason FROM runs WHERE status = 'waiting'")).all()
    approvals: dict[int, int] = dict(
        bind.execute(sa.text("SELECT run_id, id FROM approvals WHERE status = 'pending'")).all()
    )
    for run_id, reason in waiting:
        for pattern, kind in _SENTENCES:
            m = pattern.match(reason or "")
            if m is None:
                continue
            on = m.group(1)
            if kind == "paused":
                on = "*" if on == "all agents" else on
            elif kind == "approval":
                on = str(approvals.get(run_id, ""))
            bind.execute(
                sa.text("UPDATE runs SET wait_kind = :k, wait_on = :o WHERE id = :id"),
                {"k": kind, "o": on or None, "id": run_id},
            )
            break


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_status_wake")
        for name in ("crashes", "wake_at", "wait_on", "wait_kind"):
            batch.drop_column(name)
