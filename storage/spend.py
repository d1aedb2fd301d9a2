"""Model spend: each capped agent's running total for the day, and the day's tokens by model.

The running total is what a daily cap reads at every step (agents.budget): one row by its key,
added to in the transaction that journals each model turn, so the check never sums the day's
runs. The first turn of a day (or of a cap set mid-day) opens the row from the journal once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.dialect import insert_ignore
from storage.models import Run, Spend, Step, StepKind


async def of_day(*, session: AsyncSession, agent: str, day: str) -> Spend | None:
    """The agent's running total for `day`, or None when it has not been opened."""
    conn = await session.connection()  # Core: a capped agent's every step reads it
    row = (await conn.execute(_OF_DAY, {"p_agent": agent, "p_day": day})).first()
    return None if row is None else Spend(**row._mapping)


_OF_DAY = select(*Spend.__table__.columns).where(  # type: ignore[attr-defined]
    col(Spend.agent) == bindparam("p_agent"), col(Spend.day) == bindparam("p_day")
)


async def add(
    *, session: AsyncSession, agent: str, day: str, prompt_tokens: int, completion_tokens: int, cost: float
) -> bool:
    """Add one model turn to the running total; False when the day's row is not open yet."""
    conn = await session.connection()
    result = await conn.execute(
        _ADD,
        {"p_agent": agent, "p_day": day, "p_in": prompt_tokens, "p_out": completion_tokens, "p_cost": cost},
    )
    return bool(result.rowcount)


_ADD = (
    update(Spend)
    .where(col(Spend.agent) == bindparam("p_agent"), col(Spend.day) == bindparam("p_day"))
    .values(
        prompt_tokens=Spend.prompt_tokens + bindparam("p_in"),
        completion_tokens=Spend.completion_tokens + bindparam("p_out"),
        cost=Spend.cost + bindparam("p_cost"),
    )
)


async def open_day(
    *, session: AsyncSession, agent: str, day: str, prompt_tokens: int, completion_tokens: int, cost: float
) -> bool:
    """Open the day's row with what the journal says was spent so far; False if another
    transaction opened it first (then `add` what this one has to add)."""
    values = {
        "agent": agent,
        "day": day,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": cost,
        "extra": 0.0,
    }
    return await insert_ignore(session, Spend, values) is not None


async def allow_more(*, session: AsyncSession, agent: str, day: str, cap: float) -> float:
    """A person resumed the agent after it paused itself at its cap: it may spend another `cap`
    today, from what it has spent now. Returns the new limit for the day (dollars)."""
    row = await of_day(session=session, agent=agent, day=day)
    if row is None:
        return cap
    extra = max(row.extra, row.cost - cap) + cap
    await session.exec(
        update(Spend).where(col(Spend.agent) == agent, col(Spend.day) == day).values(extra=extra)
    )
    return cap + extra


async def model_tokens(
    *,
    session: AsyncSession,
    start: datetime,
    end: datetime,
    agent: str | None = None,
    team_id: str | None = None,
) -> list[tuple[str, str, int, int]]:
    """(agent, model, prompt tokens, completion tokens) of the model turns begun in [start, end),
    per agent and model (of workspace `team_id`'s runs, when given): what is priced. Reads the
    journal by its `started_at` index."""
    stmt = (
        select(Run.agent, Run.planner, func.sum(Step.prompt_tokens), func.sum(Step.completion_tokens))
        .join(Run, col(Run.id) == col(Step.run_id))
        .where(
            col(Step.kind) == StepKind.model,
            col(Step.started_at) >= start,
            col(Step.started_at) < end,
        )
        .group_by(col(Run.agent), col(Run.planner))
    )
    if agent is not None:
        stmt = stmt.where(col(Run.agent) == agent)
    if team_id is not None:
        stmt = stmt.where(col(Run.team_id) == team_id)
    rows = (await session.exec(stmt)).all()
    return [(a, p or "", int(pt or 0), int(ct or 0)) for a, p, pt, ct in rows]
