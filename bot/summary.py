"""The daily summary: what the agents did yesterday, and what needs a human.

Exactly one post per date and channel: the post is claimed in the database
before it is sent, so several processes (or a restart at the scheduled minute)
never post twice; `force` posts again on purpose.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agents.config import Config
from bot.render import Message, render
from bot.surface import Surface
from storage import reports
from storage.clock import now
from storage.engine import Database
from storage.models import ACTIVE_STATUSES, RunStatus
from storage.reports import DayReport

log = logging.getLogger(__name__)

LIST_LIMIT = 15  # items per list in the post; the rest is counted


class Summaries:
    def __init__(self, db: Database, config: Config, surface: Surface) -> None:
        self.db = db
        self.config = config
        self.surface = surface
        self.tz = ZoneInfo(config.summary.timezone)

    def yesterday(self) -> date:
        return (now().astimezone(self.tz) - timedelta(days=1)).date()

    def window(self, day: date) -> tuple[datetime, datetime]:
        """The day, midnight to midnight in the summary's time zone, as UTC instants."""
        start = datetime.combine(day, time(0), tzinfo=self.tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))

    async def report(self, day: date) -> DayReport:
        start, end = self.window(day)
        async with self.db.read() as session:
            return await reports.day_report(session=session, start=start, end=end)

    async def post(self, day: date | None = None, *, force: bool = False, channel: str | None = None) -> str:
        """Post the summary of `day` (default: yesterday); returns what happened."""
        day = day or self.yesterday()
        channel = channel or self.config.summary.channel
        if not channel:
            return "no summary channel is configured ([summary] channel)"
        async with self.db.write() as session:
            claim = await reports.claim_summary(
                session=session, day=day.isoformat(), channel_id=channel, force=force
            )
        if claim is None:
            return f"the summary for {day} was already posted to {channel} (use --force to post again)"
        message = self.render(await self.report(day), day)
        try:
            ts = await self.surface.post(channel=channel, text=message.text, blocks=message.blocks)
        except BaseException:
            async with self.db.write() as session:
                await reports.set_summary_ts(session=session, claim_id=claim, ts=None)
            raise
        async with self.db.write() as session:
            await reports.set_summary_ts(session=session, claim_id=claim, ts=ts)
        log.info("posted the summary for %s to %s", day, channel)
        return f"posted the summary for {day} to {channel}"

    async def catch_up(self) -> str | None:
        """After a start past today's summary time: post yesterday's if nobody did."""
        channel = self.config.summary.channel
        if not channel:
            return None
        local = now().astimezone(self.tz)
        if local.time() < time.fromisoformat(self.config.summary.time):
            return None
        day = self.yesterday()
        async with self.db.read() as session:
            if await reports.summary_posted(session=session, day=day.isoformat(), channel_id=channel):
                return None
        return await self.post(day)

    def render(self, report: DayReport, day: date) -> Message:
        title = f"Daily summary for {day:%A %d %B %Y}"
        overview = self._overview(report)
        sections = [
            s
            for s in (
                self._agents(report),
                self._failures(report),
                self._human(report),
                self._controls(report),
                self._usage(report),
            )
            if s
        ]
        footer = f"chatops · {self.config.summary.timezone} day · counts from the journal"
        text = "\n\n".join([title, overview, *sections])
        return render(
            "summary.json.j2", text=text, title=title, overview=overview, sections=sections, footer=footer
        )

    def _overview(self, r: DayReport) -> str:
        finished = {s: sum(a.outcomes.get(s, 0) for a in r.agents.values()) for s in RunStatus}
        undone = sum(a.undone for a in r.agents.values())
        rolled = sum(a.rolled_back for a in r.agents.values())
        human = len(r.waiting_for_human) + len(r.approvals_waiting)
        return (
            f"*{r.runs}* run{'s' * (r.runs != 1)}: {finished[RunStatus.succeeded]} succeeded, "
            f"{finished[RunStatus.failed]} failed, {undone} undone, {rolled} rolled back automatically, "
            f"{sum(finished[s] for s in ACTIVE_STATUSES)} still in flight. "
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
            parts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(day.outcomes.items()))
            lines.append(
                f"• *{day.agent}*: {day.runs} ({parts}); {day.undone} undone, {day.rolled_back} rolled back"
            )
        return "\n".join(lines)

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


def _link(channel: str, thread_ts: str) -> str:
    return f"https://slack.com/archives/{channel}/p{thread_ts.replace('.', '')}"
