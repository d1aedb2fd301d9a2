"""The watchdog: notices what nobody is there to notice, and says so once.

Conditions: stuck runs, an agent's failure rate or undo rate over a window, a burst of
Bad votes on an agent's answers, repeated model failures, repeated Slack failures, an MCP
server that is down. Each raises one alert in the alert channel until it clears (then a note
says so). A crossed failure or undo rate pauses the agent (the circuit breaker); the alert
says why and how to resume.
With many workspaces, a condition of one workspace's runs (stuck, rates, votes, crashes) is
that workspace's: its alert goes to its own `[teams."T…"] alerts_channel` only, and its breaker
pauses the agent there only; what concerns the whole process (the model, Slack, MCP servers,
the daily cost cap) goes to the operator's `[alerts] channel` (in the workspace `[alerts] team`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from agents import budget
from agents.config import Config
from agents.mcp import McpManager
from bot.surface import OneSurface, Surface, Surfaces
from storage import alerts, audit, controls, feedback, spend
from storage.clock import now
from storage.engine import Database
from storage.models import ACTIVE_STATUSES, Alert, RunStatus, Vote, WaitKind

log = logging.getLogger(__name__)


@dataclass
class Condition:
    key: str
    message: str
    pause_agent: str | None = None
    team_id: str = ""
    """The workspace whose runs it is about (`Surfaces.owner`); "": the whole process."""


class SlackHealth:
    """Failed Slack Web API calls in this process (every thread of it), for the watchdog."""

    def __init__(self) -> None:
        self.failures: deque[float] = deque(maxlen=1000)

    def failed(self) -> None:
        self.failures.append(time.monotonic())

    def recent(self, seconds: float) -> int:
        cutoff = time.monotonic() - seconds
        # A copy (made in one step): another thread of the process may record a failure meanwhile.
        return sum(1 for t in list(self.failures) if t >= cutoff)


class Watchdog:
    def __init__(
        self,
        db: Database,
        config: Config,
        surface: Surface,
        slack_health: SlackHealth,
        *,
        max_crashes: int = 3,
        mcp: McpManager | None = None,
        surfaces: Surfaces | None = None,
    ) -> None:
        self.max_crashes = max_crashes
        self.mcp = mcp
        self.db = db
        self.config = config
        self.surface = surface
        self.surfaces = surfaces or OneSurface(surface)
        self.slack_health = slack_health
        self.channel = config.alerts.channel or config.summary.channel
        self._unposted: set[str] = set()  # workspaces ("" the operator) said to have no alert channel

    async def check(self) -> list[str]:
        """Raise new alerts, clear old ones; returns the keys of conditions that hold now."""
        conditions = await self.conditions()
        async with self.db.read() as session:
            active = {(a.team_id, a.key): a for a in await alerts.active_alerts(session=session)}
        for c in conditions:
            if (c.team_id, c.key) not in active:
                await self._raise(c)
        holding = {(c.team_id, c.key) for c in conditions}
        for (team, key), alert in active.items():
            if (team, key) not in holding and not key.startswith(EVENTS):
                await self._clear(alert)
        return sorted(f"{team}:{key}" if team else key for team, key in holding)

    async def conditions(self) -> list[Condition]:
        cfg = self.config.alerts
        t = now()
        window = timedelta(minutes=cfg.window_minutes)
        found: list[Condition] = []
        async with self.db.read() as session:
            for run in await alerts.stuck_runs(
                session=session, before=t - timedelta(minutes=cfg.stuck_minutes)
            ):
                if run.status == RunStatus.queued and await controls.paused_scope(
                    session=session, agent=run.agent, team_id=run.team_id
                ):
                    continue  # waiting for a resume is not being stuck
                found.append(
                    Condition(
                        f"stuck:run:{run.id}",
                        f":hourglass: Run #{run.id} ({run.agent}) has made no progress for over "
                        f"{cfg.stuck_minutes:g} minutes (status {run.status}). Its thread: "
                        f"{_thread_link(run.channel_id, run.thread_ts)}",
                        team_id=self.surfaces.owner(run.team_id),
                    )
                )
            teams = {
                self.surfaces.owner(x) for x in await alerts.finished_teams(session=session, since=t - window)
            }
            for team, agent in [(team, agent) for team in sorted(teams) for agent in self.config.agents]:
                since = t - window
                resumed = await alerts.last_resume(session=session, agent=agent.name, team_id=team or None)
                if resumed is not None and resumed > since:
                    since = resumed  # after a human resumes, count afresh
                rows = [
                    r
                    for r in await alerts.finished_since(session=session, since=since, team_id=team or None)
                    if r[0] == agent.name
                ]
                finished = sum(n for *_, n in rows)
                if finished < cfg.min_runs:
                    continue
                failed = sum(
                    n
                    for _, s, undone, n in rows
                    if s == RunStatus.failed or (s == RunStatus.rolled_back and not undone)
                )
                undone = sum(n for _, _, u, n in rows if u)
                breaker = agent.name if cfg.pause_on_breach else None
                if failed / finished >= cfg.failure_rate:
                    found.append(
                        Condition(
                            f"failure_rate:{agent.name}",
                            f":rotating_light: Agent *{agent.name}*: {failed} of its last {finished} "
                            "runs failed "
                            f"(threshold {cfg.failure_rate:.0%} over {cfg.window_minutes:g} min).",
                            breaker,
                            team,
                        )
                    )
                if undone / finished >= cfg.undo_rate:
                    found.append(
                        Condition(
                            f"undo_rate:{agent.name}",
                            f":rotating_light: Agent *{agent.name}*: people undid {undone} of its last "
                            f"{finished} runs "
                            f"(threshold {cfg.undo_rate:.0%} over {cfg.window_minutes:g} min).",
                            breaker,
                            team,
                        )
                    )
            voted = {
                self.surfaces.owner(x) for x in await feedback.voted_teams(session=session, start=t - window)
            }
            for team in sorted(voted):
                votes = await feedback.votes_by_agent(session=session, start=t - window, team_id=team or None)
                found += self._negative(votes, team)
            for members in await alerts.stalled_cases(
                session=session, before=t - timedelta(minutes=cfg.stuck_minutes)
            ):
                at = [m for m in members if m.status in ACTIVE_STATUSES][-1]  # the newest still in flight
                if at.wait_kind == WaitKind.paused:
                    continue  # waiting for a resume is not being stuck
                route = " → ".join(dict.fromkeys(m.agent for m in members))
                found.append(
                    Condition(
                        f"stuck:case:{members[0].id}",
                        f":hourglass: Case #{members[0].id} ({route}) has made no progress for over "
                        f"{cfg.stuck_minutes:g} minutes. It is at *{at.agent}*: run #{at.id}, {at.status}"
                        + (f" ({at.wait_reason})" if at.wait_reason else "")
                        + f". Its thread: {_thread_link(at.channel_id, at.thread_ts)}",
                        team_id=self.surfaces.owner(at.team_id),
                    )
                )
            for run in await alerts.crashed_runs(session=session, since=t - window, crashes=self.max_crashes):
                found.append(
                    Condition(
                        f"crashed:run:{run.id}",
                        f":boom: Run #{run.id} ({run.agent}) crashed its worker {run.crashes} times and was "
                        f"stopped ({run.status.replace('_', ' ')}). Look at the logs for run_id={run.id}; "
                        f"its thread: {_thread_link(run.channel_id, run.thread_ts)}",
                        team_id=self.surfaces.owner(run.team_id),
                    )
                )
            found += await self._capped(session)
            model_failures = await alerts.model_failures_since(session=session, since=t - window)
        if model_failures >= cfg.model_failures:
            found.append(
                Condition(
                    "model_failures",
                    f":warning: The model failed {model_failures} times in {cfg.window_minutes:g} min: "
                    "check OPENAI_BASE_URL, the API key and the provider's status.",
                )
            )
        slack_failures = self.slack_health.recent(window.total_seconds())
        if slack_failures >= cfg.slack_failures:
            found.append(
                Condition(
                    "slack_failures",
                    f":warning: {slack_failures} Slack API calls failed in {cfg.window_minutes:g} min "
                    "(rate limits or outages); undelivered outcomes are retried.",
                )
            )
        found += self._mcp_conditions()
        return found

    def _negative(self, votes: dict[str, dict[str, int]], team: str) -> list[Condition]:
        """Agents whose answers got a burst of Bad votes (in workspace `team`: its own runs)."""
        cfg = self.config.alerts
        found = []
        for agent in self.config.agents:
            bad = votes.get(agent.name, {}).get(Vote.bad, 0)
            if bad >= cfg.negative_votes:
                # An alert, never the circuit breaker: customers vote too, and they must not be
                # able to pause an agent.
                found.append(
                    Condition(
                        f"negative_feedback:{agent.name}",
                        f":-1: Agent *{agent.name}*: people voted {bad} of its answers Bad in "
                        f"{cfg.window_minutes:g} min (threshold {cfg.negative_votes}). "
                        "Look at its recent runs and their threads.",
                        team_id=team,
                    )
                )
        return found

    def _mcp_conditions(self) -> list[Condition]:
        """MCP servers of this process that are down: their tools fail until they are back."""
        if self.mcp is None:
            return []
        return [
            Condition(
                f"mcp_down:{state.name}",
                f":electric_plug: MCP server *{state.name}* {state.describe()}. Its tools fail until it is "
                "back; chatops keeps restarting it (with backoff).",
            )
            for state in self.mcp.states()
            if state.down
        ]

    def _destination(self, team_id: str) -> tuple[Surface, str | None]:
        """Where an alert of `team_id` goes: the workspace's own alerts channel; for the whole
        process (""), the operator's `[alerts] channel`, in the workspace `[alerts] team`."""
        if team_id:
            channel = self.config.team(team_id).alerts_channel
            surface = self.surfaces.for_team(team_id)
        else:
            channel = self.channel
            surface = self.surfaces.for_team(self.config.alerts.team or "")
        if channel is None and team_id not in self._unposted:
            self._unposted.add(team_id)
            where = f'[teams."{team_id}"] alerts_channel' if team_id else "[alerts] channel"
            log.warning(
                "alerts of %s are not posted: no %s", f"workspace {team_id}" if team_id else "chatops", where
            )
        return surface, channel

    async def _capped(self, session: AsyncSession) -> list[Condition]:
        """Agents that paused themselves at their daily cap (agents.budget): why, and how to resume."""
        found = []
        day = budget.today(ZoneInfo(self.config.summary.timezone))
        for control in await controls.all_controls(session=session):
            agent = self.config.agent(control.scope)
            if not control.paused or control.reason != budget.CAP_REASON or agent is None:
                continue
            cap = agent.max_cost_per_day or 0.0
            row = await spend.of_day(session=session, agent=agent.name, day=day)
            spent = f"${row.cost:,.4f}" if row else "its cap"
            limit = cap + (row.extra if row else 0.0)
            found.append(
                Condition(
                    f"cost_cap:{agent.name}",
                    f":money_with_wings: Agent *{agent.name}* paused itself: its runs spent {spent} today "
                    f"({day}, {self.config.summary.timezone}), over its daily cap of "
                    f"${limit:,.2f} (max_cost_per_day). Its runs wait at their next "
                    f"step. `resume agent {agent.name}` (or `/agent resume {agent.name}`; with many "
                    f"workspaces, `chatops resume {agent.name}` where chatops runs) lets it spend "
                    f"another ${cap:,.2f} today; to change the cap, raise max_cost_per_day in the "
                    "configuration.",
                )
            )
        return found

    async def _raise(self, c: Condition) -> None:
        message = c.message
        if c.pause_agent:
            message += await self._trip(c)
        surface, channel = self._destination(c.team_id)
        async with self.db.write() as session:
            alert = await alerts.raise_alert(
                session=session, key=c.key, message=message, channel_id=channel, team_id=c.team_id
            )
        if alert is None or alert.id is None:
            return  # another process raised it first
        log.warning("alert %s%s: %s", c.key, f" (workspace {c.team_id})" if c.team_id else "", message)
        if channel:
            try:
                ts = await surface.post(channel=channel, text=message)
            except Exception:  # broad on purpose: the alert is recorded; posting is retried as a new alert
                log.exception("posting alert %s failed", c.key)
                return
            async with self.db.write() as session:
                await alerts.set_alert_ts(session=session, alert_id=alert.id, ts=ts)

    async def _trip(self, c: Condition) -> str:
        """The circuit breaker: pause the agent."""
        agent = c.pause_agent or ""
        async with self.db.write() as session:
            changed = await controls.set_paused(
                session=session, scope=agent, paused=True, by_user="system", reason=c.key, team_id=c.team_id
            )
            if changed:
                await audit.record(
                    session=session,
                    team_id=c.team_id,
                    actor="system",
                    action="pause",
                    target=f"agent:{agent}",
                    detail=c.key,
                )
        if not changed:
            return f" Agent *{agent}* is already paused."
        return (
            f" Agent *{agent}* has been paused automatically (circuit breaker): no new action starts. "
            f"Look at its recent runs, then `resume agent {agent}` (or `/agent resume {agent}`) to continue."
        )

    async def _clear(self, alert: Alert) -> None:
        assert alert.id is not None
        async with self.db.write() as session:
            if not await alerts.clear_alert(session=session, alert_id=alert.id):
                return
        log.info("alert %s cleared", alert.key)
        surface, channel = self._destination(alert.team_id)
        channel = alert.channel_id or channel
        if channel:
            note = f":white_check_mark: Cleared: {CLEARED.get(alert.key.split(':')[0], alert.key)}."
            try:
                await surface.post(channel=channel, text=note, thread_ts=alert.ts or None)
            except Exception:  # broad on purpose: the clear is recorded either way
                log.exception("posting the clear of alert %s failed", alert.key)


# Alerts about something that happened (not a state that holds): they are never "cleared".
EVENTS = ("crashed:",)


def _thread_link(channel: str, thread_ts: str) -> str:
    return f"https://slack.com/archives/{channel}/p{thread_ts.replace('.', '')}"


CLEARED = {
    "stuck": "it is moving again (or finished)",
    "failure_rate": "the failure rate is back under its threshold",
    "undo_rate": "the undo rate is back under its threshold",
    "negative_feedback": "fewer Bad votes than the threshold now",
    "model_failures": "the model answers again",
    "slack_failures": "Slack calls succeed again",
    "mcp_down": "the MCP server is connected again",
    "cost_cap": "the agent was resumed",
}
