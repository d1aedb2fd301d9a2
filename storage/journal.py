"""The journal: steps written before a side effect (intent) and after it (result)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import Step, StepKind, StepStatus
from storage.runs import renew_lease


async def begin_step(
    *,
    session: AsyncSession,
    run_id: int,
    worker_id: str,
    lease: timedelta,
    kind: StepKind,
    name: str,
    **fields: Any,
) -> Step:
    """Journal an intent. Fenced: raises LeaseLost unless this worker still owns the run."""
    await renew_lease(session=session, run_id=run_id, worker_id=worker_id, lease=lease)
    last = (await session.exec(select(func.max(Step.seq)).where(Step.run_id == run_id))).one()
    step = Step(run_id=run_id, seq=(last or 0) + 1, kind=kind, name=name, **fields)
    session.add(step)
    await session.flush()
    return step


async def finish_step(*, session: AsyncSession, step_id: int, status: StepStatus, **fields: Any) -> None:
    """Journal the result of a step (and, for actions, how to reverse it)."""
    await session.exec(
        update(Step).where(col(Step.id) == step_id).values(status=status, finished_at=now(), **fields)
    )


async def record_step(
    *,
    session: AsyncSession,
    run_id: int,
    worker_id: str,
    lease: timedelta,
    kind: StepKind,
    name: str,
    status: StepStatus,
    **fields: Any,
) -> Step:
    """Journal a step that is complete as it is written (a rejected or proposed tool call).

    Fenced like `begin_step`: raises LeaseLost unless this worker still owns the run.
    """
    await renew_lease(session=session, run_id=run_id, worker_id=worker_id, lease=lease)
    last = (await session.exec(select(func.max(Step.seq)).where(Step.run_id == run_id))).one()
    t = now()
    step = Step(
        run_id=run_id,
        seq=(last or 0) + 1,
        kind=kind,
        name=name,
        status=status,
        started_at=t,
        finished_at=t,
        **fields,
    )
    session.add(step)
    await session.flush()
    return step


async def settle_intents(*, session: AsyncSession, run_id: int, error: str) -> int:
    """Mark a run's unfinished intents as failed (a human decided to go on); returns how many."""
    result = await session.exec(
        update(Step)
        .where(col(Step.run_id) == run_id, col(Step.status) == StepStatus.intent)
        .values(status=StepStatus.failed, error=error, output=f"error: {error}", finished_at=now())
    )
    return int(result.rowcount or 0)


async def steps_of(*, session: AsyncSession, run_id: int) -> list[Step]:
    stmt = select(Step).where(Step.run_id == run_id).order_by(col(Step.seq))
    return list((await session.exec(stmt)).all())


async def get_step(*, session: AsyncSession, step_id: int) -> Step | None:
    return await session.get(Step, step_id, populate_existing=True)
