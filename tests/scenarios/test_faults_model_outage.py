"""A model outage is waited out, not rolled back: a run whose model server cannot be reached
(after the client's own retries) waits, says so in its thread, and tries again with backoff;
when the server is back it carries on where it was; when the outage outlasts
CHATOPS_MODEL_OUTAGE_MINUTES it fails and rolls back. A request the server refuses as invalid
is not an outage: it fails at once.
"""

from __future__ import annotations

from datetime import timedelta

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.faults_support import TestClock
from storage.clock import now, set_clock
from storage.models import RunStatus, StepKind, StepStatus, WaitKind


async def _waiting_for_model(desk, run_id: int, *, after=None):
    """The run, once it waits for the model (with a next try later than `after`, when given)."""

    async def check():
        run = await desk.run(run_id)
        waiting = run.status == RunStatus.waiting and run.wait_kind == WaitKind.model
        return run if waiting and (after is None or run.wake_at > after) else None

    return await wait_until(check, message=f"run #{run_id} to wait for the model")


async def test_a_run_waits_out_a_model_outage_and_carries_on(start_desk):
    clock = TestClock(now())
    set_clock(clock)
    desk = await start_desk(model=True, chatops_model_retries=1)
    model = desk.model
    model.call("ticket_create", {"title": "Checkout is broken"})
    model.fail(503, times=2)  # the turn after the ticket, and the client's retry of it
    model.fail(502, times=2)  # the first try after waiting: still down
    model.answer("Filed the ticket once the model was back.")
    mention = ev.app_mention("<@UBOT> file a ticket for the checkout outage")
    await desk.send.event(mention)
    [run] = await wait_until(desk.runs, message="a run")

    run = await _waiting_for_model(desk, run.id)
    assert "the model cannot be reached" in (run.wait_reason or "")
    assert run.wake_at is not None and run.wake_at - now() <= timedelta(seconds=5)
    [ticket] = await desk.tickets()  # the step before the outage stands: nothing is rolled back
    status = desk.slack.messages[run.status_ts]
    await wait_until(lambda: "the model cannot be reached" in status.text, message="the thread to say so")

    clock.advance(timedelta(seconds=6))  # the first try after 5 s: still down, so 10 s next
    first_wake = run.wake_at

    async def rescheduled():
        again = await desk.run(run.id)
        return again if again.wake_at and again.wake_at > first_wake else None

    run = await wait_until(rescheduled, message="a second wait")
    assert run.status == RunStatus.waiting and timedelta(seconds=9) <= run.wake_at - now() <= timedelta(
        seconds=10
    )

    clock.advance(timedelta(seconds=11))
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded, run.error
    assert await desk.tickets() == [ticket]  # once
    assert model.remaining == 0 and model.overrun == 0
    steps = await desk.steps(run.id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.failed),
        (StepKind.model, StepStatus.failed),
        (StepKind.model, StepStatus.succeeded),
    ]
    assert "Filed the ticket once the model was back." in desk.slack.messages[run.outcome_ts].text


async def test_an_outage_longer_than_the_allowance_fails_and_rolls_back(start_desk):
    clock = TestClock(now())
    set_clock(clock)
    desk = await start_desk(model=True, chatops_model_retries=0, chatops_model_outage_minutes=1)
    model = desk.model
    model.call("ticket_create", {"title": "Outage"})
    model.fail(503, times=50)
    await desk.send.event(ev.app_mention("<@UBOT> file a ticket"))
    [run] = await wait_until(desk.runs, message="a run")
    assert len(await wait_until(desk.tickets, message="the ticket")) == 1

    run = await _waiting_for_model(desk, run.id)
    for _ in range(2):  # tries after 5 s and 10 s more: still within the minute
        clock.advance(run.wake_at - now() + timedelta(seconds=1))
        run = await _waiting_for_model(desk, run.id, after=run.wake_at)
    clock.advance(timedelta(seconds=61))
    run = await desk.finished(run.id)
    assert run.status == RunStatus.rolled_back
    assert "the model could not be reached for 1 minute" in (run.error or "")
    assert await desk.tickets() == []


async def test_a_request_the_model_server_refuses_fails_at_once(start_desk):
    desk = await start_desk(model=True, chatops_model_retries=2)
    desk.model.fail(400)
    await desk.send.event(ev.app_mention("<@UBOT> do something"))
    run = await desk.only_run()
    assert run.status == RunStatus.failed
    assert "HTTP 400" in (run.error or "")
    assert len(desk.model.requests) == 1  # not retried, not waited for
