"""While a run works, its thread shows what it does in Slack's loading status
(assistant.threads.setStatus): "is thinking…" with rotating loading messages while the model is
asked, "is running <action>…" while an action runs; sent again before Slack's two minutes run
out, cleared by the outcome reply (Slack clears it when the app replies) or, when the run stops
to wait, by an empty status. One call per step at most, and a failed call never breaks a run.
"""

from __future__ import annotations

from pathlib import Path

from fakes import slack_events as ev
from fakes import wait_until

from bot.loading import LOADING_MESSAGES, THINKING
from storage.models import RunStatus, WaitKind

RUNNING = "is running wait_for_go…"


def _config(go: Path) -> str:
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["wait_for_go", "ticket_create"]

[[actions]]
name = "wait_for_go"
description = "Wait until the go file exists"
kind = "command"
run = "while [ ! -e {go} ]; do sleep 0.02; done; echo go"
read_only = true
timeout = 30
"""


def _index(slack, method: str, *, last: bool = False) -> int:
    """Where the first (or last) call of `method` stands among every call the fake received."""
    with slack.lock:
        found = [i for i, c in enumerate(slack.calls) if c.method == method]
    assert found, f"no call to {method}"
    return found[-1] if last else found[0]


async def test_a_runs_thread_shows_what_each_step_does_and_the_outcome_clears_it(start_desk, tmp_path):
    go = tmp_path / "go"
    desk = await start_desk(_config(go), model=True)
    slack, model = desk.slack, desk.model
    model.call("wait_for_go", {})
    model.hold()  # the first turn: the model thinks until released
    mention = ev.app_mention("<@UBOT> wait for the go signal")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    await wait_until(lambda: slack.statuses_in("C1", ts) == [THINKING], message=lambda: slack.statuses)
    [thinking] = slack.statuses
    assert thinking["loading_messages"] == LOADING_MESSAGES  # rotated by Slack while it waits
    model.answer("The **go** file is there: carrying on.")
    model.release()
    await wait_until(
        lambda: slack.statuses_in("C1", ts) == [THINKING, RUNNING], message=lambda: slack.statuses
    )
    assert slack.statuses[-1]["loading_messages"] is None
    go.touch()  # the action ends; the model is asked again

    [run] = await desk.runs()
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded
    steps = await desk.steps(run.id)
    # At most one status per step, none repeated, no explicit clear: the outcome reply clears
    # it. The last turn, quicker than the pace (a second after the last status), shows none.
    shown = slack.statuses_in("C1", ts)
    assert shown in ([THINKING, RUNNING], [THINKING, RUNNING, THINKING]) and len(steps) == 3, shown
    # Set after the status message (a reply clears a status), and all before the outcome.
    assert _index(slack, "chat.postMessage") < _index(slack, "assistant.threads.setStatus")
    assert _index(slack, "assistant.threads.setStatus", last=True) < _index(
        slack, "chat.postMessage", last=True
    )


async def test_a_long_step_sends_its_status_again_before_slack_drops_it(start_desk):
    desk = await start_desk(model=True, chatops_loading_refresh_seconds=0.2)
    slack, model = desk.slack, desk.model
    model.answer("Thought about it for a long time.")
    model.hold()
    mention = ev.app_mention("<@UBOT> think hard")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    # The model keeps thinking past the refresh interval: the same status goes again.
    await wait_until(
        lambda: len(slack.statuses_in("C1", ts)) >= 3, timeout=10, message=lambda: slack.statuses
    )
    assert set(slack.statuses_in("C1", ts)) == {THINKING}
    model.release()
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    sent = len(slack.statuses_in("C1", ts))
    await desk.settled()
    assert len(slack.statuses_in("C1", ts)) == sent  # the refresh stops with the outcome


async def test_a_run_that_stops_to_wait_clears_its_status(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("ticket_create", {"title": "After the pause"})
    model.answer("Created it.")
    model.hold()
    mention = ev.app_mention("<@UBOT> create a ticket after the pause")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)
    await wait_until(lambda: slack.statuses_in("C1", ts) == [THINKING], message=lambda: slack.statuses)

    await desk.send.event(ev.thread_reply("pause", thread_ts=ts))  # the agent is paused mid-thought
    model.release()

    async def paused():
        [run] = await desk.runs()
        return run if run.status == RunStatus.waiting and run.wait_kind == WaitKind.paused else None

    await wait_until(paused, message="the run to wait for the pause to lift")
    await wait_until(lambda: slack.statuses_in("C1", ts) == [THINKING, ""], message=lambda: slack.statuses)

    await desk.send.event(ev.thread_reply("resume", thread_ts=ts))
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    # It goes on where it stopped (steps that come faster than Slack answers share a call).
    later = slack.statuses_in("C1", ts)[2:]
    assert later and set(later) <= {"is running ticket_create…", THINKING} and len(later) <= 2, later


async def test_where_slack_has_no_loading_status_runs_go_on_and_it_is_not_asked_again(start_desk):
    desk = await start_desk()
    slack = desk.slack
    slack.refuse("assistant.threads.setStatus", "unknown_method")  # an older workspace
    for n in range(2):
        await desk.send.event(ev.app_mention(f"<@UBOT> create a ticket for old workspace {n}"))
        runs = await wait_until(lambda n=n: _runs_at_least(desk, n + 1), message="the run")
        run = await desk.finished(runs[n].id)
        assert run.status == RunStatus.succeeded
    assert len(slack.calls_to("assistant.threads.setStatus")) == 1  # refused once, then not asked
    assert len(await desk.tickets()) == 2


async def _runs_at_least(desk, n: int):
    runs = await desk.runs()
    return runs if len(runs) >= n else None
