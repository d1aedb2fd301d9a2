"""People's votes on outcomes (the 👍 and 👎 under an answer): one per person and run."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import Feedback, Run, Vote


async def record_vote(
    *, session: AsyncSession, run_id: int, user_id: str, team_id: str, vote: Vote
) -> str | None:
    """Record `user_id`'s vote on the run; returns the vote it replaces (None: their first).

    One row per person and run, so a second click changes the vote instead of adding one, and
    the same click delivered twice changes nothing. Two clicks of one person at once: the
    primary key keeps one row, and the later write wins.
    """
    t = now()
    values = {"run_id": run_id, "user_id": user_id, "team_id": team_id, "vote": vote, "voted_at": t}
    if await insert_ignore(session, Feedback, values):
        return None
    key = (col(Feedback.run_id) == run_id, col(Feedback.user_id) == user_id)
    before = (await session.exec(select(Feedback.vote).where(*key))).first()
    if before != vote:
        await session.exec(update(Feedback).where(*key).values(vote=vote, voted_at=t))
    return before


async def votes_of(*, session: AsyncSession, run_id: int) -> dict[str, int]:
    """The run's votes: {"good": n, "bad": m}."""
    rows = (
        await session.exec(
            select(Feedback.vote, func.count()).where(col(Feedback.run_id) == run_id).group_by(Feedback.vote)
        )
    ).all()
    return {Vote.good: 0, Vote.bad: 0, **dict(rows)}


async def votes_by_agent(
    *, session: AsyncSession, start: datetime, end: datetime | None = None, team_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Votes cast (or changed) from `start` to `end`, by the agent of the run voted on:
    {agent: {"good": n, "bad": m}}; with `team_id`, on that workspace's runs only."""
    stmt = (
        select(Run.agent, Feedback.vote, func.count())
        .join(Run, col(Run.id) == col(Feedback.run_id))
        .where(col(Feedback.voted_at) >= start)
        .group_by(Run.agent, Feedback.vote)
    )
    if team_id is not None:
        stmt = stmt.where(col(Run.team_id) == team_id)
    if end is not None:
        stmt = stmt.where(col(Feedback.voted_at) < end)
    out: defaultdict[str, dict[str, int]] = defaultdict(lambda: {Vote.good: 0, Vote.bad: 0})
    for agent, vote, n in (await session.exec(stmt)).all():
        out[agent][vote] = n
    return dict(out)


async def voted_teams(*, session: AsyncSession, start: datetime) -> list[str]:
    """The workspaces of the runs voted on since `start`."""
    stmt = (
        select(Run.team_id)
        .join(Feedback, col(Feedback.run_id) == col(Run.id))
        .where(col(Feedback.voted_at) >= start)
        .distinct()
    )
    return sorted((await session.exec(stmt)).all())
