"""Doing what chat commands and buttons ask: undo, pause, resume, status, approve, deny.

Who may is decided by `bot.authority` before anything here runs; a run or approval named
by number is acted on only where it belongs (`bot.places`). Every control action and
every refusal is written to the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from agents import budget
from agents.config import Config
from bot import control_messages as say
from bot import places
from bot.authority import Authority, not_here
from bot.commands import Command
from bot.control_messages import Reply
from bot.places import Scope, Where
from bot.presenter import Presenter
from bot.summary import Summaries
from bot.surface import OneSurface, Surface, Surfaces
from storage import approvals, audit, cases, controls, journal, requests, runs, spend
from storage.controls import ALL
from storage.engine import Database
from storage.models import Approval, ApprovalStatus, RunStatus, WaitKind

log = logging.getLogger(__name__)

__all__ = ["Controls", "Reply", "Where"]


class Controls:
    def __init__(
        self,
        db: Database,
        config: Config,
        surface: Surface,
        presenter: Presenter,
        wake: Callable[[], None],
        summaries: Summaries,
        surfaces: Surfaces | None = None,
    ) -> None:
        self.summaries = summaries
        self.db = db
        self.config = config
        self.surface = surface
        self.surfaces = surfaces or OneSurface(surface)
        """A control answers in its own workspace, and acts on that workspace's rows only."""
        self.presenter = presenter
        self.wake = wake
        self.authority = Authority(db, config, surface, surfaces=self.surfaces)

    async def role_of(self, user_id: str, *, team_id: str, user_team: str | None = None) -> str:
        """ "member" or "customer": what a request from this user may reach (`Authority`)."""
        return await self.authority.role_of(user_id, team_id=team_id, user_team=user_team)

    # Commands ---------------------------------------------------------------------

    async def run_command(self, command: Command, *, user_id: str, where: Where) -> Reply:
        """Perform a command already authorized."""
        if command.verb == "undo":
            return await self.undo(user_id, where=where, run_id=_int(command.target))
        team = self.surfaces.owner(where.team_id)
        if command.verb in ("pause", "resume"):
            scope = await self._scope(command.target, where)
            if scope is None:
                known = ", ".join(a.name for a in self.config.agents)
                return Reply(f"There is no agent named {command.target!r}. Agents: {known}.")
            if command.verb == "pause":
                return await self.pause(user_id, scope, team_id=team)
            reply = await self.resume(user_id, scope, team_id=team, asked_in=where.team_id)
            if command.target is None and where.thread_ts:
                reply = await self._continue_stopped(user_id, where) or reply
            return reply
        if command.verb == "status":
            return Reply(await self.status(where.scope(user_id)))
        if command.verb == "summary":
            day = date.fromisoformat(command.target) if command.target else self.summaries.today()
            result = await self.summaries.post(day, force=True, channel=where.channel_id, team_id=team)
            if team and not self.summaries.channel(team):
                result += (
                    f' (this workspace gets no daily summary: [teams."{team}"] summary_channel is not set)'
                )
            async with self.db.write() as session:
                await audit.record(
                    session=session, team_id=team, actor=user_id, action="summary", target=where.channel_id
                )
            return Reply(f"Summary: {result}.", public=True)
        return Reply(say.HELP)

    async def undo(self, user_id: str, *, where: Where, run_id: int | None = None) -> Reply:
        """Undo run `run_id` if it belongs here; without a number, the latest run of the thread
        (at channel level: of the channel)."""
        if run_id is not None and where.clicked is not None:
            await places.until_posted(self.db, lambda session: places.run_posting(session, run_id))
        async with self.db.write() as session:
            if run_id is None:
                run = await runs.latest_run(
                    session=session,
                    team_id=where.team_id,
                    channel_id=where.channel_id,
                    thread_ts=where.thread_ts,
                )
                if run is None:
                    return Reply("There is no run here to undo.")
            else:
                run = await places.run_here(session, run_id, user_id, where)
                if run is None:
                    why = places.why_not_here(where)
                    return await not_here(
                        session,
                        user_id,
                        "undo",
                        "run",
                        run_id,
                        why,
                        team_id=self.surfaces.owner(where.team_id),
                    )
            assert run.id is not None
            # A run's undo is its case's: every run started from the same request, across agents.
            state, _ = await cases.request_case_undo(session=session, run_id=run.id, by_user=user_id)
            members = await cases.case_runs(session=session, case_id=run.case)
            withdrawn: list[int] = []
            if state == "requested":
                for member in members:
                    withdrawn += await approvals.withdraw(
                        session=session, run_id=member.id or 0, by_user=user_id
                    )
                await audit.record(
                    session=session,
                    team_id=self.surfaces.owner(run.team_id),
                    actor=user_id,
                    action="undo",
                    target=f"run:{run.id}",
                )
        for approval_id in withdrawn:
            await self.presenter.approval_decided(approval_id)
        if state == "already":
            return Reply(f"Run #{run.id} is already undone (or being undone); nothing more to do.")
        self.wake()
        if len(members) > 1:
            agents = ", ".join(dict.fromkeys(m.agent for m in members))
            return Reply(
                f"Undoing case #{run.case} ({len(members)} runs: {agents}): every run stops at its next "
                "step, then every step of every run is reversed, newest first."
            )
        if run.status == RunStatus.running:
            return Reply(f"Undoing run #{run.id}: it stops at its next step, then every step is reversed.")
        return Reply(f"Undoing run #{run.id}: reversing its steps, newest first.")

    async def undo_choices(self, where: Where) -> Reply:
        """`/agent undo` without a number: the runs here one may undo, each with its button.
        A slash command carries no thread, so there is no "this run" to guess."""
        async with self.db.read() as session:
            choices = await runs.undoable_runs(
                session=session, team_id=where.team_id, channel_id=where.channel_id
            )
        if not choices:
            return Reply("There is no run in this channel that can still be undone.")
        message = say.undo_choices(choices)
        return Reply(message.text, blocks=message.blocks)

    async def did_you_mean(self, meant: Command, *, user_id: str, where: Where) -> Reply:
        """A near-miss of a command: ask, with a button that does the command as meant here."""
        if meant.verb == "undo":
            async with self.db.read() as session:
                run = await runs.latest_run(
                    session=session,
                    team_id=where.team_id,
                    channel_id=where.channel_id,
                    thread_ts=where.thread_ts,
                )
            if run is None:
                message = say.did_you_mean(meant, nothing="There is no run here to undo.")
            else:
                message = say.did_you_mean(meant, run_id=run.id)
        else:
            if meant.verb in ("pause", "resume") and meant.target is None:
                # A button has no thread to look at later: name the agent now.
                meant = Command(meant.verb, await self._scope(None, where))
            message = say.did_you_mean(meant)
        return Reply(message.text, blocks=message.blocks, private=True)

    async def pause(self, user_id: str, scope: str, *, team_id: str = "") -> Reply:
        """Pause `scope` in workspace `team_id` ("": in every workspace)."""
        async with self.db.write() as session:
            changed = await controls.set_paused(
                session=session, scope=scope, paused=True, by_user=user_id, team_id=team_id
            )
            if changed:
                await audit.record(
                    session=session, team_id=team_id, actor=user_id, action="pause", target=_target(scope)
                )
        what = "All agents are" if scope == ALL else f"Agent *{scope}* is"
        if not changed:
            return Reply(f"{what} already paused.")
        return Reply(
            f":double_vertical_bar: {what} paused by <@{user_id}> at {say.clock()}. No new action starts; "
            "runs in flight wait at their next step and new requests are queued. "
            f"`resume{' all' if scope == ALL else ' agent ' + scope}` continues.",
            public=True,
        )

    async def resume(self, user_id: str, scope: str, *, team_id: str = "", asked_in: str = "") -> Reply:
        """Lift the pauses of `scope` in workspace `team_id` (its own: a workspace does not lift
        a pause of every workspace); `asked_in`: the team asked from, to say what still holds."""
        async with self.db.write() as session:
            # Read before set_paused changes them (the rows are the session's own objects). A
            # workspace lifts its own pauses, not those of every workspace.
            flags = await controls.all_controls(session=session, team_id=team_id)
            paused = {c.scope: c.reason for c in flags if c.paused and c.team_id == team_id}
            scopes = list(paused) if scope == ALL else [scope]
            changed = [
                s
                for s in scopes
                if await controls.set_paused(
                    session=session, scope=s, paused=False, by_user=user_id, team_id=team_id
                )
            ]
            # An agent that paused itself at its daily cap would pause again at its next step:
            # a person's resume lets it spend another cap's worth today (agents.budget).
            room = [await self._more_room(session, s) for s in changed if paused.get(s) == budget.CAP_REASON]
            requeued = await runs.requeue_waiting(
                session=session,
                kind=WaitKind.paused,
                agent=None if scope == ALL else scope,
                team_id=team_id or None,
            )
            for s in changed:
                await audit.record(
                    session=session, team_id=team_id, actor=user_id, action="resume", target=_target(s)
                )
        self.wake()
        for run_id in requeued:
            await self.presenter.run_progressed(run_id)
        what = "All agents" if scope == ALL else f"Agent *{scope}*"
        if not changed:
            return Reply(f"{what} {'were' if scope == ALL else 'was'} not paused.")
        still = ""
        if scope != ALL:
            async with self.db.read() as session:
                if await controls.paused_scope(session=session, agent=scope, team_id=asked_in or team_id):
                    still = " (all agents are still paused: `resume all` lifts that)"
        return Reply(
            f":arrow_forward: {what} resumed by <@{user_id}> at {say.clock()}{still}. "
            f"{len(requeued)} waiting run{'s continue' if len(requeued) != 1 else ' continues'}."
            + "".join(room),
            public=True,
        )

    async def _more_room(self, session: AsyncSession, agent: str) -> str:
        return await more_room(session=session, config=self.config, agent=agent)

    async def _continue_stopped(self, user_id: str, where: Where) -> Reply | None:
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
            await audit.record(
                session=session,
                team_id=self.surfaces.owner(run.team_id),
                actor=user_id,
                action="resume",
                target=f"run:{run.id}",
            )
        self.wake()
        return Reply(f":arrow_forward: Run #{run.id} continues, at the request of <@{user_id}>.", public=True)

    async def status(self, scope: Scope) -> str:
        """Agents and their pause state, and the runs and approvals `scope` may see."""
        async with self.db.read() as session:
            flags = {
                c.scope: c
                for c in await controls.all_controls(session=session, team_id=scope.team_id)
                if c.paused
            }
            active = await runs.runs_in_flight_in_scope(
                session=session,
                team_id=scope.team_id,
                channel_id=scope.channel_id,
                requested_by=scope.requested_by,
            )
            waiting = await approvals.pending_approvals_in_scope(
                session=session,
                team_id=scope.team_id,
                channel_id=scope.channel_id,
                requested_by=scope.requested_by,
            )
            # A run that is part of a case is shown in its case's tree (its other runs may work
            # in other channels: their agents and states are shown, not their content).
            trees = {
                case: members
                for case in dict.fromkeys(r.case for r in active)
                if len(members := await cases.case_runs(session=session, case_id=case)) > 1
            }
        here = "in this channel" if scope.channel_id is not None else "of yours"
        return say.status_text(
            [a.name for a in self.config.agents], flags, active, waiting, here=here, cases=trees
        )

    async def decide(self, user_id: str, approval_id: int, *, approve: bool, where: Where) -> Reply:
        """Approve or deny, from the approval's own Approve/Deny message only, as its policy says:
        its approvers (default: whoever may control agents), the requester only when
        `self_approval` allows, and `needed` different people to approve (one Deny is final).
        Every decision and every refusal is audited."""
        verb = "approve" if approve else "deny"
        await places.until_posted(self.db, lambda session: places.approval_posting(session, approval_id))
        refused: str | None = None
        async with self.db.write() as session:
            approval = await places.approval_here(session, approval_id, where)
            if approval is None:
                why = f"not the approval of message {where.message_ts} in {where.channel_id}"
                team = self.surfaces.owner(where.team_id)
                return await not_here(session, user_id, verb, "approval", approval_id, why, team_id=team)
            # Locked: two people deciding at once are counted one after the other.
            approval = await approvals.lock_approval(session=session, approval_id=approval_id)
            assert approval is not None
            if approval.status != ApprovalStatus.pending:
                return Reply(f"Already decided: {approval.status}.")
            run = await runs.get_run(session=session, run_id=approval.run_id)
            request = await requests.get_request(session=session, request_id=run.request_id) if run else None
            earlier = await approvals.decisions(session=session, approval_id=approval_id)
            refused = self.authority.decision_refusal(
                user_id,
                approval,
                requester=request.user_id if request else "",
                approve=approve,
                decided=[d.user_id for d in earlier],
            )
            if refused is None:
                reply, done = await self._decide(
                    session, user_id, approval, approve=approve, earlier=len(earlier)
                )
        if refused is not None:
            return await self.authority.refused(
                user_id, verb, refused, target=f"approval:{approval_id}", team_id=where.team_id
            )
        if done:
            self.wake()
        await self.presenter.approval_decided(approval_id)
        return reply

    async def _decide(
        self, session: AsyncSession, user_id: str, approval: Approval, *, approve: bool, earlier: int
    ) -> tuple[Reply, bool]:
        """Record one person's decision (in the caller's transaction, the approval locked); True
        when it decides the approval (a Deny, or the last approval needed) and the run goes on."""
        assert approval.id is not None
        verb = "approve" if approve else "deny"
        await approvals.record_decision(
            session=session, approval_id=approval.id, user_id=user_id, decision=verb
        )
        approved = earlier + 1  # those before were approvals: a deny would have decided it
        done = not approve or approved >= approval.needed
        count = f" ({approved} of {approval.needed})" if approve and approval.needed > 1 else ""
        run = await runs.get_run(session=session, run_id=approval.run_id)
        await audit.record(
            session=session,
            team_id=self.surfaces.owner(run.team_id if run else ""),
            actor=user_id,
            action=verb,
            target=f"approval:{approval.id}",
            detail=f"run #{approval.run_id}: {approval.action}{count}",
        )
        if not done:
            left = approval.needed - approved
            return (
                Reply(
                    f"{approval.action} for run #{approval.run_id}: approved by <@{user_id}>{count}; "
                    f"it waits for {left} more approver{'s' * (left != 1)}."
                ),
                False,
            )
        status = ApprovalStatus.approved if approve else ApprovalStatus.denied
        await approvals.decide(session=session, approval_id=approval.id, status=status, by_user=user_id)
        await runs.requeue(session=session, run_id=approval.run_id)
        if approvals.is_budget(approval):
            terms = approval.arguments or {}
            more, used = int(terms.get("more") or 0), int(terms.get("used") or 0)
            if approve:
                text = (
                    f"Run #{approval.run_id} continues at the request of <@{user_id}>, with another "
                    f"{more:,} tokens (up to {used + more:,})."
                )
            else:
                text = f"Run #{approval.run_id} stops at its token budget, at the request of <@{user_id}>."
            return Reply(text), True
        verbed = "approved" if approve else "denied"
        return Reply(f"{approval.action} for run #{approval.run_id} {verbed} by <@{user_id}>{count}."), True

    async def expire_approvals(self) -> int:
        """Expire approvals past their deadline; their runs fail (with rollback per policy)."""
        async with self.db.write() as session:
            expired = await approvals.expire_due(session=session)
            for a in expired:
                await runs.requeue(session=session, run_id=a.run_id)
                run = await runs.get_run(session=session, run_id=a.run_id)
                await audit.record(
                    session=session,
                    team_id=self.surfaces.owner(run.team_id if run else ""),
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


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _target(scope: str) -> str:
    return "agent:*" if scope == ALL else f"agent:{scope}"


async def more_room(*, session: AsyncSession, config: Config, agent: str) -> str:
    """Another cap's worth of spend today for an agent that paused itself at its daily cap
    (a resume lets it go on; otherwise it would pause again at its next step); says so."""
    agent_config = config.agent(agent)
    if agent_config is None or agent_config.max_cost_per_day is None:
        return ""
    cap = agent_config.max_cost_per_day
    day = budget.today(ZoneInfo(config.summary.timezone))
    limit = await spend.allow_more(session=session, agent=agent, day=day, cap=cap)
    await audit.record(
        session=session,
        actor="system",
        action="budget",
        target=f"agent:{agent}",
        detail=f"${limit:,.2f} on {day}",
    )
    return (
        f" *{agent}* had paused itself at its daily cap (max_cost_per_day ${cap:,.2f}): it may spend "
        f"another ${cap:,.2f} today (${limit:,.2f} in all); raise max_cost_per_day to change the cap."
    )
