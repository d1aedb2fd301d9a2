"""The daily summary: what the agents did yesterday, and what needs a human.

Exactly one post per date and channel: the post is claimed in the database
before it is sent, so several processes (or a restart at the scheduled minute)
never post twice; `force` posts again on purpose. With many workspaces, each gets its own
summary, of its own runs only, in its own channel (`[teams."T…"] summary_channel`); a
workspace without one gets none (said once in the log).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agents.budget import cost
from agents.config import Config
from bot.render import Message, render
from bot.surface import OneSurface, Surface, Surfaces
from storage import reports
from storage.clock import now
from storage.engine import Database
from storage.models import RunStatus
from storage.reports import DayReport

log = logging.getLogger(__name__)

LIST_LIMIT = 15  # items per list in the post; the rest is counted


class Summaries:
    def __init__(
        self, db: Database, config: Config, surface: Surface, *, surfaces: Surfaces | None = None
    ) -> None:
        self.db = db
        self.config = config
        self.surface = surface
        self.surfaces = surfaces or OneSurface(surface)
        self.tz = ZoneInfo(config.summary.timezone)
        self._unsummarized: set[str] = set()  # workspaces said to have no summary channel

    def yesterday(self) -> date:
        return (now().astimezone(self.tz) - timedelta(days=1)).date()

    def today(self) -> date:
        return now().astimezone(self.tz).date()

    def window(self, day: date) -> tuple[datetime, datetime]:
        """The day, midnight to midnight in the summary's time zone, as UTC instants."""
        start = datetime.combine(day, time(0), tzinfo=self.tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))

    async def report(self, day: date, *, team_id: str = "") -> DayReport:
        """The day of workspace `team_id` (its rows' owner, `Surfaces.owner`); "" for every one."""
        start, end = self.window(day)
        async with self.db.read() as session:
            return await reports.day_report(session=session, start=start, end=end, team_id=team_id or None)

    def channel(self, team_id: str = "") -> str | None:
        """Where the summary of `team_id` goes: its `[teams."T…"] summary_channel`; for every
        workspace (""), `[summary] channel`."""
        if team_id:
            return self.config.team(team_id).summary_channel
        return self.config.summary.channel

    async def post(
        self,
        day: date | None = None,
        *,
        force: bool = False,
        channel: str | None = None,
        team_id: str = "",
    ) -> str:
        """Post the summary of `day` (default: yesterday, as the scheduler does); returns what
        happened. Today's is "so far": posted every time it is asked for, and it never takes
        the place of the day's own summary, posted once the day is over. `team_id`: whose
        runs it counts and in which workspace it is posted ("": every workspace's, in the one)."""
        day = day or self.yesterday()
        channel = channel or self.channel(team_id)
        if not channel:
            if team_id:
                return f'workspace {team_id} has no summary channel ([teams."{team_id}"] summary_channel)'
            return "no summary channel is configured ([summary] channel)"
        partial = day == self.today()
        async with self.db.write() as session:
            claim = await reports.claim_summary(
                session=session,
                day=day.isoformat(),
                channel_id=channel,
                force=force,
                partial=partial,
                team_id=team_id,
            )
        if claim is None:
            return f"the summary for {day} was already posted to {channel} (use --force to post again)"
        message = self.render(await self.report(day, team_id=team_id), day)
        try:
            ts = await self.surfaces.for_team(team_id).post(
                channel=channel, text=message.text, blocks=message.blocks
            )
        except BaseException:
            async with self.db.write() as session:
                await reports.set_summary_ts(session=session, claim_id=claim, ts=None)
            raise
        async with self.db.write() as session:
            await reports.set_summary_ts(session=session, claim_id=claim, ts=ts)
        log.info("posted the summary for %s to %s", day, channel)
        return f"posted the summary for {day}{' (today so far)' if partial else ''} to {channel}"

    async def post_every(self, day: date | None = None, *, force: bool = False) -> str:
        """The scheduled summary: each workspace's (one workspace: the one summary, as `post`)."""
        results = []
        for team_id in await self.surfaces.teams():
            if team_id and not self.channel(team_id):
                self._say_unsummarized(team_id)
                results.append(f'{team_id}: no summary channel ([teams."{team_id}"] summary_channel)')
                continue
            result = await self.post(day, force=force, team_id=team_id)
            results.append(f"{team_id}: {result}" if team_id else result)
        return "; ".join(results) or "no workspace has the app installed"

    def _say_unsummarized(self, team_id: str) -> None:
        if team_id not in self._unsummarized:
            self._unsummarized.add(team_id)
            log.warning(
                'workspace %s gets no daily summary: it has no [teams."%s"] summary_channel', team_id, team_id
            )

    async def catch_up(self) -> str | None:
        """After a start past today's summary time: post yesterday's where nobody did."""
        local = now().astimezone(self.tz)
        if local.time() < time.fromisoformat(self.config.summary.time):
            return None
        day = self.yesterday()
        results = []
        for team_id in await self.surfaces.teams():
            channel = self.channel(team_id)
            if not channel:
                continue
            async with self.db.read() as session:
                if await reports.summary_posted(
                    session=session, day=day.isoformat(), channel_id=channel, team_id=team_id
                ):
                    continue
            results.append(await self.post(day, team_id=team_id))
        return "; ".join(results) or None

    def render(self, report: DayReport, day: date) -> Message:
        title = f"Daily summary for {day:%A %d %B %Y}"
        if day == self.today():
            title = (
                f"Summary for today, {day:%A %d %B %Y}, so far ({now().astimezone(self.tz):%H:%M} {self.tz})"
            )
        overview = self._overview(report)
        sections = [
            s
            for s in (
                self._agents(report),
                self._cases(report),
                self._failures(report),
                self._human(report),
                self._controls(report),
                self._usage(report),
                self._spend(report),
            )
            if s
        ]
        footer = f"chatops · {self.config.summary.timezone} day · counts from the journal"
        text = "\n\n".join([title, overview, *sections])
        return render(
            "summary.json.j2", text=text, title=title, overview=overview, sections=sections, footer=footer
        )

    def _overview(self, r: DayReport) -> str:
        days = list(r.agents.values())
        human = len(r.waiting_for_human) + len(r.approvals_waiting)
        return (
            f"*{r.runs}* run{'s' * (r.runs != 1)}: "
            + _counts(
                succeeded=sum(a.succeeded for a in days),
                no_action=sum(a.no_action for a in days),
                failed=sum(a.failed for a in days),
                rolled_back=sum(a.rolled_back for a in days),
                undone=sum(a.undone for a in days),
                cancelled=sum(a.cancelled for a in days),
                in_flight=sum(a.in_flight for a in days),
                every=True,
            )
            + ". "
            + (
                f":warning: *{human} thing{'s' * (human != 1)} need{'s' * (human == 1)} a human.*"
                if human
                else "Nothing needs a human."
            )
        )

    def _agents(self, r: DayReport) -> str:
        if not r.agents:
            return ""
        lines = ["*Runs per agent*"]
        for day in sorted(r.agents.values(), key=lambda a: a.agent):
            counts = _counts(
                succeeded=day.succeeded,
                no_action=day.no_action,
                failed=day.failed,
                rolled_back=day.rolled_back,
                undone=day.undone,
                cancelled=day.cancelled,
                in_flight=day.in_flight,
            )
            votes = (
                f" · voted :+1: {day.good_votes} :-1: {day.bad_votes}"
                if day.good_votes or day.bad_votes
                else ""
            )
            lines.append(f"• *{day.agent}*: {day.runs} run{'s' * (day.runs != 1)}: {counts}{votes}")
        return "\n".join(lines)

    def _cases(self, r: DayReport) -> str:
        """Cases of several agents, by outcome (their first run's), with the agents they went through."""
        if not r.cases:
            return ""
        outcomes: dict[str, int] = {}
        lines: list[str] = []
        for case in r.cases:
            root = case.root
            outcome = "undone" if root.undone_by else _CASE_OUTCOMES.get(RunStatus(root.status), "in flight")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if len(lines) < LIST_LIMIT:
                link = f"<{_link(root.channel_id, root.thread_ts)}|case #{root.id}>"
                lines.append(f"• {link}: {' → '.join(case.agents)}: {outcome}")
        counts = ", ".join(f"{n} {o}" for o, n in outcomes.items())
        more = [f"• … and {len(r.cases) - LIST_LIMIT} more"] if len(r.cases) > LIST_LIMIT else []
        return "\n".join([f"*Cases across agents* ({len(r.cases)}: {counts})", *lines, *more])

    def _failures(self, r: DayReport) -> str:
        if not r.failures:
            return ""
        lines = [f"*Failures* ({len(r.failures)})"]
        for run in r.failures[:LIST_LIMIT]:
            what = (run.error or "").splitlines()[0][:200] if run.error else "failed"
            back = " (rolled back)" if run.status == RunStatus.rolled_back else ""
            lines.append(
                f"• <{_link(run.channel_id, run.thread_ts)}|run #{run.id}> ({run.agent}){back}: {what}"
            )
        if len(r.failures) > LIST_LIMIT:
            lines.append(f"• … and {len(r.failures) - LIST_LIMIT} more")
        return "\n".join(lines)

    def _human(self, r: DayReport) -> str:
        if not (r.waiting_for_human or r.approvals_waiting):
            return ""
        lines = ["*Needs a human*"]
        for a in r.approvals_waiting[:LIST_LIMIT]:
            lines.append(
                f"• approval: run #{a.run_id} wants *{a.action}* (expires {a.expires_at:%Y-%m-%d %H:%M} UTC)"
            )
        for run in r.waiting_for_human[:LIST_LIMIT]:
            lines.append(
                f"• <{_link(run.channel_id, run.thread_ts)}|run #{run.id}> ({run.agent}): {run.wait_reason}"
            )
        return "\n".join(lines)

    def _controls(self, r: DayReport) -> str:
        if not (r.control_events or r.paused_now):
            return ""
        lines = ["*Pauses*"]
        for e in r.control_events[:LIST_LIMIT]:
            what = "all agents" if e.target == "agent:*" else e.target.removeprefix("agent:")
            lines.append(
                f"• {e.at:%H:%M} UTC: <@{e.actor}> {e.action}d {what}"
                if e.actor != "system"
                else f"• {e.at:%H:%M} UTC: {e.action}d {what} automatically ({e.detail})"
            )
        for c in r.paused_now:
            what = "all agents" if c.scope == "*" else c.scope
            lines.append(f"• still paused: {what} (since {c.changed_at:%Y-%m-%d %H:%M} UTC)")
        return "\n".join(lines)

    def _usage(self, r: DayReport) -> str:
        if not r.usage:
            return ""
        lines = ["*Model usage*"]
        total = 0.0
        priced = False
        for u in sorted(r.usage, key=lambda u: u.planner):
            price = self.config.prices.get(u.planner)
            cost = ""
            if price is not None:
                dollars = (u.prompt_tokens * price.input + u.completion_tokens * price.output) / 1_000_000
                total += dollars
                priced = True
                cost = f", ${dollars:,.4f}"
            lines.append(
                f"• {u.planner}: {u.runs} run{'s' * (u.runs != 1)}, {u.prompt_tokens:,} prompt + "
                f"{u.completion_tokens:,} completion tokens{cost}"
            )
        if priced:
            lines.append(f"• total cost: ${total:,.4f}")
        return "\n".join(lines)

    def _spend(self, r: DayReport) -> str:
        """Each agent's spend against its budgets (agents.budget): dollars of its daily cap, and
        the runs that reached their token budget."""
        budgeted = {a.name for a in self.config.agents if a.max_cost_per_day or a.max_tokens_per_run}
        dollars: dict[str, float] = {}
        tokens: dict[str, int] = {}
        for agent, model, prompt, completion in r.spend:
            dollars[agent] = dollars.get(agent, 0.0) + cost(self.config.prices.get(model), prompt, completion)
            tokens[agent] = tokens.get(agent, 0) + prompt + completion
        if not budgeted:
            return ""
        lines = ["*Spend against budget*"]
        for agent in sorted(budgeted | set(tokens)):
            cap, per_run = _budgets(self.config, agent)
            spent = dollars.get(agent, 0.0)
            line = f"• *{agent}*: ${spent:,.4f}"
            line += f" of ${cap:,.2f} a day ({spent / cap:.0%})" if cap else " (no daily cap)"
            line += f", {tokens.get(agent, 0):,} tokens"
            if per_run:
                asked = r.budget_asks.get(agent, 0)
                line += (
                    f"; {asked} run{'s' * (asked != 1)} reached {per_run:,} tokens and asked for more"
                    if asked
                    else f"; no run reached {per_run:,} tokens"
                )
            lines.append(line)
        return "\n".join(lines)


def _budgets(config: Config, agent: str) -> tuple[float | None, int | None]:
    a = config.agent(agent)
    return (a.max_cost_per_day, a.max_tokens_per_run) if a else (None, None)


def _counts(
    *,
    succeeded: int,
    no_action: int,
    failed: int,
    rolled_back: int,
    undone: int,
    cancelled: int,
    in_flight: int,
    every: bool = False,
) -> str:
    """Runs by outcome, each run in exactly one of them, so they add up.

    `every`: the main outcomes even when zero (the overview); otherwise only those that occur."""
    automatic = f" ({rolled_back} of them rolled back automatically)" if rolled_back else ""
    parts = [  # (count, text, shown even at zero in the overview)
        (succeeded, f"{succeeded} succeeded", True),
        (no_action, f"{no_action} did nothing", True),
        (failed, f"{failed} failed{automatic}", True),
        (undone, f"{undone} undone by people", True),
        (cancelled, f"{cancelled} cancelled", False),
        (in_flight, f"{in_flight} still in flight", True),
    ]
    return ", ".join(text for n, text, main in parts if n or (every and main)) or "none"


_CASE_OUTCOMES = {
    RunStatus.succeeded: "resolved",
    RunStatus.no_action: "did nothing",
    RunStatus.failed: "failed",
    RunStatus.rolled_back: "failed and rolled back",
    RunStatus.cancelled: "cancelled",
}


def _link(channel: str, thread_ts: str) -> str:
    return f"https://slack.com/archives/{channel}/p{thread_ts.replace('.', '')}"
