"""Steering: a reply in a thread whose run is in flight goes to that run, not to a new one.

The reply is stored as a request whose `steers_run_id` names the run; the run reads it at its
next step boundary (`read`, in the transaction that journals that step) and marks it with the
step's seq, so a resumed run puts it back exactly where it was. A run that ends without
reading a reply hands it over: it becomes a run of its own (`hand_over`, in the transaction
that ends the run). Attaching and ending both lock the run's row first, so a reply is either
read by the run or becomes the next run, never both and never neither.
"""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import rows
from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import ACTIVE_STATUSES, Request, RequestBase, Run, RunStatus, Step


async def run_to_steer(*, session: AsyncSession, team_id: str, channel_id: str, thread_ts: str) -> Run | None:
    """The thread's newest run still in flight (queued, running or waiting), its row locked
    until the transaction ends (PostgreSQL; SQLite's writers take turns anyway)."""
    stmt = (
        select(Run)
        .where(
            col(Run.team_id) == team_id,
            col(Run.channel_id) == channel_id,
            col(Run.thread_ts) == thread_ts,
            col(Run.status).in_(ACTIVE_STATUSES),
        )
        .order_by(col(Run.id).desc())
        .limit(1)
        .with_for_update()
    )
    return (await session.exec(stmt)).first()


async def attach(*, session: AsyncSession, request: RequestBase, run_id: int) -> Request | None:
    """Store a reply that steers `run_id`; None if this message was already taken."""
    values = request.model_dump()
    values.update(created_at=now(), steers_run_id=run_id)
    request_id = await insert_ignore(session, Request, values, returning=Request.id)
    return None if request_id is None else await session.get(Request, request_id)


async def unread(*, session: AsyncSession, run_id: int) -> int:
    """How many replies the run has not read yet."""
    conn = await session.connection()
    return int((await conn.execute(_UNREAD, {"p_run": run_id})).scalar_one())


_UNREAD = select(func.count()).where(
    col(Request.steers_run_id) == bindparam("p_run"), col(Request.steer_seq).is_(None)
)


async def read(*, session: AsyncSession, run_id: int) -> list[Request]:
    """Mark the run's unread replies as read before its next step (the seq that step will get);
    returns them, oldest first. Call in the transaction that journals that step."""
    conn = await session.connection()
    ids = [row[0] for row in await conn.execute(_READ, {"p_run": run_id})]
    if not ids:
        return []
    stmt = select(Request).where(col(Request.id).in_(ids)).order_by(col(Request.id))
    return list((await session.exec(stmt)).all())


_READ = (
    update(Request)
    .where(col(Request.steers_run_id) == bindparam("p_run"), col(Request.steer_seq).is_(None))
    .values(
        steer_seq=select(func.coalesce(func.max(Step.seq), 0) + 1)
        .where(col(Step.run_id) == bindparam("p_run"))
        .scalar_subquery()
    )
    .returning(col(Request.id))
)


async def of_run(*, session: AsyncSession, run_id: int) -> list[Request]:
    """Every reply that steered the run, read or not, oldest first (detached: a Core read,
    storage.rows; the presenter asks at every refresh)."""
    conn = await session.connection()
    return rows.loaded_all(Request, await conn.execute(_OF_RUN, {"p_run": run_id}))


_OF_RUN = (
    rows.select_of(Request).where(col(Request.steers_run_id) == bindparam("p_run")).order_by(col(Request.id))
)


async def hand_over(*, session: AsyncSession, run_id: int) -> list[int]:
    """The run is ending: each reply it did not read becomes a run of its own, queued in the
    same thread (it runs after this one). Call in the transaction that ends the run, after its
    row is locked (runs.release). Returns the new runs' ids."""
    waiting = list(
        (
            await session.exec(
                select(Request)
                .where(col(Request.steers_run_id) == run_id, col(Request.steer_seq).is_(None))
                .order_by(col(Request.id))
            )
        ).all()
    )
    created: list[int] = []
    for request in waiting:
        assert request.id is not None
        await session.exec(update(Request).where(col(Request.id) == request.id).values(steers_run_id=None))
        new = Run(
            request_id=request.id,
            agent=request.agent,
            status=RunStatus.queued,
            team_id=request.team_id,
            channel_id=request.channel_id,
            thread_ts=request.thread_ts,
        )
        session.add(new)
        await session.flush()
        assert new.id is not None
        created.append(new.id)
    return created
