"""Pause flags, durable across restarts."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import Control

ALL = "*"


async def paused_scope(*, session: AsyncSession, agent: str) -> Control | None:
    """The pause that stops `agent` (everything first, then the agent itself), or None."""
    conn = await session.connection()  # Core: every step asks this, and the rows are only read
    rows = {r.scope: Control(**r._mapping) for r in await conn.execute(_PAUSED, {"p_scopes": [ALL, agent]})}
    return rows.get(ALL) or rows.get(agent)


_PAUSED = select(*Control.__table__.columns).where(  # type: ignore[attr-defined]
    col(Control.scope).in_(bindparam("p_scopes", expanding=True)), col(Control.paused)
)


async def set_paused(
    *, session: AsyncSession, scope: str, paused: bool, by_user: str | None, reason: str | None = None
) -> bool:
    """Set a pause flag; returns False if it already had that value."""
    control = await session.get(Control, scope)
    if control is None:
        control = Control(scope=scope)
    elif control.paused == paused:
        return False
    control.paused = paused
    control.by_user = by_user
    control.reason = reason
    control.changed_at = now()
    session.add(control)
    return True


async def all_controls(*, session: AsyncSession) -> list[Control]:
    return list((await session.exec(select(Control).order_by(col(Control.scope)))).all())
