"""The journal: steps written before a side effect (intent) and after it (result)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import rows
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
    return await add_step(session=session, run_id=run_id, kind=kind, name=name, **fields)


async def add_step(*, session: AsyncSession, run_id: int, kind: StepKind, name: str, **fields: Any) -> Step:
    """Journal a step as the run's next one, unfenced: the caller renewed the lease in this
    transaction (`gate.stop` does). Returns the step as written (not in the session).

    One INSERT that numbers the step itself (the next `seq` is a subquery) and returns its
    id: no `max(seq)` round trip and no ORM flush, on the path every step takes.
    """
    step = rows.unsaved(Step, {"run_id": run_id, "seq": 0, "kind": kind, "name": name, **fields})
    params = {c: step.__dict__[c] for c in _INSERTED}
    params["next_seq_run_id"] = run_id
    conn = await session.connection()
    step.id, step.seq = (await conn.execute(_INSERT_STEP, params)).one()
    return step


_INSERTED = [c.name for c in Step.__table__.columns if c.name not in ("id", "seq")]  # type: ignore[attr-defined]
_INSERT_STEP = (
    insert(Step)
    .values(
        seq=select(func.coalesce(func.max(Step.seq), 0) + 1)
        .where(col(Step.run_id) == bindparam("next_seq_run_id"))
        .scalar_subquery()
    )
    .returning(col(Step.id), col(Step.seq))
)


async def finish_step(*, session: AsyncSession, step_id: int, status: StepStatus, **fields: Any) -> None:
    """Journal the result of a step (and, for actions, how to reverse it).

    A Core UPDATE (the SET clause is the parameters given): steps are never held in a
    session, so the ORM's bookkeeping for an UPDATE would be cost without use.
    """
    conn = await session.connection()
    await conn.execute(_FINISH_STEP, {"status": status, "finished_at": now(), **fields, "p_step": step_id})


_FINISH_STEP = update(Step).where(col(Step.id) == bindparam("p_step"))


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
    t = now()
    return await add_step(
        session=session,
        run_id=run_id,
        kind=kind,
        name=name,
        status=status,
        started_at=t,
        finished_at=t,
        **fields,
    )


async def settle_intents(*, session: AsyncSession, run_id: int, error: str) -> int:
    """Mark a run's unfinished intents as failed (a human decided to go on); returns how many."""
    result = await session.exec(
        update(Step)
        .where(col(Step.run_id) == run_id, col(Step.status) == StepStatus.intent)
        .values(status=StepStatus.failed, error=error, output=f"error: {error}", finished_at=now())
    )
    return int(result.rowcount or 0)


async def steps_of(*, session: AsyncSession, run_id: int) -> list[Step]:
    """The run's steps in order (detached: a Core read, storage.rows; every run start,
    presenter refresh and run end reads them)."""
    conn = await session.connection()
    return rows.loaded_all(Step, await conn.execute(_STEPS_OF, {"p_run": run_id}))


_STEPS_OF = rows.select_of(Step).where(col(Step.run_id) == bindparam("p_run")).order_by(col(Step.seq))


async def get_step(*, session: AsyncSession, step_id: int) -> Step | None:
    return await session.get(Step, step_id, populate_existing=True)
