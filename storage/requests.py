"""Intake queries: deduplicate Slack deliveries and persist requests with their run.

The intake's statements are built once, here, as Core statements (an ack waits for them;
the ORM's unit of work and identity map cost several times the SQLite work, see
docs/benchmarks.md, issue 18): the values are bound per call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import ProcessedEvent, Request, RequestBase, Run, RunStatus


def _ignoring(table: Any, returning: Any) -> dict[str, Insert]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING `returning`, per dialect: no row on conflict."""
    return {
        name: dialect.insert(table).on_conflict_do_nothing().returning(returning)
        for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
    }


_DELIVERY = _ignoring(ProcessedEvent.__table__, col(ProcessedEvent.key))  # type: ignore[attr-defined]
_REQUEST = _ignoring(Request.__table__, col(Request.id))  # type: ignore[attr-defined]
_RUN = Run.__table__.insert().returning(col(Run.id))  # type: ignore[attr-defined]


async def _first(session: AsyncSession, statements: dict[str, Insert], values: dict[str, Any]) -> Any | None:
    conn = await session.connection()
    row = (await conn.execute(statements[conn.dialect.name], values)).first()
    return None if row is None else row[0]


async def record_delivery(*, session: AsyncSession, key: str, kind: str) -> bool:
    """Remember a delivery (an event_id, a trigger_id). False if it was seen before."""
    values = {"key": key, "kind": kind, "received_at": now()}
    return await _first(session, _DELIVERY, values) is not None


async def queue_request(*, session: AsyncSession, request: RequestBase) -> int | None:
    """Persist a request and queue its run; the run's id. None if this message was already
    a request (a retry, or one message delivered as `app_mention` and as `message`)."""
    values = request.model_dump()
    values["created_at"] = now()
    request_id = await _first(session, _REQUEST, values)
    if request_id is None:
        return None
    conn = await session.connection()
    run = {
        "request_id": request_id,
        "agent": request.agent,
        "status": RunStatus.queued,
        "team_id": request.team_id,
        "channel_id": request.channel_id,
        "thread_ts": request.thread_ts,
    }
    return int((await conn.execute(_RUN, run)).scalar_one())


async def create_request(*, session: AsyncSession, request: RequestBase) -> tuple[Request, Run] | None:
    """`queue_request`, with the request and its run loaded."""
    run_id = await queue_request(session=session, request=request)
    if run_id is None:
        return None
    run = await session.get(Run, run_id)
    assert run is not None
    stored = await session.get(Request, run.request_id)
    assert stored is not None
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
