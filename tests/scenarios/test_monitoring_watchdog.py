"""The watchdog notices what nobody is there to notice, and says so once: a stuck run, a burst of
failures (which also pauses the agent: the circuit breaker), a burst of undos, a model that
keeps failing. Each raises exactly one alert however often the watchdog looks, and a note in
the alert's thread when the condition clears. The stored clock is the test's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
from fakes import slack_events as ev
from fakes import wait_until

from scenarios.faults_support import TestClock
from storage.clock import set_clock
from storage.models import Alert, AuditEvent, Control, RunStatus

ALERTS = "CALERTS"


def _config(*, min_runs: int = 3, model_failures: int = 3) -> str:
    return f"""
[alerts]
channel = "{ALERTS}"
stuck_minutes = 15
window_minutes = 60
min_runs = {min_runs}
failure_rate = 0.5
undo_rate = 0.5
model_failures = {model_failures}

[[agents]]
name = "ops"
default = true
actions = ["ticket_create", "check_disk"]

[[actions]]
name = "check_disk"
description = "Check the disk (it is full)"
kind = "command"
run = "echo 'disk full' >&2; exit 1"
read_only = true
"""


def _start_clock() -> TestClock:
    clock = TestClock(datetime(2030, 3, 14, 9, 0, tzinfo=UTC))
    set_clock(clock)
    return clock


async def _check(desk, times: int = 3) -> list[str]:
    """Run the watchdog `times` times; every look must see the same conditions."""
    seen = [await desk.services.watchdog.check() for _ in range(times)]
    assert all(s == seen[0] for s in seen), seen
    return seen[0]


def _alerts(desk) -> list:
    return desk.slack.top_level(ALERTS)


async def _ask(desk, text: str) -> int:
    """A request in its own thread; returns its run id once it is finished and reported."""
    before = {r.id for r in await desk.runs()}
    await desk.send.event(ev.app_mention(f"<@UBOT> {text}"))
    runs = await wait_until(lambda: _new_runs(desk, before), message=f"a run for {text!r}")
    return (await desk.finished(runs[0].id)).id


async def _new_runs(desk, before: set) -> list:
    return [r for r in await desk.runs() if r.id not in before]


async def _healthz(desk) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{desk.url}/healthz") as response:
            return await response.json()


async def test_a_stuck_run_raises_one_alert_and_a_cleared_note_when_it_moves_again(start_desk):
    clock = _start_clock()
    desk = await start_desk(_config(), model=True, chatops_lease_seconds=3600)
    other = await start_desk(_config(), model=True, chatops_lease_seconds=3600)  # a second process
    model = desk.model
    model.call("ticket_create", {"title": "Slow"}, held=True)
    model.answer("Done at last.")
    await desk.send.event(ev.app_mention("<@UBOT> open a ticket, slowly"))
    await wait_until(lambda: len(model.requests) == 1, message="the model to be thinking")
    [run] = await desk.runs()

    clock.advance(timedelta(minutes=14))
    assert await _check(desk) == []  # slow, not stuck yet
    clock.advance(timedelta(minutes=2))
    assert await _check(desk) == [f"stuck:run:{run.id}"]
    assert await _check(other) == [f"stuck:run:{run.id}"]  # another process looks too

    [alert] = _alerts(desk)
    assert f"Run #{run.id}" in alert.text and "no progress" in alert.text and "15 minutes" in alert.text
    [stored] = await desk.rows(Alert)
    assert (stored.key, stored.active, stored.ts) == (f"stuck:run:{run.id}", True, alert.ts)

    model.release()  # it moves again, and finishes
    await desk.finished(run.id)
    assert await _check(desk) == []
    assert await _check(other) == []
    [note] = desk.slack.thread(ALERTS, alert.ts)
    assert note.text.startswith(":white_check_mark: Cleared")
    assert len(_alerts(desk)) == 1
    [stored] = await desk.rows(Alert)
    assert not stored.active and stored.cleared_at is not None


async def test_a_burst_of_failures_raises_one_alert_and_pauses_the_agent_by_itself(start_desk):
    _start_clock()
    desk = await start_desk(_config())
    for _ in range(3):
        run = await desk.run(await _ask(desk, "check_disk"))
        assert run.status == RunStatus.failed

    assert await _check(desk) == ["failure_rate:ops"]
    [alert] = _alerts(desk)
    assert "*ops*: 3 of its last 3 runs failed" in alert.text
    assert "paused automatically" in alert.text and "resume agent ops" in alert.text
    [control] = await desk.rows(Control)
    assert (control.scope, control.paused, control.by_user) == ("ops", True, "system")
    [pause] = await desk.rows(AuditEvent)
    assert (pause.actor, pause.action, pause.target) == ("system", "pause", "agent:ops")
    assert (await _healthz(desk))["paused"] == ["ops"]

    # Paused means paused: a new request waits instead of acting.
    mention = ev.app_mention("<@UBOT> create a ticket for after the pause")
    await desk.send.event(mention)
    [waiting] = await wait_until(
        lambda: _waiting(desk, "paused"), message="the new run to wait for the pause to be lifted"
    )
    assert await desk.tickets() == []

    # A person resumes the agent: the run goes on, and the watchdog counts afresh from there.
    await desk.send.event(ev.app_mention("<@UBOT> resume agent ops"))
    run = await desk.finished(waiting.id)
    assert run.status == RunStatus.succeeded
    assert await _check(desk) == []
    [note] = desk.slack.thread(ALERTS, alert.ts)
    assert "Cleared" in note.text and "failure rate" in note.text
    assert len(_alerts(desk)) == 1
    assert [e.action for e in await desk.rows(AuditEvent)] == ["pause", "resume"]


async def _waiting(desk, reason: str) -> list:
    runs = await desk.runs()
    return [r for r in runs if r.status == RunStatus.waiting and (r.wait_reason or "").startswith(reason)]


async def test_a_burst_of_undos_raises_one_alert(start_desk):
    _start_clock()
    desk = await start_desk(_config())
    for n in range(3):
        mention = ev.app_mention(f"<@UBOT> create a ticket for mistake {n}")
        ts = mention["event"]["ts"]
        await desk.send.event(mention)
        run = await desk.finished((await wait_until(lambda ts=ts: _in_thread(desk, ts))).id)
        await desk.send.event(ev.thread_reply("undo", thread_ts=ts))
        await wait_until(lambda run=run: _undone(desk, run.id), message="the undo")
    await desk.settled()
    assert await desk.tickets() == []

    assert await _check(desk) == ["undo_rate:ops"]
    [alert] = _alerts(desk)
    assert "*ops*: people undid 3 of its last 3 runs" in alert.text
    assert "paused automatically" in alert.text and "resume agent ops" in alert.text
    assert await _check(desk) == ["undo_rate:ops"]
    assert len(_alerts(desk)) == 1
    assert len(await desk.rows(Alert)) == 1


async def _in_thread(desk, ts: str):
    return next((r for r in await desk.runs() if r.thread_ts == ts), None)


async def _undone(desk, run_id: int) -> bool:
    run = await desk.run(run_id)
    return run.status == RunStatus.rolled_back and run.undo_ts not in (None, "pending")


async def test_a_model_failing_past_the_threshold_raises_one_alert_until_the_window_passes(start_desk):
    clock = _start_clock()
    desk = await start_desk(
        _config(min_runs=10, model_failures=3),
        model=True,
        chatops_model_retries=0,
        chatops_model_outage_minutes=0,  # each run gives up on the model at once
    )
    desk.model.fail(500, times=3)
    for n in range(3):
        run = await desk.run(await _ask(desk, f"hello {n}"))
        assert run.status == RunStatus.failed and "500" in (run.error or "")

    assert await _check(desk) == ["model_failures"]  # and no failure-rate alert: 3 runs < min_runs
    [alert] = _alerts(desk)
    assert "The model failed 3 times in 60 min" in alert.text
    assert await desk.rows(Control) == []  # the model's trouble pauses nobody

    clock.advance(timedelta(minutes=61))  # the failures fall out of the window
    assert await _check(desk) == []
    [note] = desk.slack.thread(ALERTS, alert.ts)
    assert "Cleared" in note.text and "the model answers again" in note.text
    assert len(_alerts(desk)) == 1
