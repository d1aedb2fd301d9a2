"""Pause flags, durable across restarts.

A pause belongs to a workspace (`team_id`) and stops the agent's runs there; a pause of
team "" stops it in every workspace (the one workspace of a single-token install, and the
operator's).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import Control

ALL = "*"
EVERYWHERE = ""
"""The team of a pause that applies in every workspace."""


async def paused_scope(*, session: AsyncSession, agent: str, team_id: str = EVERYWHERE) -> Control | None:
    """The pause that stops `agent` in workspace `team_id` (everything first, then the agent
    itself; every workspace's first, then the team's own), or None."""
    conn = await session.connection()  # Core: every step asks this, and the rows are only read
    params = {"p_scopes": [ALL, agent], "p_teams": list(dict.fromkeys([EVERYWHERE, team_id]))}
    rows = {(r.team_id, r.scope): Control(**r._mapping) for r in await conn.execute(_PAUSED, params)}
    for key in ((EVERYWHERE, ALL), (team_id, ALL), (EVERYWHERE, agent), (team_id, agent)):
        if key in rows:
            return rows[key]
    return None


def stopping(scopes: Any, teams: Any) -> tuple[Any, ...]:
    """The conditions of the pauses that stop a run: set, of one of `scopes` (everything, the
    agent), in one of `teams` (every workspace, the run's): what `paused_scope` reads and the
    step boundary's lease renewal asks (storage.runs)."""
    return (col(Control.scope).in_(scopes), col(Control.team_id).in_(teams), col(Control.paused))


_PAUSED = select(*Control.__table__.columns).where(  # type: ignore[attr-defined]
    *stopping(bindparam("p_scopes", expanding=True), bindparam("p_teams", expanding=True))
)


async def set_paused(
    *,
    session: AsyncSession,
    scope: str,
    paused: bool,
    by_user: str | None,
    reason: str | None = None,
    team_id: str = EVERYWHERE,
) -> bool:
    """Set a pause flag of `team_id`; returns False if it already had that value."""
    control = await session.get(Control, (team_id, scope))
    if control is None:
        control = Control(team_id=team_id, scope=scope)
    elif control.paused == paused:
        return False
    control.paused = paused
    control.by_user = by_user
    control.reason = reason
    control.changed_at = now()
    session.add(control)
    return True


async def all_controls(*, session: AsyncSession, team_id: str | None = None) -> list[Control]:
    """Every flag; with `team_id`, those that count there (its own and every workspace's)."""
    stmt = select(Control)
    if team_id is not None:
        stmt = stmt.where(col(Control.team_id).in_(list(dict.fromkeys([EVERYWHERE, team_id]))))
    return list((await session.exec(stmt.order_by(col(Control.scope), col(Control.team_id)))).all())
