"""'pause agent' stops new actions within one step; 'pause all agents' / `/agent pause all` is the
emergency stop. A pause is durable, announced with who, holds runs in flight at their next
step boundary and queues new requests, until 'resume' lets them continue.
"""

from __future__ import annotations

from fakes import wait_until

from scenarios.control_support import (
    OPS_CHANNEL,
    SUPPORT_CHANNEL,
    ack_text,
    actions_of,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    config,
    ephemerals_to,
    first_run,
    lines,
    paused_scopes,
    post,
    reply_saying,
    run_in,
    say,
    slash,
)
from storage.models import Control, RunStatus, StepStatus


async def _status_text(desk, run_id: int | None, *words: str) -> str:
    """Wait until the run's status message has every one of `words`; return its text."""

    async def text() -> str | None:
        run = await desk.run(run_id)
        msg = desk.slack.messages.get(run.status_ts or "")
        return msg.text if msg is not None and all(w in msg.text for w in words) else None

    async def describe() -> str:
        run = await desk.run(run_id)
        msg = desk.slack.messages.get(run.status_ts or "")
        return f"status message of run #{run_id} with {words}: {msg.text if msg else None!r}"

    try:
        return await wait_until(text, message=f"run #{run_id}'s status message to say {words}")
    except AssertionError:
        raise AssertionError(await describe()) from None


async def _two(desk):
    runs = await desk.runs()
    return runs if len(runs) == 2 else None


async def test_pause_agent_in_a_thread_is_durable_and_holds_new_requests_until_resume(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("ticket_create", {"title": "Printer jam"}).answer("Filed it.")
    ts = await post(desk, "the printer jams", channel=SUPPORT_CHANNEL)
    run = await desk.only_run()
    assert run.agent == "support"

    await say(desk, "pause agent", thread_ts=ts, channel=SUPPORT_CHANNEL)  # the thread's agent
    note = await reply_saying(desk, SUPPORT_CHANNEL, ts, "paused by <@U1>")
    assert "*support*" in note.text
    assert await paused_scopes(desk) == {"support"}
    [event] = await audit(desk, "pause")
    assert (event.actor, event.target) == ("U1", "agent:support")

    # Only that agent: ops still acts.
    desk.model.call("append_line", {"line": "ops still works"}).answer("Noted.")
    await ask(desk, "note that ops still works")
    assert run.id is not None
    ops_run = await desk.finished(run.id + 1)
    assert ops_run.status == RunStatus.succeeded and lines(notes) == ["ops still works"]

    # A restart on the same database: still paused.
    await desk.stop()
    desk = await start_desk(config(notes), model=True)
    assert await paused_scopes(desk) == {"support"}
    asked = len(desk.model.requests)
    desk.model.call("ticket_create", {"title": "Refund order 1042"}).answer("Filed the refund.")
    new_ts = await post(desk, "please refund order 1042", channel=SUPPORT_CHANNEL, user="U2")

    # Accepted and queued; it waits because the agent is paused, and its status message says so.
    [request] = [r for r in await desk.requests() if r.ts == new_ts]
    waiting = await run_in(desk, ops_run.id + 1, RunStatus.queued, RunStatus.waiting)
    assert waiting.request_id == request.id and waiting.agent == "support"
    text = await _status_text(desk, waiting.id, "paused", "support")
    assert f"#{waiting.id}" in text
    status = ack_text(await slash(desk, "status", channel=SUPPORT_CHANNEL))[0]  # the run's channel
    assert "*support*: paused by <@U1>" in status and "*ops*: active" in status
    assert f"run #{waiting.id} (support)" in status
    assert len(desk.model.requests) == asked  # no model turn, no action
    assert [t.title for t in await desk.tickets()] == ["Printer jam"]

    await say(desk, "resume agent", thread_ts=new_ts, channel=SUPPORT_CHANNEL, user="U2")
    note = await reply_saying(desk, SUPPORT_CHANNEL, new_ts, "resumed by <@U2>")
    assert "*support*" in note.text and "1 waiting run continues" in note.text
    done = await desk.finished(waiting.id)
    assert done.status == RunStatus.succeeded
    assert [t.title for t in await desk.tickets()] == ["Printer jam", "Refund order 1042"]
    assert await paused_scopes(desk) == set()
    [resumed] = await audit(desk, "resume")
    assert (resumed.actor, resumed.target) == ("U2", "agent:support")


async def test_pause_at_channel_level_pauses_the_channels_agent(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)

    pause_ts = await post(desk, "pause", channel=OPS_CHANNEL)
    note = await reply_saying(desk, OPS_CHANNEL, pause_ts, "paused by <@U1>")
    assert "*ops*" in note.text
    named_ts = await post(desk, "pause agent support", channel=OPS_CHANNEL, user="U2")
    await reply_saying(desk, OPS_CHANNEL, named_ts, "*support*", "paused by <@U2>")
    assert await paused_scopes(desk) == {"ops", "support"}
    assert await desk.runs() == []  # commands, not requests

    again_ts = await post(desk, "pause agent", channel=OPS_CHANNEL)
    await reply_saying(desk, OPS_CHANNEL, again_ts, "already paused")

    desk.model.call("append_line", {"line": "held"}).answer("Done.")
    await ask(desk, "append held")
    run = await first_run(desk)
    assert run.id is not None
    await run_in(desk, run.id, RunStatus.queued, RunStatus.waiting)
    await _status_text(desk, run.id, "paused")
    assert lines(notes) == [] and desk.model.requests == []

    resume_ts = await post(desk, "resume", channel=OPS_CHANNEL)
    note = await reply_saying(desk, OPS_CHANNEL, resume_ts, "resumed by <@U1>")
    assert "*ops*" in note.text
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["held"]
    assert await paused_scopes(desk) == {"support"}

    text, kind = ack_text(await slash(desk, "resume support"))
    assert "*support*" in text and "resumed by <@U1>" in text and kind == "in_channel"
    assert await paused_scopes(desk) == set()


async def test_pause_all_agents_stops_every_agent_until_resume_all(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    pause_ts = await ask(desk, "pause all agents")
    note = await reply_saying(desk, "C1", pause_ts, "All agents are paused by <@U1>")
    assert "resume all" in note.text
    assert await paused_scopes(desk) == {"*"}
    assert await desk.runs() == []

    desk.model.call("append_line", {"line": "ops line"}).answer("Done.")
    await ask(desk, "append ops line", channel="C2")
    desk.model.call("ticket_create", {"title": "Support ticket"}).answer("Done.")
    await post(desk, "open a support ticket", channel=SUPPORT_CHANNEL)
    first, second = await wait_until(lambda: _two(desk), message="two runs to be queued")
    for run in (first, second):
        await run_in(desk, run.id, RunStatus.queued, RunStatus.waiting)
        await _status_text(desk, run.id, "paused", "all agents")
    assert desk.model.requests == [] and lines(notes) == [] and await desk.tickets() == []

    resume_ts = await post(desk, "resume all", channel=OPS_CHANNEL)
    note = await reply_saying(desk, OPS_CHANNEL, resume_ts, "All agents resumed by <@U1>")
    assert "2 waiting runs continue" in note.text
    await desk.settled()
    assert [(await desk.run(r.id)).status for r in (first, second)] == [RunStatus.succeeded] * 2
    assert lines(notes) == ["ops line"]
    assert [t.title for t in await desk.tickets()] == ["Support ticket"]
    assert await paused_scopes(desk) == set()


async def test_a_run_in_flight_when_pause_all_arrives_waits_at_its_next_step(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    model = desk.model
    model.call("append_line", {"line": "one"}, held=True)  # the model is thinking when the pause arrives
    model.answer("Appended one line.")
    ts = await ask(desk, "append one line")
    await wait_until(lambda: len(model.requests) == 1)
    [run] = await desk.runs()
    assert run.status == RunStatus.running and run.id is not None

    text, kind = ack_text(await slash(desk, "pause all"))
    assert "All agents are paused by <@U1>" in text and kind == "in_channel"
    model.release()  # the model answers with a tool call: it must not run

    run = await run_in(desk, run.id, RunStatus.waiting, reason="paused")
    assert lines(notes) == []
    assert await actions_of(desk, run.id) == []
    await _status_text(desk, run.id, "waiting", "paused")

    # Still paused after a restart, the run still waiting.
    await desk.stop()
    desk = await start_desk(config(notes), model=True)
    status = ack_text(await slash(desk, "status"))[0]
    assert "ALL AGENTS PAUSED by <@U1>" in status and f"run #{run.id} (ops): waiting" in status
    assert (await desk.run(run.id)).status == RunStatus.waiting
    assert lines(notes) == []

    await say(desk, "resume all", thread_ts=ts, user="U2")
    note = await reply_saying(desk, "C1", ts, "All agents resumed by <@U2>")
    assert "1 waiting run continues" in note.text
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded
    assert lines(notes) == ["one"]  # the call the model made before the pause, run once after it
    assert [s.status for s in await actions_of(desk, run.id)] == [StepStatus.succeeded]
    assert len(model.requests) == 2 and model.remaining == 0


async def test_the_pause_button_holds_a_run_in_flight_at_its_next_step(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    model = desk.model
    model.call("append_line", {"line": "one"})
    model.call("append_line", {"line": "two"}, held=True)
    model.answer("Two lines.")
    ts = await ask(desk, "append two lines")
    await wait_until(lambda: len(model.requests) == 2)
    [run] = await desk.runs()
    assert run.id is not None

    async def pausable():
        r = await desk.run(run.id)
        msg = desk.slack.messages.get(r.status_ts or "")
        return msg if msg is not None and "chatops_pause" in msg.action_ids() else None

    status = await wait_until(pausable, message="the status message to offer a Pause button")
    await click(desk, "chatops_pause", "ops", message=status, user="U2")
    note = await reply_saying(desk, "C1", ts, "paused by <@U2>")  # announced in the thread, to everyone
    assert "*ops*" in note.text
    model.release()

    await run_in(desk, run.id, RunStatus.waiting, reason="paused")
    assert lines(notes) == ["one"]
    assert [s.arguments for s in await actions_of(desk, run.id)] == [{"line": "one"}]
    await wait_until(lambda: "chatops_pause" not in status.action_ids())  # nothing left to pause

    text, kind = ack_text(await slash(desk, "resume ops"))
    assert "resumed by <@U1>" in text and kind == "in_channel"
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded and lines(notes) == ["one", "two"]


async def test_a_pause_racing_a_busy_run_lets_no_action_start_after_it(start_desk, tmp_path):
    """Wherever the pause lands, every action began before it, and resume goes on from there."""
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    model = desk.model
    expected = [f"line {i}" for i in range(12)]
    for line in expected:
        model.call("append_line", {"line": line}, delay=0.02)
    model.call("append_line", {"line": "last"}, held=True)  # the run cannot finish before the pause
    model.answer("Done.")
    ts = await ask(desk, "append many lines")
    await wait_until(lambda: len(lines(notes)) >= 2)

    await slash(desk, "pause all")
    model.release()
    [run] = await desk.runs()
    assert run.id is not None
    await run_in(desk, run.id, RunStatus.waiting, reason="paused")

    [pause] = await desk.rows(Control)
    actions = await actions_of(desk, run.id)
    assert all(s.started_at < pause.changed_at for s in actions), "an action started after the pause"
    assert all(s.status == StepStatus.succeeded for s in actions)
    written = lines(notes)
    assert written == [(s.arguments or {})["line"] for s in actions]  # each action ran once, none half-way
    assert "last" not in written

    await say(desk, "resume all", thread_ts=ts)
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded
    assert lines(notes) == [*expected, "last"]  # nothing skipped, nothing repeated


async def test_an_approval_given_while_paused_waits_for_resume(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("deploy", {"service": "api"}).answer("Deployed api.")
    ts = await ask(desk, "deploy api")
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)

    await slash(desk, "pause all")
    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    assert "approved by <@U1>" in ephemerals_to(desk, "U1")[-1].text
    run = await run_in(desk, approval.run_id, RunStatus.waiting, reason="paused")
    assert lines(notes) == []  # approved, but paused: it does not run

    await say(desk, "resume all", thread_ts=ts)
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded
    assert lines(notes) == ["deployed api"]


async def test_agent_status_shows_agents_runs_in_flight_and_approvals_waiting(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("deploy", {"service": "web"})
    ts = await ask(desk, "deploy web")
    await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    text, kind = ack_text(await slash(desk, "pause support"))
    assert "paused by <@U1>" in text and kind == "in_channel"
    await post(desk, "open a ticket for the refund", channel=SUPPORT_CHANNEL, user="U2")
    queued = await wait_until(lambda: _two(desk), message="two runs")
    await run_in(desk, queued[1].id, RunStatus.queued, RunStatus.waiting)

    text, kind = ack_text(await slash(desk, "status", user="U2"))
    assert kind != "in_channel"  # only the one who asked sees it
    assert "*ops*: active; 1 run in flight" in text
    assert "*support*: paused by <@U1>" in text and "support*: paused by <@U1> since" in text
    assert f"run #{approval.run_id} (ops): waiting" in text and "approval" in text
    assert "*Approvals waiting*" in text and f"run #{approval.run_id}: deploy" in text
    # Each channel's status shows its own runs (the pauses are everyone's).
    assert f"run #{queued[1].id} (support)" not in text
    text, _ = ack_text(await slash(desk, "status", channel=SUPPORT_CHANNEL, user="U2"))
    assert f"run #{queued[1].id} (support)" in text and "*support*: paused by <@U1>" in text
    assert f"run #{approval.run_id}" not in text and "*Approvals waiting*: none" in text
    assert lines(notes) == []
