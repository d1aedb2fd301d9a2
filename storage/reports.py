"""Aggregates for the daily summary, computed from the journal with indexed queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import cases, feedback, spend
from storage.approvals import BUDGET
from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import (
    ACTIVE_STATUSES,
    Approval,
    ApprovalStatus,
    AuditEvent,
    Control,
    Run,
    RunStatus,
    SummaryPost,
    Vote,
    WaitKind,
)


@dataclass
class AgentDay:
    """One agent's runs created that day. Every run is in exactly one of: succeeded, did
    nothing, failed (rolled back automatically or kept), undone by a person, cancelled, in
    flight; so the counts add up to `runs`."""

    agent: str
    outcomes: dict[str, int] = field(default_factory=dict)
    """Runs created that day, by their current status."""
    undone: int = 0
    """Runs a human undid (status rolled_back, with undone_by)."""
    rolled_back: int = 0
    """Runs that failed and rolled themselves back (status rolled_back, no undone_by)."""
    good_votes: int = 0
    """Good votes people gave its outcomes that day (on runs of any day)."""
    bad_votes: int = 0

    @property
    def runs(self) -> int:
        return sum(self.outcomes.values())

    @property
    def succeeded(self) -> int:
        return self.outcomes.get(RunStatus.succeeded, 0)

    @property
    def no_action(self) -> int:
        return self.outcomes.get(RunStatus.no_action, 0)

    @property
    def failed(self) -> int:
        """Failed runs, the ones rolled back automatically included."""
        return self.outcomes.get(RunStatus.failed, 0) + self.rolled_back

    @property
    def cancelled(self) -> int:
        return self.outcomes.get(RunStatus.cancelled, 0)

    @property
    def in_flight(self) -> int:
        return sum(self.outcomes.get(s, 0) for s in ACTIVE_STATUSES)


@dataclass
class Usage:
    planner: str
    runs: int
    prompt_tokens: int
    completion_tokens: int


@dataclass
class CaseDay:
    """A case of several runs, begun that day."""

    root: Run
    """Its first run: the case's outcome is its outcome."""
    agents: list[str]
    """The agents it went through, in order."""


@dataclass
class DayReport:
    start: datetime
    end: datetime
    agents: dict[str, AgentDay]
    failures: list[Run]
    """The day's runs that failed (kept as they were, or rolled back automatically)."""
    waiting_for_human: list[Run]
    """Runs, of any day, stopped until a human looks."""
    approvals_waiting: list[Approval]
    control_events: list[AuditEvent]
    """Pauses and resumes during the day."""
    paused_now: list[Control]
    usage: list[Usage]
    cases: list[CaseDay] = field(default_factory=list)
    spend: list[tuple[str, str, int, int]] = field(default_factory=list)
    """(agent, model, prompt tokens, completion tokens) of the day's model turns (storage.spend)."""
    budget_asks: dict[str, int] = field(default_factory=dict)
    """Per agent: runs that reached their token budget that day and asked for more."""

    @property
    def runs(self) -> int:
        return sum(a.runs for a in self.agents.values())


async def day_report(
    *, session: AsyncSession, start: datetime, end: datetime, team_id: str | None = None
) -> DayReport:
    """The day's report; with `team_id`, of that workspace's runs, approvals and pauses only
    (a pause of every workspace counts in each)."""
    mine = () if team_id is None else (col(Run.team_id) == team_id,)
    in_day = (col(Run.created_at) >= start, col(Run.created_at) < end, *mine)
    agents: dict[str, AgentDay] = {}
    rows = (
        await session.exec(
            select(Run.agent, Run.status, func.count()).where(*in_day).group_by(Run.agent, Run.status)
        )
    ).all()
    for agent, status, n in rows:
        agents.setdefault(agent, AgentDay(agent)).outcomes[status] = n
    undo_rows = (
        await session.exec(
            select(Run.agent, col(Run.undone_by).is_(None), func.count())
            .where(*in_day, col(Run.status) == RunStatus.rolled_back)
            .group_by(Run.agent, col(Run.undone_by).is_(None))
        )
    ).all()
    for agent, automatic, n in undo_rows:
        day = agents.setdefault(agent, AgentDay(agent))
        if automatic:
            day.rolled_back += n
        else:
            day.undone += n
    for agent, votes in (
        await feedback.votes_by_agent(session=session, start=start, end=end, team_id=team_id)
    ).items():
        day = agents.setdefault(agent, AgentDay(agent))
        day.good_votes, day.bad_votes = votes[Vote.good], votes[Vote.bad]
    failures = list(
        (
            await session.exec(
                select(Run)
                .where(
                    *in_day,
                    (col(Run.status) == RunStatus.failed)
                    | ((col(Run.status) == RunStatus.rolled_back) & col(Run.undone_by).is_(None)),
                )
                .order_by(col(Run.id))
            )
        ).all()
    )
    waiting = list(
        (
            await session.exec(
                select(Run)
                .where(Run.status == RunStatus.waiting, col(Run.wait_kind) == WaitKind.human, *mine)
                .order_by(col(Run.id))
            )
        ).all()
    )
    pending = select(Approval).where(Approval.status == ApprovalStatus.pending)
    if team_id is not None:
        pending = pending.join(Run, col(Run.id) == col(Approval.run_id)).where(*mine)
    approvals = list((await session.exec(pending.order_by(col(Approval.id)))).all())
    teams = () if team_id is None else (list(dict.fromkeys(["", team_id])),)
    control_events = list(
        (
            await session.exec(
                select(AuditEvent)
                .where(
                    col(AuditEvent.action).in_(["pause", "resume"]),
                    col(AuditEvent.at) >= start,
                    col(AuditEvent.at) < end,
                    *(col(AuditEvent.team_id).in_(t) for t in teams),
                )
                .order_by(col(AuditEvent.id))
            )
        ).all()
    )
    paused = list(
        (
            await session.exec(
                select(Control).where(Control.paused, *(col(Control.team_id).in_(t) for t in teams))
            )
        ).all()
    )
    usage_rows = (
        await session.exec(
            select(Run.planner, func.count(), func.sum(Run.prompt_tokens), func.sum(Run.completion_tokens))
            .where(*in_day, col(Run.planner).is_not(None))
            .group_by(Run.planner)
        )
    ).all()
    usage = [Usage(p or "", n, int(pt or 0), int(ct or 0)) for p, n, pt, ct in usage_rows]
    handed = select(Run.case_id).where(*in_day, col(Run.case_id).is_not(None)).distinct()
    case_days = []
    for case_id in sorted({c for c in (await session.exec(handed)).all() if c is not None}):
        members = await cases.case_runs(session=session, case_id=case_id)
        if members and members[0].id == case_id:
            case_days.append(CaseDay(members[0], list(dict.fromkeys(m.agent for m in members))))
    report = DayReport(
        start, end, agents, failures, waiting, approvals, control_events, paused, usage, case_days
    )
    report.spend = await spend.model_tokens(session=session, start=start, end=end, team_id=team_id)
    asks = (
        await session.exec(
            select(Run.agent, func.count(func.distinct(Approval.run_id)))
            .join(Run, col(Run.id) == col(Approval.run_id))
            .where(
                col(Approval.tool_call_id).startswith(BUDGET),
                col(Approval.requested_at) >= start,
                col(Approval.requested_at) < end,
                *mine,
            )
            .group_by(col(Run.agent))
        )
    ).all()
    report.budget_asks = {agent: n for agent, n in asks}
    return report


async def claim_summary(
    *, session: AsyncSession, day: str, channel_id: str, force: bool, partial: bool = False, team_id: str = ""
) -> int | None:
    """Claim the right to post `day`'s summary to a channel; None if it was posted already.

    Without `force` only the first caller ever gets it (attempt 0); with `force` a new attempt
    is made. A `partial` post (a day not over yet) is always a new attempt, never attempt 0:
    the day's own summary, once the day is over, is still posted. Returns the claim's id.
    `team_id`: whose summary it is (one workspace's, or "" for every workspace's).
    """
    attempt = 0
    if force or partial:
        last = (
            await session.exec(
                select(func.max(SummaryPost.attempt)).where(
                    col(SummaryPost.team_id) == team_id,
                    col(SummaryPost.day) == day,
                    col(SummaryPost.channel_id) == channel_id,
                )
            )
        ).one()
        attempt = 0 if last is None and not partial else (last or 0) + 1
    return await insert_ignore(
        session,
        SummaryPost,
        {"team_id": team_id, "day": day, "channel_id": channel_id, "attempt": attempt, "claimed_at": now()},
        returning=SummaryPost.id,
    )


async def set_summary_ts(*, session: AsyncSession, claim_id: int, ts: str | None) -> None:
    """Record the posted message, or (ts None) give the claim back after a failed post."""
    post = await session.get(SummaryPost, claim_id)
    if post is None:
        return
    if ts is None:
        await session.delete(post)
    else:
        post.ts = ts
        session.add(post)


async def summary_posted(*, session: AsyncSession, day: str, channel_id: str, team_id: str = "") -> bool:
    stmt = select(SummaryPost.id).where(
        SummaryPost.team_id == team_id, SummaryPost.day == day, col(SummaryPost.channel_id) == channel_id
    )
    return (await session.exec(stmt)).first() is not None
