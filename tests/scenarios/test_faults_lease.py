"""A lease that lapses while its worker is still busy (the clock stepped forward, the VM was
suspended, a long GC or DB stall held the heartbeat back) must not make that same worker start
the run a second time: there is one worker, so nobody else may take it, and one loop per run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.faults_support import TestClock
from storage.clock import set_clock
from storage.models import RunStatus, StepKind, StepStatus


async def test_a_worker_whose_lease_lapsed_mid_step_does_not_run_its_own_run_twice(start_desk):
    clock = TestClock(datetime.now(UTC))
    set_clock(clock)
    desk = await start_desk(model=True, chatops_lease_seconds=3)  # a heartbeat every second
    model = desk.model
    model.call("ticket_create", {"title": "Only once"}, held=True)
    model.answer("Created it.")
    # What a second loop on the same run would be told (it must never ask):
    model.call("ticket_create", {"title": "Only once"})
    model.answer("Created it again.")
    await desk.send.event(ev.app_mention("<@UBOT> open one ticket"))
    await wait_until(lambda: len(model.requests) == 1, message="the first model turn")
    [run] = await desk.runs()
    assert run.id is not None

    clock.advance(timedelta(seconds=10))  # past the lease, while the model is still thinking

    async def renewed():  # by the heartbeat (or by a claim: that is the bug)
        current = await desk.run(run.id)
        return current.lease_expires_at is not None and current.lease_expires_at > clock()

    await wait_until(renewed, 5, message="the lease to be held again")
    model.release()
    run = await desk.finished(run.id)

    assert run.status == RunStatus.succeeded, run.error
    assert [t.title for t in await desk.tickets()] == ["Only once"]
    assert len(model.requests) == 2, "a second loop on the same run asked the model"
    assert model.remaining == 2
    # Nothing was interrupted, and the journal says so.
    steps = await desk.steps(run.id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
