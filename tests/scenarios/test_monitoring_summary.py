"""The daily summary after a mixed day: `chatops summary --date` posts once, every number in the
post matches the database, a second call posts nothing, and `force` posts again.

The day is driven through the desk with the stored clock under the test's control, in a time
zone where "the day" is not the UTC day, with runs just outside it on either side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fakes import slack_events as ev
from fakes import wait_until
from sqlmodel import col, func, select

from scenarios.faults_support import (
    Processes,
    TestClock,
    environment,
    sqlite_url,
)
from storage.clock import set_clock
from storage.models import ACTIVE_STATUSES, Approval, ApprovalStatus, Run, RunStatus, SummaryPost, WaitKind

DAY = date(2030, 3, 14)
TZ = ZoneInfo("Asia/Tokyo")  # the day runs from 15:00 UTC on the 13th to 15:00 UTC on the 14th
START = datetime(2030, 3, 14, tzinfo=TZ).astimezone(UTC)
END = START + timedelta(days=1)
SUMMARY = "CSUMMARY"
PRICE_IN, PRICE_OUT = 2.0, 8.0  # dollars per million tokens

CONFIG = f"""
[summary]
channel = "{SUMMARY}"
timezone = "Asia/Tokyo"

[prices]
"fake-model" = {{ input = {PRICE_IN}, output = {PRICE_OUT} }}

[[agents]]
name = "ops"
default = true
actions = ["ticket_create", "deploy", "check_disk"]

[[agents]]
name = "support"
channels = ["CSUP"]
actions = ["ticket_create"]

[[actions]]
name = "deploy"
description = "Deploy a service to production"
kind = "command"
params = {{ service = "string" }}
run = "true"
undo = "true"
risk = "high"

[[actions]]
name = "check_disk"
description = "Check the disk (it is full)"
kind = "command"
run = "echo 'disk full' >&2; exit 1"
read_only = true
"""


@dataclass
class Posted:
    """The numbers a summary post states."""

    runs: int
    overview: dict[str, int]
    human: int
    agents: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    """agent -> (runs, runs by outcome)."""
    failures: list[int] = field(default_factory=list)
    approvals: list[int] = field(default_factory=list)
    usage: dict[str, tuple[int, int, int, float]] = field(default_factory=dict)
    """planner -> (runs, prompt tokens, completion tokens, dollars)."""
    total_cost: float | None = None


OUTCOMES = {
    "succeeded": "succeeded",
    "did nothing": "no_action",
    "failed": "failed",
    "undone by people": "undone",
    "cancelled": "cancelled",
    "still in flight": "active",
}
OUTCOME = re.compile(
    r"(\d+) (succeeded|did nothing|failed|undone by people|cancelled|still in flight)"
    r"(?: \((\d+) of them rolled back automatically\))?"
)
OVERVIEW = re.compile(
    r"\*(?P<runs>\d+)\* runs?: (?P<parts>[^.]*)\. "
    r"(?::warning: \*(?P<human>\d+) things? needs? a human\.\*|Nothing needs a human\.)"
)
AGENT = re.compile(r"^• \*(?P<agent>[\w-]+)\*: (?P<runs>\d+) runs?: (?P<parts>.*)$")
USAGE = re.compile(
    r"^• (?P<planner>[\w .-]+): (?P<runs>\d+) runs?, (?P<prompt>[\d,]+) prompt \+ "
    r"(?P<completion>[\d,]+) completion tokens(?:, \$(?P<cost>[\d,.]+))?$"
)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _outcomes(parts: str, runs: int) -> dict[str, int]:
    """ "3 succeeded, 2 failed (1 of them rolled back automatically), ..." as numbers, which
    must add up to the runs (every run in exactly one outcome)."""
    found: dict[str, int] = {}
    for n, what, auto in OUTCOME.findall(parts):
        found[OUTCOMES[what]] = int(n)
        if auto:
            found["auto"] = int(auto)
    assert ", ".join(f"{m[0]}" for m in re.finditer(OUTCOME, parts)) == parts, f"unparsed: {parts!r}"
    assert sum(n for k, n in found.items() if k != "auto") == runs, f"{parts!r} do not add up to {runs}"
    return found


def parse(text: str) -> Posted:
    m = OVERVIEW.search(text)
    assert m, f"no overview in the summary:\n{text}"
    posted = Posted(
        runs=int(m["runs"]), overview=_outcomes(m["parts"], int(m["runs"])), human=int(m["human"] or 0)
    )
    section = ""
    for line in text.splitlines():
        if line.startswith("*") and not line.startswith("*" + m["runs"]):
            section = line
            continue
        if (a := AGENT.match(line)) is not None:
            posted.agents[a["agent"]] = (int(a["runs"]), _outcomes(a["parts"], int(a["runs"])))
        elif section.startswith("*Failures*") and line.startswith("• <"):
            posted.failures.append(int(re.search(r"\|run #(\d+)>", line)[1]))  # type: ignore[index]
        elif line.startswith("• approval: run #"):
            posted.approvals.append(int(re.search(r"run #(\d+)", line)[1]))  # type: ignore[index]
        elif section == "*Model usage*" and (u := USAGE.match(line)) is not None:
            cost = float(u["cost"].replace(",", "")) if u["cost"] else 0.0
            posted.usage[u["planner"]] = (int(u["runs"]), _int(u["prompt"]), _int(u["completion"]), cost)
        elif line.startswith("• total cost: $"):
            posted.total_cost = float(line.removeprefix("• total cost: $").replace(",", ""))
    if (f := re.search(r"\*Failures\* \((\d+)\)", text)) is not None:
        assert int(f[1]) == len(posted.failures), text
    return posted


def _truth(rows: list[Run], *, every: bool) -> dict[str, int]:
    """Runs by outcome, counted from the rows; zero outcomes kept as the overview states them."""
    auto = sum(r.status == RunStatus.rolled_back and not r.undone_by for r in rows)
    counts = {
        "succeeded": sum(r.status == RunStatus.succeeded for r in rows),
        "no_action": sum(r.status == RunStatus.no_action for r in rows),
        "failed": sum(r.status == RunStatus.failed for r in rows) + auto,
        "auto": auto,
        "undone": sum(r.status == RunStatus.rolled_back and bool(r.undone_by) for r in rows),
        "cancelled": sum(r.status == RunStatus.cancelled for r in rows),
        "active": sum(r.status in ACTIVE_STATUSES for r in rows),
    }
    return {k: n for k, n in counts.items() if n or (every and k not in ("auto", "cancelled"))}


async def from_database(desk) -> Posted:
    """The same numbers, counted straight from the runs and approvals tables."""
    in_day = (col(Run.created_at) >= START, col(Run.created_at) < END)
    async with desk.db.read() as session:
        rows = list((await session.exec(select(Run).where(*in_day))).all())
        needs_human = (
            await session.exec(
                select(func.count())
                .select_from(Run)
                .where(col(Run.status) == RunStatus.waiting, col(Run.wait_kind) == WaitKind.human)
            )
        ).one()
        pending = (
            await session.exec(select(Approval.run_id).where(col(Approval.status) == ApprovalStatus.pending))
        ).all()
    auto = [r for r in rows if r.status == RunStatus.rolled_back and not r.undone_by]
    truth = Posted(
        runs=len(rows),
        overview=_truth(rows, every=True),
        human=needs_human + len(pending),
        failures=sorted(r.id for r in rows if r.status == RunStatus.failed or r in auto),
        approvals=sorted(pending),
    )
    for agent in {r.agent for r in rows}:
        mine = [r for r in rows if r.agent == agent]
        truth.agents[agent] = (len(mine), _truth(mine, every=False))
    for planner in {r.planner for r in rows if r.planner}:
        mine = [r for r in rows if r.planner == planner]
        prompt, completion = sum(r.prompt_tokens for r in mine), sum(r.completion_tokens for r in mine)
        cost = round((prompt * PRICE_IN + completion * PRICE_OUT) / 1_000_000, 4)
        truth.usage[planner] = (len(mine), prompt, completion, cost)
    truth.total_cost = sum(u[3] for u in truth.usage.values())
    return truth


class Day:
    """Drives one request at a time through the desk, at a chosen moment of the day."""

    def __init__(self, desk, clock: TestClock) -> None:
        self.desk = desk
        self.clock = clock

    async def request(self, at: datetime, text: str, *, channel: str = "C1", final: bool = True) -> Run:
        self.clock.set(at)
        before = {r.id for r in await self.desk.runs()}
        event = (
            ev.channel_message(text, channel=channel)
            if channel == "CSUP"
            else ev.app_mention(f"<@UBOT> {text}", channel=channel)
        )
        await self.desk.send.event(event)

        async def new() -> list[Run]:
            return [r for r in await self.desk.runs() if r.id not in before]

        [run] = await wait_until(new, message=f"the run for {text!r}")
        if final:
            return await self.desk.finished(run.id)
        return run

    async def say(self, at: datetime, text: str, **kwargs) -> None:
        self.clock.set(at)
        await self.desk.send.event(ev.app_mention(f"<@UBOT> {text}", **kwargs))


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2030, 3, day, hour, minute, tzinfo=UTC)


async def _a_mixed_day(desk, clock: TestClock) -> None:
    model = desk.model
    day = Day(desk, clock)
    # 23:50 in Tokyo the day before: not this day.
    model.call("ticket_create", {"title": "Yesterday's"}).answer("Done.")
    await day.request(utc(13, 14, 50), "open a ticket for yesterday")
    # The day: two successes for ops, one of them undone later.
    model.call("ticket_create", {"title": "Printer"}).answer("Opened a ticket for the printer.")
    await day.request(utc(13, 15, 5), "open a ticket for the printer")
    model.call("ticket_create", {"title": "Mistake"}).answer("Opened it.")
    undone = await day.request(utc(13, 18), "open a ticket by mistake")
    clock.set(utc(13, 18, 10))
    await desk.send.event(ev.thread_reply("undo", thread_ts=undone.thread_ts))
    await wait_until(lambda: _undone(desk, undone.id), message="the undo")
    # A failure with nothing to reverse, and one rolled back automatically.
    model.call("check_disk").answer("The disk check failed.")
    await day.request(utc(14, 1), "check the disk")
    model.call("ticket_create", {"title": "Disk"}).call("check_disk").answer("The disk check failed again.")
    await day.request(utc(14, 3), "open a ticket and check the disk")
    # A request it could do nothing for: the only call is to a tool that does not exist.
    model.call("launch_rockets").answer("I have no tool for that.")
    await day.request(utc(14, 4), "launch the rockets")
    # An approval nobody gave.
    model.call("deploy", {"service": "api"})
    waiting = await day.request(utc(14, 5), "deploy the api", final=False)
    await wait_until(
        lambda: _waiting_for_approval(desk, waiting.id), message="the deploy to wait for an approval"
    )
    # Support: a success and a failure (the model server is down).
    model.call("ticket_create", {"title": "Refund"}).answer("Opened a ticket for the refund.")
    await day.request(utc(14, 6), "I want a refund", channel="CSUP")
    model.fail(500, times=3)
    await day.request(utc(14, 7), "where is my order?", channel="CSUP")
    # Someone pauses support for a few minutes.
    await day.say(utc(14, 8), "pause agent support", user="U2")
    await day.say(utc(14, 8, 5), "resume agent support", user="U2")
    # 23:55 in Tokyo: still this day. 00:01 the next day: not.
    model.call("ticket_create", {"title": "Late"}).answer("Opened it late.")
    await day.request(utc(14, 14, 55), "open a ticket, late")
    model.call("ticket_create", {"title": "Tomorrow's"}).answer("Done.")
    await day.request(utc(14, 15, 1), "open a ticket for tomorrow")


async def _undone(desk, run_id: int) -> bool:
    run = await desk.run(run_id)
    return run.status == RunStatus.rolled_back and run.undo_ts not in (None, "pending")


async def _waiting_for_approval(desk, run_id: int) -> bool:
    approvals = await desk.rows(Approval, col(Approval.run_id) == run_id)
    return bool(approvals) and approvals[0].message_ts not in (None, "pending")


async def test_the_daily_summary_posts_once_and_every_number_matches_the_database(
    start_desk, processes: Processes, tmp_path: Path
):

    clock = TestClock(utc(13, 14))
    set_clock(clock)
    desk = await start_desk(CONFIG, model=True, chatops_model_outage_minutes=0)  # support gives up at once
    slack = desk.slack
    await _a_mixed_day(desk, clock)
    truth = await from_database(desk)
    # The story as told, so a mistake in driving the day cannot hide behind matching numbers.
    assert (truth.runs, truth.overview, truth.human) == (
        9,
        {"succeeded": 3, "no_action": 1, "failed": 3, "auto": 1, "undone": 1, "active": 1},
        1,
    )
    assert {a: v[0] for a, v in truth.agents.items()} == {"ops": 7, "support": 2}

    env = environment(
        slack=slack, database_url=sqlite_url(tmp_path / "chatops.db"), config=tmp_path / "chatops.toml"
    )
    done = processes.run("summary", "--date", DAY.isoformat(), env=env)
    assert done.returncode == 0, done.stderr
    assert f"posted the summary for {DAY} to {SUMMARY}" in done.stdout
    [post] = slack.top_level(SUMMARY)
    assert post.text.startswith("Daily summary for Thursday 14 March 2030")
    posted = parse(post.text)
    assert posted == truth
    pauses = post.text.split("*Pauses*\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert pauses == ["• 08:00 UTC: <@U2> paused support", "• 08:05 UTC: <@U2> resumed support"]
    [claim] = await desk.rows(SummaryPost)
    assert (claim.day, claim.channel_id, claim.ts) == (DAY.isoformat(), SUMMARY, post.ts)

    # Again: from the command line, and from the running desk. Nothing is posted.
    calls = len(slack.calls_to("chat.postMessage"))
    again = processes.run("summary", "--date", DAY.isoformat(), env=env)
    assert again.returncode == 0, again.stderr
    assert "already posted" in again.stdout
    assert "already posted" in await desk.services.summaries.post(DAY)
    assert len(slack.calls_to("chat.postMessage")) == calls
    assert len(slack.top_level(SUMMARY)) == 1

    # Forced: a second post, with the same numbers.
    assert "posted the summary" in await desk.services.summaries.post(DAY, force=True)
    first, second = slack.top_level(SUMMARY)
    assert first.ts == post.ts and parse(second.text) == truth
    assert len(await desk.rows(SummaryPost)) == 2


async def test_a_summary_of_today_so_far_says_so_and_leaves_the_days_own_post_to_come(start_desk):
    clock = TestClock(utc(14, 3))  # 12:00 on the 14th in Tokyo
    set_clock(clock)
    desk = await start_desk(CONFIG, model=True)
    desk.model.call("ticket_create", {"title": "Printer"}).answer("Opened it.")
    await Day(desk, clock).request(utc(14, 3, 5), "open a ticket for the printer")
    summaries = desk.services.summaries
    assert summaries.today() == DAY

    for _ in range(2):  # as often as asked
        assert (
            await summaries.post(summaries.today())
            == f"posted the summary for {DAY} (today so far) to {SUMMARY}"
        )
    first, second = desk.slack.top_level(SUMMARY)
    assert re.match(r"Summary for today, Thursday 14 March 2030, so far \(12:0\d Asia/Tokyo\)", first.text)
    assert second.text.startswith("Summary for today")
    assert parse(first.text).overview == {
        "succeeded": 1,
        "no_action": 0,
        "failed": 0,
        "undone": 0,
        "active": 0,
    }
    # The next morning the scheduler posts the whole day, once.
    clock.set(utc(15, 0, 30))  # 09:00:30 on the 15th in Tokyo
    assert summaries.yesterday() == DAY
    assert await summaries.post() == f"posted the summary for {DAY} to {SUMMARY}"
    assert desk.slack.top_level(SUMMARY)[-1].text.startswith("Daily summary for Thursday 14 March 2030")
    assert "already posted" in await summaries.post()
    assert sorted(p.attempt for p in await desk.rows(SummaryPost)) == [0, 1, 2]
