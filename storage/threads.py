"""A thread's runs, as a conversation: what earlier runs were asked, did and answered."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

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
    """The runs of `run`'s thread before it (the newest EARLIER_LIMIT), oldest first."""
    ids = list(
        (
            await session.exec(
                select(Run.id)
                .where(
                    col(Run.team_id) == run.team_id,
                    col(Run.channel_id) == run.channel_id,
                    col(Run.thread_ts) == run.thread_ts,
                    col(Run.id) < (run.id or 0),
                )
                .order_by(col(Run.id).desc())
                .limit(EARLIER_LIMIT)
            )
        ).all()
    )
    if not ids:
        return []
    found = list(
        (
            await session.exec(
                select(Run, Request)
                .join(Request, col(Request.id) == Run.request_id)
                .where(col(Run.id).in_(ids))
                .order_by(col(Run.id))
            )
        ).all()
    )
    steps = list(
        (
            await session.exec(
                select(Step)
                .where(col(Step.run_id).in_(ids), col(Step.kind) == StepKind.action)
                .order_by(col(Step.run_id), col(Step.seq))
            )
        ).all()
    )
    steers = list(
        (
            await session.exec(
                select(Request).where(col(Request.steers_run_id).in_(ids)).order_by(col(Request.id))
            )
        ).all()
    )
    return [
        PastRun(
            run=r,
            request=q,
            actions=[s for s in steps if s.run_id == r.id],
            steering=[s for s in steers if s.steers_run_id == r.id and s.steer_seq is not None],
        )
        for r, q in found
    ]
