"""'undo' takes a run back: every step it took is reversed, newest first, and the thread says
what was reversed and what could not be. Typed in the thread, at channel level, clicked
(the Undo button) or through `/agent undo <run>`; a second undo changes nothing.
"""

from __future__ import annotations

import asyncio

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import (
    OPS_CHANNEL,
    ack_text,
    actions_of,
    approval_message,
    approvals,
    ask,
    audit,
    click,
    compensations_of,
    config,
    ephemerals_to,
    lines,
    post,
    reply_saying,
    say,
    slash,
    undone,
)
from storage.models import RunStatus, StepKind, StepStatus


async def _finished_run(desk, notes, *, channel: str = "C1", line: str = "maintenance window opened"):
    """A finished run that appended a line, created a ticket and replied in its thread."""
    desk.model.call("append_line", {"line": line})
    desk.model.call("ticket_create", {"title": "Maintenance tonight"})
    desk.model.call("slack_reply", {"text": "Heads up: maintenance tonight."})
    desk.model.answer("Opened the window, filed a ticket and told the thread.")
    ts = await ask(desk, "prepare tonight's maintenance", channel=channel)
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    assert line in lines(notes)
    assert len(await desk.tickets()) == 1
    [reply] = [m for m in desk.slack.thread(channel, ts) if m.text == "Heads up: maintenance tonight."]
    return run, ts, reply


async def _trace(desk, notes, run_id):
    """Everything an undo could change, to compare before and after."""
    return (
        lines(notes),
        [t.id for t in await desk.tickets()],
        len(desk.slack.calls_to("chat.delete")),
        [(s.seq, s.kind, s.status) for s in await desk.steps(run_id)],
        (await desk.run(run_id)).status,
    )


async def test_undo_in_the_thread_reverses_every_step_newest_first_and_reports_it(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("kept from before\n")
    desk = await start_desk(config(notes), model=True)
    model, slack = desk.model, desk.slack
    model.call("append_line", {"line": "maintenance window opened"})
    model.call("ticket_create", {"title": "Maintenance tonight"})
    model.call("wipe_cache")  # irreversible: a human approves it first
    model.call("slack_reply", {"text": "Heads up: maintenance tonight."})
    model.answer("Opened the window, filed a ticket, wiped the cache and told the thread.")
    ts = await ask(desk, "prepare tonight's maintenance")

    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    assert approval.action == "wipe_cache"
    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    assert lines(notes) == ["kept from before", "maintenance window opened", "wiped"]
    [ticket] = await desk.tickets()
    [reply] = [m for m in slack.thread("C1", ts) if m.text == "Heads up: maintenance tonight."]
    assert not reply.deleted

    await say(desk, "undo", thread_ts=ts)
    answer = await reply_saying(desk, "C1", ts, f"Undoing run #{run.id}")
    run = await undone(desk, run.id)

    assert run.status == RunStatus.rolled_back and run.undone_by == "U1"
    # Files, tickets, messages: each reversed.
    assert lines(notes) == ["kept from before", "wiped"]  # its line is gone; the wipe cannot be undone
    assert await desk.tickets() == []
    assert reply.deleted
    assert [c.params["ts"] for c in slack.calls_to("chat.delete")] == [reply.ts]
    # Newest first, each reversal journaled.
    steps = await desk.steps(run.id)
    by_id = {s.id: s for s in steps}
    compensations = [s for s in steps if s.kind == StepKind.compensation]
    assert [by_id[c.compensates].name for c in compensations] == [
        "slack_reply",
        "ticket_create",
        "append_line",
    ]
    assert all(c.status == StepStatus.succeeded for c in compensations)
    assert [(s.name, s.status) for s in steps if s.kind == StepKind.action] == [
        ("append_line", StepStatus.compensated),
        ("ticket_create", StepStatus.compensated),
        ("wipe_cache", StepStatus.succeeded),
        ("slack_reply", StepStatus.compensated),
    ]
    # The undo report, in the thread: who asked, what was reversed (newest first), what could not be.
    report = slack.messages[run.undo_ts]
    assert report.thread_ts == ts and report.ts != answer.ts
    assert f"run #{run.id}" in report.text and "<@U1>" in report.text
    reversed_part = report.text.split("Reversed:", 1)[1].split("\n", 1)[0]
    assert "deleted the reply" in reversed_part
    assert f"deleted ticket #{ticket.id}" in reversed_part
    assert "append_line" in reversed_part
    assert (
        reversed_part.index("deleted the reply")
        < reversed_part.index(f"deleted ticket #{ticket.id}")
        < reversed_part.index("append_line")
    )
    could_not = report.text.split("Could not reverse:", 1)[1]
    assert "wipe_cache" in could_not
    assert "wipe_cache" not in reversed_part
    [event] = await audit(desk, "undo")
    assert (event.actor, event.target) == ("U1", f"run:{run.id}")


async def test_a_second_undo_says_already_undone_and_changes_nothing(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    run, ts, reply = await _finished_run(desk, notes)

    await say(desk, "undo", thread_ts=ts)
    run = await undone(desk, run.id)
    assert lines(notes) == [] and await desk.tickets() == [] and reply.deleted
    before = await _trace(desk, notes, run.id)
    thread_before = len(desk.slack.thread("C1", ts))

    await say(desk, "undo", thread_ts=ts)
    answer = await reply_saying(desk, "C1", ts, "already undone")
    await desk.settled()

    assert f"#{run.id}" in answer.text
    assert await _trace(desk, notes, run.id) == before
    assert len(desk.slack.thread("C1", ts)) == thread_before + 1  # that answer, and no second report
    assert (await desk.run(run.id)).undo_ts == run.undo_ts
    assert len(await audit(desk, "undo")) == 1


async def test_two_undos_at_once_reverse_the_run_once(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    run, ts, reply = await _finished_run(desk, notes)

    await asyncio.gather(say(desk, "undo", thread_ts=ts), say(desk, "undo", thread_ts=ts, user="U2"))
    await reply_saying(desk, "C1", ts, "already undone")
    await reply_saying(desk, "C1", ts, f"Undoing run #{run.id}")
    run = await undone(desk, run.id)
    await desk.settled()

    assert lines(notes) == [] and await desk.tickets() == [] and reply.deleted
    assert len(desk.slack.calls_to("chat.delete")) == 1
    compensations = await compensations_of(desk, run.id)
    assert len(compensations) == 3 and all(c.status == StepStatus.succeeded for c in compensations)
    reports = [
        m for m in desk.slack.thread("C1", ts) if m.text.startswith(":leftwards_arrow_with_hook: Undo")
    ]
    assert [m.ts for m in reports] == [run.undo_ts]
    assert len(await audit(desk, "undo")) == 1


async def test_the_undo_button_reverses_the_run_and_answers_only_the_clicker(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    run, ts, reply = await _finished_run(desk, notes)
    outcome = desk.slack.messages[run.outcome_ts]
    assert "chatops_undo" in outcome.action_ids()

    await click(desk, "chatops_undo", str(run.id), message=outcome, user="U2")
    run = await undone(desk, run.id)

    assert run.status == RunStatus.rolled_back and run.undone_by == "U2"
    assert lines(notes) == [] and await desk.tickets() == [] and reply.deleted
    [answer] = ephemerals_to(desk, "U2")
    assert f"Undoing run #{run.id}" in answer.text and answer.channel == "C1"
    report = desk.slack.messages[run.undo_ts]
    assert report.thread_ts == ts and "<@U2>" in report.text and "Reversed:" in report.text

    # A second click: already undone, nothing changes.
    before = await _trace(desk, notes, run.id)
    await click(desk, "chatops_undo", str(run.id), message=outcome, user="U2")
    await desk.settled()
    assert "already undone" in ephemerals_to(desk, "U2")[-1].text
    assert await _trace(desk, notes, run.id) == before


async def test_agent_undo_with_a_run_number_reverses_that_run(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    run, ts, reply = await _finished_run(desk, notes)

    delivery = await slash(desk, f"undo {run.id}")  # by number, in the run's channel (not its thread)
    text, _ = ack_text(delivery)
    assert f"Undoing run #{run.id}" in text
    run = await undone(desk, run.id)
    assert run.status == RunStatus.rolled_back
    assert lines(notes) == [] and await desk.tickets() == [] and reply.deleted
    assert desk.slack.messages[run.undo_ts].thread_ts == ts  # the report goes in the run's thread

    before = await _trace(desk, notes, run.id)
    text, _ = ack_text(await slash(desk, f"undo {run.id}"))
    assert "already undone" in text
    await desk.settled()
    assert await _trace(desk, notes, run.id) == before

    text, _ = ack_text(await slash(desk, "undo 999"))
    assert "no run #999" in text


async def test_undo_at_channel_level_takes_the_channels_latest_run(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("append_line", {"line": "first"}).answer("First.")
    first_ts = await post(desk, "note first", channel=OPS_CHANNEL)
    first = await desk.only_run()
    desk.model.call("append_line", {"line": "second"}).answer("Second.")
    second_ts = await post(desk, "note second", channel=OPS_CHANNEL)
    assert first.id is not None
    second = await desk.finished(first.id + 1)
    assert (first.agent, second.agent) == ("ops", "ops")
    assert lines(notes) == ["first", "second"]

    undo_ts = await post(desk, "undo", channel=OPS_CHANNEL)  # top level, in the served channel
    assert second.id is not None
    await reply_saying(desk, OPS_CHANNEL, undo_ts, f"Undoing run #{second.id}")
    second = await undone(desk, second.id)
    await desk.settled()

    assert lines(notes) == ["first"]
    assert (await desk.run(first.id)).status == RunStatus.succeeded
    assert (await desk.run(first.id)).undone_by is None
    assert desk.slack.messages[second.undo_ts].thread_ts == second_ts
    assert [s.status for s in await actions_of(desk, first.id)] == [StepStatus.succeeded]
    assert first_ts != second_ts
    assert len(await desk.runs()) == 2  # "undo" was a command, not a request


async def test_undo_of_a_run_in_flight_stops_it_at_its_next_step_then_reverses_it(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    model = desk.model
    model.call("append_line", {"line": "one"})
    model.call("append_line", {"line": "two"}, held=True)  # the model is thinking when undo arrives
    model.answer("Appended two lines.")
    ts = await ask(desk, "append two lines")
    await wait_until(lambda: len(model.requests) == 2)
    assert lines(notes) == ["one"]
    [run] = await desk.runs()
    assert run.status == RunStatus.running

    await say(desk, "undo", thread_ts=ts)
    answer = await reply_saying(desk, "C1", ts, f"Undoing run #{run.id}:")  # not the status message
    assert "next step" in answer.text
    model.release()
    run = await undone(desk, run.id)

    assert run.status == RunStatus.rolled_back and run.undone_by == "U1"
    assert lines(notes) == []  # "one" reversed, "two" never ran
    actions = await actions_of(desk, run.id)
    assert [(s.arguments, s.status) for s in actions] == [({"line": "one"}, StepStatus.compensated)]
    assert len(model.requests) == 2 and model.remaining == 1  # not asked again after the undo
    report = desk.slack.messages[run.undo_ts]
    assert report.thread_ts == ts and "append_line" in report.text
    assert run.outcome_ts == run.undo_ts  # one final word in the thread, not an outcome and a report


async def test_undo_racing_a_busy_run_leaves_nothing_behind(start_desk, tmp_path):
    """Wherever in the run the undo lands, everything done is reversed and nothing starts after it."""
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    model = desk.model
    for i in range(12):
        model.call("append_line", {"line": f"line {i}"}, delay=0.02)
    model.call("append_line", {"line": "last"}, held=True)  # the run cannot finish before the undo
    model.answer("Done.")
    ts = await ask(desk, "append many lines")
    await wait_until(lambda: len(lines(notes)) >= 2)

    await say(desk, "undo", thread_ts=ts)
    model.release()
    [run] = await desk.runs()
    assert run.id is not None
    run = await undone(desk, run.id)

    assert run.status == RunStatus.rolled_back
    assert lines(notes) == []
    actions = await actions_of(desk, run.id)
    assert actions and all(s.status == StepStatus.compensated for s in actions)
    assert "last" not in [(s.arguments or {})["line"] for s in actions]
    compensations = await compensations_of(desk, run.id)
    assert [c.compensates for c in compensations] == [s.id for s in reversed(actions)]


async def test_undo_of_a_run_waiting_for_approval_withdraws_the_approval(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("append_line", {"line": "prepared"})
    desk.model.call("deploy", {"service": "api"})
    ts = await ask(desk, "prepare and deploy api")
    buttons = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    assert lines(notes) == ["prepared"]

    await say(desk, "undo", thread_ts=ts)
    run = await undone(desk, approval.run_id)
    assert run.status == RunStatus.rolled_back
    assert lines(notes) == []

    # The approval is gone with the run: no button left to click, nothing waiting.
    [withdrawn] = await approvals(desk)
    assert withdrawn.status != "pending", withdrawn
    await wait_until(lambda: "chatops_approve" not in buttons.action_ids(), message=lambda: buttons.text)
    status, _ = ack_text(await slash(desk, "status"))
    assert "*Approvals waiting*: none" in status, status
    # A click on the old button does nothing.
    await click(desk, "chatops_approve", str(approval.id), message=buttons)
    await desk.settled()
    assert lines(notes) == []
    assert (await desk.run(run.id)).status == RunStatus.rolled_back


async def test_one_undo_message_delivered_twice_and_retried_answers_once(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    run, ts, reply = await _finished_run(desk, notes)
    mention = ev.app_mention("<@UBOT> undo", channel="C1", thread_ts=ts)
    message = ev.thread_reply("<@UBOT> undo", thread_ts=ts, channel="C1", ts=mention["event"]["ts"])

    deliveries = await asyncio.gather(
        desk.send.event(message), desk.send.event(mention), desk.send.event(mention, retry_num=1)
    )
    assert [d.status for d in deliveries] == [200, 200, 200]
    run = await undone(desk, run.id)
    await desk.settled()

    texts = [m.text for m in desk.slack.thread("C1", ts)]
    assert sum(f"Undoing run #{run.id}" in t for t in texts) == 1, texts
    assert not any("already undone" in t for t in texts), texts
    assert len(await audit(desk, "undo")) == 1
    assert lines(notes) == [] and reply.deleted and len(desk.slack.calls_to("chat.delete")) == 1
