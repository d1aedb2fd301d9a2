"""Resource locks: one run at a time acts on a resource."""

from __future__ import annotations

from sqlalchemy import bindparam, delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import ResourceLock, Run, RunStatus, WaitKind


def wait_reason(resource: str, holder: int) -> str:
    """The sentence a run waiting for `resource` shows."""
    return f"resource: {resource} (held by run #{holder})"


async def acquire(*, session: AsyncSession, resource: str, run_id: int) -> int | None:
    """Take the lock; returns the id of the run holding it, or None when it is ours (or held
    by a run of our own case: the runs of a case take turns, so they share what they hold)."""
    await insert_ignore(session, ResourceLock, {"resource": resource, "run_id": run_id, "acquired_at": now()})
    # FOR UPDATE (PostgreSQL): the holder cannot free the lock and requeue its waiters
    # until this transaction has recorded whether this run waits.
    lock = await session.get(ResourceLock, resource, populate_existing=True, with_for_update=True)
    assert lock is not None
    if lock.run_id == run_id:
        return None
    mine, holder = await session.get(Run, run_id), await session.get(Run, lock.run_id)
    if mine is not None and holder is not None and mine.case == holder.case:
        return None
    return lock.run_id


async def would_deadlock(*, session: AsyncSession, run_id: int, holder: int) -> bool:
    """True when the holder itself waits for a resource this run holds."""
    other = await session.get(Run, holder, populate_existing=True)
    if other is None or other.status != RunStatus.waiting or other.wait_kind != WaitKind.resource:
        return False
    mine = (await session.exec(select(ResourceLock.resource).where(ResourceLock.run_id == run_id))).all()
    return other.wait_on in mine


async def release_all(*, session: AsyncSession, run_id: int) -> list[str]:
    """Drop every lock the run holds; returns the resources freed."""
    conn = await session.connection()  # Core: every ending run asks
    held = [row[0] for row in await conn.execute(_HELD, {"p_run": run_id})]
    if held:
        await session.exec(delete(ResourceLock).where(col(ResourceLock.run_id) == run_id))
    return held


_HELD = select(ResourceLock.resource).where(col(ResourceLock.run_id) == bindparam("p_run"))


async def held_by(*, session: AsyncSession, run_id: int) -> list[str]:
    return list(
        (await session.exec(select(ResourceLock.resource).where(ResourceLock.run_id == run_id))).all()
    )
