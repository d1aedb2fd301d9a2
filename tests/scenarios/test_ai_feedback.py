"""Feedback on outcomes: the Good and Bad buttons (Slack's feedback_buttons) under every outcome.
Each vote is kept with its run, once per person (a second click changes it), audited, counted
only from the run's own message; the daily summary shows the votes per agent, and a burst of
Bad votes is an alert (never the circuit breaker: customers vote too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.faults_support import TestClock
from storage.clock import set_clock
from storage.models import Alert, AuditEvent, Control, Feedback

ALERTS = "CALERTS"


def vote(value: str, *, user: str, message_ts: str, thread_ts: str, channel: str = "C1") -> dict[str, Any]:
    """A click on one of a feedback_buttons element's two buttons, as Slack sends it."""
    payload = ev.block_action("chatops_feedback", value, user=user, channel=channel, message_ts=message_ts)
    payload["message"]["thread_ts"] = thread_ts
    payload["actions"][0].update(type="feedback_buttons", block_id="run_feedback")
    del payload["actions"][0]["text"]  # a feedback button's click carries its value, no text
    return payload


async def _ask(desk, text: str, *, channel: str = "C1"):
    mention = ev.app_mention(f"<@UBOT> {text}", channel=channel)
    await desk.send.event(mention)
    ts = mention["event"]["ts"]
    run = await wait_until(lambda: _run_in(desk, ts), message=f"a run for {text!r}")
    return await desk.finished(run.id), ts


async def _run_in(desk, ts: str):
    return next((r for r in await desk.runs() if r.thread_ts == ts), None)


def _answers(desk, user: str) -> list[str]:
    return [m.text for m in desk.slack.ephemerals if m.user == user]


async def test_a_vote_is_kept_once_per_person_changed_by_a_second_click_and_shown_in_the_summary(start_desk):
    desk = await start_desk()
    slack = desk.slack
    run, ts = await _ask(desk, "create a ticket for the flaky test")
    other, other_ts = await _ask(desk, "create a ticket for the slow build")
    assert "chatops_feedback" in slack.messages[run.outcome_ts].action_ids()

    async def click(value: str, user: str, message_ts: str, thread_ts: str) -> None:
        delivery = await desk.send.interaction(
            vote(value, user=user, message_ts=message_ts, thread_ts=thread_ts)
        )
        assert delivery.status == 200

    await click(f"good:{run.id}", "U1", run.outcome_ts, ts)
    await click(f"good:{run.id}", "U1", run.outcome_ts, ts)  # the same click again: nothing changes
    await click(f"bad:{run.id}", "U1", run.outcome_ts, ts)  # U1 changes their mind
    await click(f"good:{run.id}", "U2", run.outcome_ts, ts)
    # A vote naming run #1 from another run's message counts for nothing.
    await click(f"bad:{run.id}", "U2", other.outcome_ts, other_ts)

    votes = {(f.run_id, f.user_id): f.vote for f in await desk.rows(Feedback)}
    assert votes == {(run.id, "U1"): "bad", (run.id, "U2"): "good"}
    assert _answers(desk, "U1") == [
        f"Thanks: your :+1: on run #{run.id} is noted.",
        f"Your :+1: on run #{run.id} was already noted.",
        f"Changed your vote on run #{run.id} to :-1:.",
    ]
    assert _answers(desk, "U2") == [
        f"Thanks: your :+1: on run #{run.id} is noted.",
        f"There is no run #{run.id} here.",
    ]
    audit = [(e.actor, e.action, e.target, e.detail) for e in await desk.rows(AuditEvent)]
    assert audit == [
        ("U1", "feedback", f"run:{run.id}", "good"),
        ("U1", "feedback", f"run:{run.id}", "good -> bad"),
        ("U2", "feedback", f"run:{run.id}", "good"),
        ("U2", "refused", f"run:{run.id}", f"feedback: not the run of message {other.outcome_ts} in C1"),
    ]

    # The summary (here, today's so far) shows the votes with the agent's runs.
    assert (await desk.send.command(ev.slash_command("summary", channel="CSUM"))).status == 200
    summary = await wait_until(lambda: desk.slack.top_level("CSUM"), message="the summary")
    assert "• *ops*: 2 runs: 2 succeeded · voted :+1: 1 :-1: 1" in summary[0].text, summary[0].text


def _watchdog_config(negative_votes: int) -> str:
    return f"""
[alerts]
channel = "{ALERTS}"
negative_votes = {negative_votes}
window_minutes = 60

[[agents]]
name = "ops"
default = true
actions = ["ticket_create"]
"""


async def test_a_burst_of_bad_votes_raises_one_alert_and_pauses_nothing(start_desk):
    clock = TestClock(datetime(2030, 3, 14, 9, 0, tzinfo=UTC))
    set_clock(clock)
    desk = await start_desk(_watchdog_config(negative_votes=3))
    desk.slack.add_user("U3")
    run, ts = await _ask(desk, "create a ticket for the wrong thing")
    for user in ("U1", "U2"):
        await desk.send.interaction(vote(f"bad:{run.id}", user=user, message_ts=run.outcome_ts, thread_ts=ts))
    await wait_until(lambda: _count(desk, 2), message="two votes")
    assert await desk.services.watchdog.check() == []  # two are not a burst

    await desk.send.interaction(vote(f"bad:{run.id}", user="U3", message_ts=run.outcome_ts, thread_ts=ts))
    await wait_until(lambda: _count(desk, 3), message="three votes")
    for _ in range(3):  # however often it looks: one alert
        assert await desk.services.watchdog.check() == ["negative_feedback:ops"]
    [alert] = desk.slack.top_level(ALERTS)
    assert "*ops*: people voted 3 of its answers Bad in 60 min (threshold 3)" in alert.text
    assert await desk.rows(Control) == []  # no circuit breaker: customers vote too
    assert len(await desk.rows(Alert)) == 1

    clock.advance(timedelta(minutes=61))  # the burst leaves the window: the alert clears
    assert await desk.services.watchdog.check() == []
    [note] = desk.slack.thread(ALERTS, alert.ts)
    assert "fewer Bad votes than the threshold" in note.text


async def _count(desk, n: int) -> bool:
    return len(await desk.rows(Feedback)) == n
