"""Intake queries: deduplicate Slack deliveries and persist requests with their run."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import ProcessedEvent, Request, RequestBase, Run, RunStatus


async def record_delivery(*, session: AsyncSession, key: str, kind: str) -> bool:
    """Remember a delivery (an event_id, a trigger_id). False if it was seen before."""
    inserted = await insert_ignore(session, ProcessedEvent, {"key": key, "kind": kind, "received_at": now()})
    return inserted is not None


async def create_request(*, session: AsyncSession, request: RequestBase) -> tuple[Request, Run] | None:
    """Persist a request and queue its run. None if this message was already a request."""
    values = request.model_dump()
    values["created_at"] = now()
    request_id = await insert_ignore(session, Request, values, returning=Request.id)
    if request_id is None:
        return None
    stored = await session.get(Request, request_id)
    assert stored is not None
    run = Run(
        request_id=request_id,
        agent=request.agent,
        status=RunStatus.queued,
        team_id=request.team_id,
        channel_id=request.channel_id,
        thread_ts=request.thread_ts,
    )
    session.add(run)
    await session.flush()
    return stored, run


async def get_request(*, session: AsyncSession, request_id: int) -> Request | None:
    return await session.get(Request, request_id)


async def find_request(*, session: AsyncSession, team_id: str, channel_id: str, ts: str) -> Request | None:
    stmt = select(Request).where(
        col(Request.team_id) == team_id, col(Request.channel_id) == channel_id, col(Request.ts) == ts
    )
    return (await session.exec(stmt)).first()


async def thread_has_runs(
    *, session: AsyncSession, team_id: str, channel_id: str, thread_ts: str
) -> str | None:
    """The agent of the thread's latest run, or None when no run reports in that thread."""
    stmt = (
        select(Run.agent)
        .where(Run.team_id == team_id, col(Run.channel_id) == channel_id, col(Run.thread_ts) == thread_ts)
        .order_by(col(Run.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def set_role(*, session: AsyncSession, request_id: int, role: str) -> None:
    """The requester's role, verified after the request was taken (see RunLoop)."""
    await session.exec(update(Request).where(col(Request.id) == request_id).values(requester_role=role))
