"""Alerts: one active alert per condition; cleared with a note."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import cases
from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import ACTIVE_STATUSES, Alert, AuditEvent, Run, RunStatus, Step, StepKind, StepStatus


async def raise_alert(
    *, session: AsyncSession, key: str, message: str, channel_id: str | None, team_id: str = ""
) -> Alert | None:
    """The new alert, or None when this condition already has an active one (in `team_id`:
    the workspace whose runs it is about, "" for every workspace)."""
    alert_id = await insert_ignore(
        session,
        Alert,
        {
            "team_id": team_id,
            "key": key,
            "active": True,
            "message": message,
            "raised_at": now(),
            "channel_id": channel_id,
        },
        returning=Alert.id,
    )
    return None if alert_id is None else await session.get(Alert, alert_id)


async def active_alerts(*, session: AsyncSession, prefix: str = "") -> list[Alert]:
    stmt = select(Alert).where(Alert.active)
    if prefix:
        stmt = stmt.where(col(Alert.key).startswith(prefix))
    return list((await session.exec(stmt.order_by(col(Alert.id)))).all())


async def clear_alert(*, session: AsyncSession, alert_id: int) -> bool:
    result = await session.exec(
        update(Alert)
        .where(col(Alert.id) == alert_id, col(Alert.active))
        .values(active=False, cleared_at=now())
    )
    return bool(result.rowcount)


async def set_alert_ts(*, session: AsyncSession, alert_id: int, ts: str) -> None:
    await session.exec(update(Alert).where(col(Alert.id) == alert_id).values(ts=ts))


async def stuck_runs(*, session: AsyncSession, before: datetime) -> list[Run]:
    """Running runs with no step started or finished since `before`, and old queued runs."""
    last_step = (
        select(func.max(func.coalesce(Step.finished_at, Step.started_at)))
        .where(Step.run_id == Run.id)
        .scalar_subquery()
    )
    running = select(Run).where(
        col(Run.status) == RunStatus.running,
        col(Run.updated_at) < before,
        func.coalesce(last_step, Run.updated_at) < before,
    )
    queued = select(Run).where(Run.status == RunStatus.queued, col(Run.updated_at) < before)
    return list((await session.exec(running)).all()) + list((await session.exec(queued)).all())


async def stalled_cases(*, session: AsyncSession, before: datetime) -> list[list[Run]]:
    """Cases of several runs, one still in flight, where nothing happened since `before` (no
    step started or finished, no run changed): each as its runs, oldest first."""
    handed = select(Run.case_id).where(col(Run.case_id).is_not(None), col(Run.status).in_(ACTIVE_STATUSES))
    stalled = []
    for case_id in set((await session.exec(handed)).all()):
        members = await cases.case_runs(session=session, case_id=case_id or 0)
        ids = [m.id for m in members]
        last_step = (
            await session.exec(
                select(func.max(func.coalesce(Step.finished_at, Step.started_at))).where(
                    col(Step.run_id).in_(ids)
                )
            )
        ).one()
        last = max([m.updated_at for m in members] + ([last_step] if last_step else []))
        if last < before:
            stalled.append(members)
    return sorted(stalled, key=lambda m: m[0].id or 0)


async def crashed_runs(*, session: AsyncSession, since: datetime, crashes: int) -> list[Run]:
    """Runs finished since `since` that had crashed their worker at least `crashes` times."""
    stmt = select(Run).where(col(Run.finished_at) >= since, col(Run.crashes) >= crashes).order_by(col(Run.id))
    return list((await session.exec(stmt)).all())


async def finished_since(
    *, session: AsyncSession, since: datetime, team_id: str | None = None
) -> list[tuple[str, str, bool, int]]:
    """(agent, status, undone?, count) for runs finished since `since` (of workspace `team_id`
    when given).

    The window's rows are few, so they are counted here: with a GROUP BY, SQLite (which
    has no statistics) walks the whole of ix_runs_agent_created instead of the window of
    ix_runs_finished.
    """
    stmt = select(Run.agent, Run.status, col(Run.undone_by).is_not(None), Run.team_id).where(
        col(Run.finished_at) >= since
    )
    rows = (await session.exec(stmt)).all()
    counts = Counter((a, s, bool(u)) for a, s, u, t in rows if team_id is None or t == team_id)
    return [(a, s, u, n) for (a, s, u), n in counts.items()]


async def finished_teams(*, session: AsyncSession, since: datetime) -> list[str]:
    """The workspaces with runs finished since `since`."""
    stmt = select(Run.team_id).where(col(Run.finished_at) >= since).distinct()
    return sorted((await session.exec(stmt)).all())


async def model_failures_since(*, session: AsyncSession, since: datetime) -> int:
    stmt = select(func.count()).where(
        col(Step.kind) == StepKind.model,
        col(Step.status) == StepStatus.failed,
        col(Step.started_at) >= since,
        ~col(Step.error).startswith("interrupted"),
    )
    return int((await session.exec(stmt)).one())


async def last_resume(*, session: AsyncSession, agent: str, team_id: str | None = None) -> datetime | None:
    """When a human last resumed this agent (the circuit breaker counts from there): in
    workspace `team_id` or in every workspace, when `team_id` is given."""
    stmt = select(func.max(AuditEvent.at)).where(
        col(AuditEvent.action) == "resume", col(AuditEvent.target).in_([f"agent:{agent}", "agent:*"])
    )
    if team_id is not None:
        stmt = stmt.where(col(AuditEvent.team_id).in_(list(dict.fromkeys(["", team_id]))))
    return (await session.exec(stmt)).one()
