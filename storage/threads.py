"""A thread's runs, as a conversation: what earlier runs were asked, did and answered."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import rows
from storage.models import Request, Run, Step, StepKind

EARLIER_LIMIT = 50
"""Runs of a thread read back at most: a thread longer than this is condensed anyway."""


@dataclass
class PastRun:
    run: Run
    request: Request
    actions: list[Step]
    """Its action steps, in order."""
    steering: list[Request]
    """Replies that steered it, in order."""


async def earlier_runs(*, session: AsyncSession, run: Run) -> list[PastRun]:
    """The runs of `run`'s thread before it (the newest EARLIER_LIMIT), oldest first.

    Three Core reads (detached instances, storage.rows): the runs with their requests, their
    action steps, the replies that steered them. Every run of a thread reads this as it starts.
    The runs come without their `history`, the steps without their `undo` (reading them raises).
    """
    conn = await session.connection()
    params = {
        "p_team": run.team_id,
        "p_channel": run.channel_id,
        "p_thread": run.thread_ts,
        "p_run": run.id or 0,
    }
    found = [
        (rows.loaded(Run, r, without=_NOT_RUN), rows.loaded(Request, r, offset=_RUN_WIDTH))
        for r in await conn.execute(_EARLIER, params)
    ]
    if not found:
        return []
    found.reverse()  # oldest first
    ids = [r.id for r, _ in found]
    steps = [rows.loaded(Step, s, without=_NOT_STEP) for s in await conn.execute(_ACTIONS, {"p_ids": ids})]
    steers = rows.loaded_all(Request, await conn.execute(_STEERS, {"p_ids": ids}))
    return [
        PastRun(
            run=r,
            request=q,
            actions=[s for s in steps if s.run_id == r.id],
            steering=[s for s in steers if s.steers_run_id == r.id and s.steer_seq is not None],
        )
        for r, q in found
    ]


# Not read: each earlier run's own history (JSON that grows with the thread: reading the
# thread's 20 runs decoded 20 histories), and the steps' undo.
_NOT_RUN = ("history",)
_NOT_STEP = ("undo",)
_RUN_WIDTH = len(rows.columns(Run, without=_NOT_RUN))
_EARLIER = (
    rows.select_of(Run, *rows.columns(Request), without=_NOT_RUN)
    .join_from(Run, Request, col(Request.id) == col(Run.request_id))
    .where(
        col(Run.team_id) == bindparam("p_team"),
        col(Run.channel_id) == bindparam("p_channel"),
        col(Run.thread_ts) == bindparam("p_thread"),
        col(Run.id) < bindparam("p_run"),
    )
    .order_by(col(Run.id).desc())
    .limit(EARLIER_LIMIT)
)
_ACTIONS = (
    rows.select_of(Step, without=_NOT_STEP)
    .where(col(Step.run_id).in_(bindparam("p_ids", expanding=True)), col(Step.kind) == StepKind.action)
    .order_by(col(Step.run_id), col(Step.seq))
)
_STEERS = (
    rows.select_of(Request)
    .where(col(Request.steers_run_id).in_(bindparam("p_ids", expanding=True)))
    .order_by(col(Request.id))
)
