"""Users' roles as Slack last told them: a member of the team, or why not."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import UserRole


async def known_role(*, session: AsyncSession, team_id: str, user_id: str) -> UserRole | None:
    """The last word on this user, fresh or not (compare `expires_at` with the clock)."""
    return await session.get(UserRole, (team_id, user_id), populate_existing=True)


async def remember_role(
    *, session: AsyncSession, team_id: str, user_id: str, refusal: str | None, ttl: timedelta
) -> tuple[datetime, datetime]:
    """Keep what Slack just said (an upsert: concurrent lookups of one user both succeed).
    Returns when it was said and until when it is fresh."""
    t = now()
    until = t + ttl
    said = {"refusal": refusal, "checked_at": t, "expires_at": until}
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    table = UserRole.__table__  # type: ignore[attr-defined]
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    stmt = insert.values(team_id=team_id, user_id=user_id, **said).on_conflict_do_update(
        index_elements=["team_id", "user_id"], set_=said
    )
    await session.exec(stmt)
    return t, until
