"""The audit log: who did what, when."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AuditEvent


async def record(
    *, session: AsyncSession, actor: str, action: str, target: str = "", detail: str = "", team_id: str = ""
) -> None:
    """`team_id`: the workspace it happened in ("" for every workspace: a single-token install's)."""
    session.add(AuditEvent(team_id=team_id, actor=actor, action=action, target=target, detail=detail[:4000]))


async def events(
    *, session: AsyncSession, since: datetime | None = None, action: str | None = None, limit: int = 1000
) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(col(AuditEvent.id))
    if since is not None:
        stmt = stmt.where(col(AuditEvent.at) >= since)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    return list((await session.exec(stmt.limit(limit))).all())
