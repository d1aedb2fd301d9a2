"""Runs survive what goes wrong around them: a worker that dies mid-run, a thread that gets
a follow-up while its run is still working, an outcome Slack would not take at first.
"""

from __future__ import annotations

import asyncio

from fakes import slack_events as ev
from fakes import wait_until

import bot.scheduler
from storage.models import RunStatus, StepKind, StepStatus


async def test_a_run_interrupted_by_a_dying_worker_resumes_from_its_journal(start_desk):
    desk = await start_desk(model=True, chatops_lease_seconds=1)
    model, slack = desk.model, desk.slack
    model.answer("never delivered: the worker dies while the model thinks")
    model.call("ticket_create", {"title": "Survives restarts"})
    model.answer("Created ticket #1 despite the restart.")
    model.hold()
    mention = ev.app_mention("<@UBOT> create a ticket that survives restarts")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)
    await wait_until(lambda: len(model.requests) == 1)  # the first worker is waiting for the model
    [run] = await desk.runs()
    assert run.id is not None
    status_ts = (await wait_until(lambda: slack.thread("C1", ts)))[0].ts

    await desk.services.worker.stop(grace=0)  # the process dies: in-flight work is cut off
    await desk.stop()
    model.release()

    second = await start_desk(model=True, chatops_lease_seconds=1)  # same database, new process
    run = await second.finished(run.id, timeout=15)

    assert run.status == RunStatus.succeeded
    assert run.attempts == 2
    [ticket] = await second.tickets()
    assert ticket.title == "Survives restarts"
    steps = await second.steps(run.id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.failed),  # the turn cut off by the crash, asked again
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
    # Still one status message (edited by the new process) and one outcome in the thread.
    status, outcome = slack.thread("C1", ts)
    assert status.ts == status_ts == run.status_ts
    assert "finished" in status.text
    assert outcome.ts == run.outcome_ts and "despite the restart" in outcome.text
    assert model.remaining == 0


async def test_a_follow_up_in_a_busy_thread_goes_to_the_run_in_flight(start_desk):
    """It used to queue behind the run; a thread is a conversation now: the reply steers the
    run (tests/scenarios/test_conversations.py has the rest), and no second run starts."""
    desk = await start_desk(model=True)
    model = desk.model
    model.call("ticket_create", {"title": "First"})  # decided before the reply: not run, decided again
    model.calls([("ticket_create", {"title": "First"}), ("ticket_create", {"title": "Second"})])
    model.answer("Both done.")
    model.hold()
    mention = ev.app_mention("<@UBOT> create the first ticket")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)
    await wait_until(lambda: len(model.requests) == 1)

    follow_up = ev.thread_reply("<@UBOT> and now the second one", thread_ts=ts)
    assert (await desk.send.event(follow_up)).status == 200
    [run] = await desk.runs()
    assert run.status == RunStatus.running

    model.release()
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    assert [t.title for t in await desk.tickets()] == ["First", "Second"]
    # The call decided before the reply was not run; the run read the reply at its next model turn.
    assert model.tool_results(1)[-1].startswith("error: not run: someone wrote in the thread")
    assert model.messages(1)[-1] == {
        "role": "user",
        "content": "(<@U1> adds, while you work:) and now the second one",
    }


async def test_an_outcome_slack_refused_is_delivered_later(start_desk, monkeypatch):
    monkeypatch.setattr(bot.scheduler, "HOUSEKEEPING_SECONDS", 0.2)
    desk = await start_desk(scheduler=True)
    slack = desk.slack
    # The status message goes; the outcome post fails, retries included (three 500s).
    slack.fail("chat.postMessage", status=500, times=3, after=1)
    mention = ev.app_mention("<@UBOT> create a ticket for the Slack outage")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    run = await desk.only_run(timeout=15)
    assert run.status == RunStatus.succeeded
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 500, 500, 500, 200]
    status, outcome = slack.thread("C1", ts)
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "created ticket #1" in outcome.text
    await wait_until(lambda: "white_check_mark" in slack.reactions_on("C1", ts))


async def test_an_action_cut_off_by_a_shutdown_is_left_for_a_human_not_failed(start_desk, tmp_path):
    log = tmp_path / "jobs.log"
    target = str(log)
    config = f"""
[[agents]]
name = "ops"
default = true
actions = ["slow_job"]

[[actions]]
name = "slow_job"
description = "A job that takes a while and is not safe to repeat"
kind = "command"
params = {{ name = "string" }}
run = '''echo "start {{{{ name }}}}" >> '{target}'; sleep 5; echo "end {{{{ name }}}}" >> '{target}' '''
undo = "true"
timeout = 20
"""
    desk = await start_desk(config, chatops_lease_seconds=1)
    mention = ev.app_mention("<@UBOT> slow_job name=migration")
    await desk.send.event(mention)
    await wait_until(lambda: log.exists() and "start migration" in log.read_text())
    [run] = await desk.runs()
    assert run.id is not None

    await desk.services.worker.stop(grace=0)  # shutdown: the grace period is over
    await desk.stop()
    second = await start_desk(config, chatops_lease_seconds=1)

    async def waiting():
        r = await second.run(run.id)
        return r if r.status == RunStatus.waiting else None

    run = await wait_until(waiting, 10)
    assert "needs a human" in (run.wait_reason or "") and "slow_job" in (run.wait_reason or "")
    assert log.read_text() == "start migration\n"  # cut off, and not started again
    [step] = [s for s in await second.steps(run.id) if s.kind == StepKind.action]
    assert step.status == StepStatus.intent and "timed out" not in (step.error or "")
    status = second.slack.thread("C1", mention["event"]["ts"])[0]
    await wait_until(
        lambda: "waiting" in status.text and "needs a human" in status.text, message=lambda: status.text
    )


async def test_the_server_stops_when_work_arrives_just_as_it_is_told_to_stop(start_desk):
    """SIGTERM (Server.stop) in the same moment a request wakes the idle worker must still stop."""
    desk = await start_desk(chatops_poll_seconds=30)
    worker = desk.services.worker
    # Idle in its poll: someone waits on the wake-up event (a private detail, but the only
    # way to line the two events up deterministically).
    await wait_until(lambda: worker.alive and worker._wake._waiters)
    worker.wake()  # a request was just queued ...
    stopping = asyncio.create_task(desk.server.stop())  # ... and the process is told to stop
    done, _ = await asyncio.wait({stopping}, timeout=5)
    hung = stopping not in done
    if hung:  # let the worker loop end so the test can finish
        worker._stopping = True
        worker.wake()
        await stopping
    desk.stopped = True
    assert not hung, "Server.stop() did not return: the worker loop swallowed the cancellation"
