"""`chatops serve` works its runs on a thread and event loop of their own (bot.background):
an ack never waits for them, and everything a person does still reaches them."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import ask, click, reply_saying, run_for, run_in, say, undone
from storage.models import RunStatus


async def test_the_runs_are_worked_on_their_own_thread_and_report_as_before(start_desk):
    # A long edit interval: one presenter paces the status message, so a quick run makes
    # one post and one (final) edit; had the intake's presenter posted it, the runs' own
    # would have edited it at once, knowing nothing of that post.
    desk = await start_desk(model=True, runs_thread=True, chatops_edit_interval=5.0)
    runs = desk.server.background
    assert runs is not desk.services  # built apart, as a worker process builds its services
    assert desk.server.runs is not None and desk.server.runs.loop is not asyncio.get_running_loop()
    desk.model.call("ticket_create", {"title": "Login page broken"})
    desk.model.answer("I created ticket #1.")

    mention = ev.app_mention("<@UBOT> create a ticket for the login bug", user="U1", channel="C1")
    ts = mention["event"]["ts"]
    assert (await desk.send.event(mention)).status == 200
    [request] = await desk.requests()  # stored before the ack
    assert request.ts == ts
    run = await desk.finished(1, timeout=30)
    assert run.status == RunStatus.succeeded
    # Worked by the runs' thread's worker; the intake's services have none running.
    assert runs.worker.alive and not desk.services.worker.alive

    status, outcome = desk.slack.thread("C1", ts)
    assert len(desk.slack.calls_to("chat.postMessage")) == 2  # a short answer is posted whole
    assert status.ts == run.status_ts and outcome.ts == run.outcome_ts
    assert "finished" in status.text and "created ticket #1" in status.text
    assert outcome.block("markdown")["text"] == "I created ticket #1."
    assert len(desk.slack.calls_to("chat.update")) == 1
    await wait_until(lambda: "white_check_mark" in desk.slack.reactions_on("C1", ts))
    [ticket] = await desk.tickets()
    assert ticket.run_id == run.id


async def test_an_ack_does_not_wait_for_the_runs_event_loop(start_desk):
    """With the runs' loop held (a step that never yields), a delivery is still acked and
    stored, and probes answered; the run it queued is worked once the loop is free."""
    desk = await start_desk(runs_thread=True)
    loop = desk.server.runs.loop
    held, free = threading.Event(), threading.Event()

    def hold() -> None:  # runs on the runs' loop, blocking it as a busy step would
        held.set()
        free.wait(60)

    loop.call_soon_threadsafe(hold)
    assert await asyncio.to_thread(held.wait, 10)
    try:
        mention = ev.app_mention("<@UBOT> create a ticket for the printer", user="U1", channel="C1")
        delivery = await desk.send.event(mention)
        assert delivery.status == 200
        [request] = await desk.requests()
        assert request.text == "create a ticket for the printer"
        [run] = await desk.runs()
        assert run.status == RunStatus.queued  # nobody could work it yet
        async with aiohttp.ClientSession() as http, http.get(f"{desk.url}/healthz") as response:
            health = json.loads(await response.text())
        assert response.status == 200 and health["workers"]["alive"] is True
    finally:
        free.set()
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded


async def test_pause_resume_and_undo_from_slack_reach_the_runs_thread(start_desk):
    desk = await start_desk(model=True, runs_thread=True)
    desk.model.call("ticket_create", {"title": "VPN down"}).call("ticket_create", {"title": "VPN again"})
    desk.model.answer("Filed two tickets.")
    desk.model.hold()
    ts = await ask(desk, "file tickets for the VPN")
    run = await run_for(desk, ts, finished=False)
    await wait_until(lambda: desk.model.requests, message="the run's first model turn")

    await say(desk, "pause agent", thread_ts=ts)
    await reply_saying(desk, "C1", ts, "paused by <@U1>")
    desk.model.release()
    waiting = await run_in(desk, run.id, RunStatus.waiting, RunStatus.queued)
    assert waiting.status != RunStatus.succeeded
    assert len(await desk.tickets()) <= 1  # held at its next step boundary

    await say(desk, "resume agent", thread_ts=ts)
    await reply_saying(desk, "C1", ts, "resumed by <@U1>")
    done = await desk.finished(run.id)  # the resume woke the runs' workers
    assert done.status == RunStatus.succeeded
    assert sorted(t.title for t in await desk.tickets()) == ["VPN again", "VPN down"]

    outcome = desk.slack.messages[done.outcome_ts]
    await click(desk, "chatops_undo", str(done.id), message=outcome)
    undone_run = await undone(desk, done.id)
    assert undone_run.status == RunStatus.rolled_back
    assert all(t.status == "closed" for t in await desk.tickets())
