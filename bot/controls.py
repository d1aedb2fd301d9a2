"""Doing what chat commands and buttons ask: undo, pause, resume, status, approve, deny.

Authorization is decided here, in code, never by the model: guests, users of
other workspaces and (when `control.admins` is set) non-admins are refused.
Every control action and every refusal is written to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from agents.config import Config
from bot.commands import Command
from bot.presenter import Presenter
from bot.summary import Summaries
from bot.surface import Surface, UserInfo
from storage import approvals, audit, controls, journal, runs
from storage.clock import now
from storage.controls import ALL
from storage.engine import Database
from storage.models import ApprovalStatus, Run, RunStatus, WaitKind

log = logging.getLogger(__name__)

USER_LOOKUP_SECONDS = 2.0  # users.info must not hold the ack past Slack's 3 s


@dataclass(frozen=True)
class Where:
    """Where a command was given: the workspace, the channel and (maybe) the thread."""

    team_id: str
    channel_id: str
    thread_ts: str | None


class Controls:
    def __init__(
        self,
        db: Database,
        config: Config,
        surface: Surface,
        presenter: Presenter,
        wake: Callable[[], None],
        summaries: Summaries,
    ) -> None:
        self.summaries = summaries
        self.db = db
        self.config = config
        self.surface = surface
        self.presenter = presenter
        self.wake = wake

    # Who may ----------------------------------------------------------------------

    async def refusal(self, user_id: str, *, team_id: str, user_team: str | None = None) -> str | None:
        """Why this user may not control agents, or None when they may."""
        reason = await self.not_a_member(user_id, team_id=team_id, user_team=user_team)
        if reason is None and self.config.control.admins and user_id not in self.config.control.admins:
            reason = "only the agents' admins (control.admins) can control agents"
        return reason

    async def not_a_member(self, user_id: str, *, team_id: str, user_team: str | None = None) -> str | None:
        """Why this user is not a full member of the workspace (a customer), or None."""
        if user_team and team_id and user_team != team_id:
            return "people from other workspaces cannot control agents here"
        try:
            async with asyncio.timeout(USER_LOOKUP_SECONDS):
                info = await self.surface.user(user_id)
        except TimeoutError:
            info = None
        return _refusal(info, team_id=team_id)

    async def role_of(self, user_id: str, *, team_id: str, user_team: str | None = None) -> str:
        """ "member" or "customer": what a request from this user may reach."""
        problem = await self.not_a_member(user_id, team_id=team_id, user_team=user_team)
        return "member" if problem is None else "customer"

    async def refused(self, user_id: str, verb: str, reason: str) -> str:
        async with self.db.write() as session:
            await audit.record(session=session, actor=user_id, action="refused", target=verb, detail=reason)
        log.info("refused %s from %s: %s", verb, user_id, reason)
        return f"Sorry <@{user_id}>, you can't {verb} agents: {reason}."

    # Commands ---------------------------------------------------------------------

    async def run_command(self, command: Command, *, user_id: str, where: Where) -> str:
        """Perform a command already authorized; returns the reply."""
        if command.verb == "undo":
            return await self.undo(user_id, where=where, run_id=_int(command.target))
        if command.verb in ("pause", "resume"):
            scope = await self._scope(command.target, where)
            if scope is None:
                known = ", ".join(a.name for a in self.config.agents)
                return f"There is no agent named {command.target!r}. Agents: {known}."
            if command.verb == "pause":
                return await self.pause(user_id, scope)
            reply = await self.resume(user_id, scope)
            if command.target is None and where.thread_ts:
                reply = await self._continue_stopped(user_id, where) or reply
            return reply
        if command.verb == "status":
            return await self.status()
        if command.verb == "summary":
            day = date.fromisoformat(command.target) if command.target else self.summaries.today()
            result = await self.summaries.post(day, force=True, channel=where.channel_id)
            async with self.db.write() as session:
                await audit.record(session=session, actor=user_id, action="summary", target=where.channel_id)
            return f"Summary: {result}."
        return HELP

    async def undo(self, user_id: str, *, where: Where, run_id: int | None = None) -> str:
        async with self.db.write() as session:
            run = await self._target_run(session, where, run_id)
            if run is None:
                return "There is no run here to undo." if run_id is None else f"There is no run #{run_id}."
            assert run.id is not None
            state = await runs.request_undo(session=session, run_id=run.id, by_user=user_id)
            withdrawn: list[int] = []
            if state == "requested":
                withdrawn = await approvals.withdraw(session=session, run_id=run.id, by_user=user_id)
                await audit.record(session=session, actor=user_id, action="undo", target=f"run:{run.id}")
        for approval_id in withdrawn:
            await self.presenter.approval_decided(approval_id)
        if state == "already":
            return f"Run #{run.id} is already undone (or being undone); nothing more to do."
        self.wake()
        if run.status == RunStatus.running:
            return f"Undoing run #{run.id}: it stops at its next step, then every step is reversed."
        return f"Undoing run #{run.id}: reversing its steps, newest first."

    async def pause(self, user_id: str, scope: str) -> str:
        async with self.db.write() as session:
            changed = await controls.set_paused(session=session, scope=scope, paused=True, by_user=user_id)
            if changed:
                await audit.record(session=session, actor=user_id, action="pause", target=_target(scope))
        what = "All agents are" if scope == ALL else f"Agent *{scope}* is"
        if not changed:
            return f"{what} already paused."
        return (
            f":double_vertical_bar: {what} paused by <@{user_id}> at {_clock()}. No new action starts; "
            "runs in flight wait at their next step and new requests are queued. "
            f"`resume{' all' if scope == ALL else ' agent ' + scope}` continues."
        )

    async def resume(self, user_id: str, scope: str) -> str:
        async with self.db.write() as session:
            if scope == ALL:
                scopes = [c.scope for c in await controls.all_controls(session=session) if c.paused]
            else:
                scopes = [scope]
            changed = [
                s
                for s in scopes
                if await controls.set_paused(session=session, scope=s, paused=False, by_user=user_id)
            ]
            requeued = await runs.requeue_waiting(
                session=session, kind=WaitKind.paused, agent=None if scope == ALL else scope
            )
            for s in changed:
                await audit.record(session=session, actor=user_id, action="resume", target=_target(s))
        self.wake()
        for run_id in requeued:
            await self.presenter.run_progressed(run_id)
        what = "All agents" if scope == ALL else f"Agent *{scope}*"
        if not changed:
            return f"{what} {'were' if scope == ALL else 'was'} not paused."
        still = ""
        if scope != ALL:
            async with self.db.read() as session:
                if await controls.paused_scope(session=session, agent=scope):
                    still = " (all agents are still paused: `resume all` lifts that)"
        return (
            f":arrow_forward: {what} resumed by <@{user_id}> at {_clock()}{still}. "
            f"{len(requeued)} waiting run{'s continue' if len(requeued) != 1 else ' continues'}."
        )

    async def _continue_stopped(self, user_id: str, where: Where) -> str | None:
        """`resume` in the thread of a run that stopped for a human: go on from where it was.

        The interrupted step is marked failed ("result unknown"), so the model decides
        what to do next knowing that.
        """
        async with self.db.write() as session:
            run = await runs.latest_run(
                session=session, team_id=where.team_id, channel_id=where.channel_id, thread_ts=where.thread_ts
            )
            if run is None or run.id is None or run.status != RunStatus.waiting:
                return None
            if run.wait_kind != WaitKind.human:
                return None
            await journal.settle_intents(
                session=session,
                run_id=run.id,
                error=f"interrupted by a crash; result unknown; <@{user_id}> chose to continue",
            )
            await runs.requeue(session=session, run_id=run.id)
            await audit.record(session=session, actor=user_id, action="resume", target=f"run:{run.id}")
        self.wake()
        return f":arrow_forward: Run #{run.id} continues, at the request of <@{user_id}>."

    async def status(self) -> str:
        async with self.db.read() as session:
            flags = {c.scope: c for c in await controls.all_controls(session=session) if c.paused}
            active = await runs.runs_in_flight(session=session)
            waiting = await approvals.pending_approvals(session=session)
        lines = ["*Agents*"]
        if ALL in flags:
            c = flags[ALL]
            lines.append(
                f":double_vertical_bar: ALL AGENTS PAUSED by <@{c.by_user}> since {_clock(c.changed_at)}"
            )
        for agent in self.config.agents:
            flag = flags.get(agent.name)
            state = f"paused by <@{flag.by_user}> since {_clock(flag.changed_at)}" if flag else "active"
            if flag is None and ALL in flags:
                state = "paused (all agents)"
            mine = [r for r in active if r.agent == agent.name]
            lines.append(f"• *{agent.name}*: {state}; {len(mine)} run{'s' * (len(mine) != 1)} in flight")
        lines.append("*Runs in flight*" if active else "*Runs in flight*: none")
        for r in active[:20]:
            why = f" ({r.wait_reason})" if r.wait_reason else ""
            lines.append(f"• run #{r.id} ({r.agent}): {r.status}{why}")
        if len(active) > 20:
            lines.append(f"• … and {len(active) - 20} more")
        lines.append("*Approvals waiting*" if waiting else "*Approvals waiting*: none")
        for a in waiting[:20]:
            lines.append(f"• run #{a.run_id}: {a.action} (expires {_clock(a.expires_at)})")
        return "\n".join(lines)

    async def decide(self, user_id: str, approval_id: int, *, approve: bool) -> str:
        status = ApprovalStatus.approved if approve else ApprovalStatus.denied
        async with self.db.write() as session:
            approval = await approvals.get_approval(session=session, approval_id=approval_id)
            if approval is None:
                return "That approval no longer exists."
            if not await approvals.decide(
                session=session, approval_id=approval_id, status=status, by_user=user_id
            ):
                return f"Already decided: {approval.status}."
            await runs.requeue(session=session, run_id=approval.run_id)
            await audit.record(
                session=session,
                actor=user_id,
                action="approve" if approve else "deny",
                target=f"approval:{approval_id}",
                detail=f"run #{approval.run_id}: {approval.action}",
            )
        self.wake()
        await self.presenter.approval_decided(approval_id)
        verb = "approved" if approve else "denied"
        return f"{approval.action} for run #{approval.run_id} {verb} by <@{user_id}>."

    async def expire_approvals(self) -> int:
        """Expire approvals past their deadline; their runs fail (with rollback per policy)."""
        async with self.db.write() as session:
            expired = await approvals.expire_due(session=session)
            for a in expired:
                await runs.requeue(session=session, run_id=a.run_id)
                await audit.record(
                    session=session,
                    actor="system",
                    action="expire",
                    target=f"approval:{a.id}",
                    detail=f"run #{a.run_id}: {a.action}",
                )
        if expired:
            self.wake()
        for a in expired:
            assert a.id is not None
            await self.presenter.approval_decided(a.id)
        return len(expired)

    # Helpers ----------------------------------------------------------------------

    async def _scope(self, target: str | None, where: Where) -> str | None:
        if target == "all":
            return ALL
        if target:
            return next((a.name for a in self.config.agents if a.name.lower() == target.lower()), None)
        if where.thread_ts:
            async with self.db.read() as session:
                run = await runs.latest_run(
                    session=session,
                    team_id=where.team_id,
                    channel_id=where.channel_id,
                    thread_ts=where.thread_ts,
                )
            if run is not None:
                return run.agent
        served = self.config.agent_for_channel(where.channel_id)
        return (served or self.config.default_agent).name

    async def _target_run(self, session: object, where: Where, run_id: int | None) -> Run | None:
        if run_id is not None:
            return await runs.get_run(session=session, run_id=run_id)  # type: ignore[arg-type]
        return await runs.latest_run(
            session=session,  # type: ignore[arg-type]
            team_id=where.team_id,
            channel_id=where.channel_id,
            thread_ts=where.thread_ts,
        )


def _refusal(info: UserInfo | None, *, team_id: str) -> str | None:
    if info is None:
        return "I could not verify who you are in this workspace"
    if info.is_restricted or info.is_ultra_restricted:
        return "guests cannot control agents"
    if info.is_stranger or (team_id and info.team_id and info.team_id != team_id):
        return "people from other workspaces cannot control agents here"
    if info.is_bot or info.deleted:
        return "only people can control agents"
    return None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _target(scope: str) -> str:
    return "agent:*" if scope == ALL else f"agent:{scope}"


def _clock(at: object = None) -> str:
    t = at or now()
    return t.strftime("%Y-%m-%d %H:%M UTC")  # type: ignore[attr-defined]


HELP = (
    "*chatops commands* (plain words in a thread or channel, or `/agent …`):\n"
    "• `undo` (or `/agent undo [run]`): reverse the thread's latest run (in a channel: its latest run)\n"
    "• `pause agent [name]`, `pause all agents`: stop agents at their next step; `resume …` continues\n"
    "• `status`: agents, runs in flight, approvals waiting\n"
    "• anything else is a request: `/agent create a ticket for the login bug`"
)
