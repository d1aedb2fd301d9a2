"""Controls in Socket Mode, as over HTTP: `undo` and `pause` as words, `/agent status` and
`/agent pause all` as slash_commands envelopes whose reply rides on the ack, and the Undo and
Approve buttons clicked through interactive envelopes. Every envelope is acked once, with its id."""

from __future__ import annotations

import json

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import (
    OPS_CHANNEL,
    ack_text,
    approval_message,
    approvals,
    ask,
    click,
    config,
    ephemerals_to,
    lines,
    paused_scopes,
    post,
    reply_saying,
    run_for,
    run_in,
    say,
    slash,
    undone,
)
from scenarios.socket_support import socket_desk
from storage.models import ApprovalStatus, RunStatus


async def _finished_run(desk, model, notes, *, line: str = "maintenance window opened"):
    """A finished run that appended a line and created a ticket; returns it and its thread."""
    model.call("append_line", {"line": line})
    model.call("ticket_create", {"title": "Maintenance tonight"})
    model.answer("Opened the window and filed a ticket.")
    ts = await ask(desk, "prepare tonight's maintenance")
    run = await run_for(desk, ts)
    assert run.status == RunStatus.succeeded, run.error
    assert lines(notes) == [line] and len(await desk.tickets()) == 1
    return run, ts


async def test_undo_typed_in_the_thread_reverses_the_run(processes, fake_slack, fake_model, tmp_path):
    notes = tmp_path / "notes.txt"
    async with socket_desk(processes, fake_slack, tmp_path, config=config(notes), model=fake_model) as desk:
        run, ts = await _finished_run(desk, fake_model, notes)

        await say(desk, "undo", thread_ts=ts)
        run = await undone(desk, run.id)
        assert run.status == RunStatus.rolled_back and run.undone_by == "U1"
        assert lines(notes) == [] and await desk.tickets() == []
        report = fake_slack.messages[run.undo_ts]
        assert report.thread_ts == ts and "Reversed:" in report.text
        desk.every_envelope_acked_once()


async def test_pause_as_words_holds_new_requests_until_resume(processes, fake_slack, fake_model, tmp_path):
    notes = tmp_path / "notes.txt"
    async with socket_desk(processes, fake_slack, tmp_path, config=config(notes), model=fake_model) as desk:
        pause_ts = await ask(desk, "pause all agents")
        await reply_saying(desk, "C1", pause_ts, "All agents are paused by <@U1>")
        assert await paused_scopes(desk) == {"*"}

        fake_model.call("append_line", {"line": "after the pause"}).answer("Done.")
        ts = await ask(desk, "append a line after the pause", channel=OPS_CHANNEL)
        run = await run_for(desk, ts, finished=False)
        await run_in(desk, run.id, RunStatus.queued, RunStatus.waiting)
        assert fake_model.requests == [] and lines(notes) == []

        resume_ts = await post(desk, "resume all", channel=OPS_CHANNEL)
        await reply_saying(desk, OPS_CHANNEL, resume_ts, "All agents resumed by <@U1>")
        run = await desk.finished(run.id)
        assert run.status == RunStatus.succeeded and lines(notes) == ["after the pause"]
        desk.every_envelope_acked_once()


async def test_agent_status_and_pause_all_answer_on_the_ack(processes, fake_slack, fake_model, tmp_path):
    notes = tmp_path / "notes.txt"
    async with socket_desk(processes, fake_slack, tmp_path, config=config(notes), model=fake_model) as desk:
        delivery = await slash(desk, "status", user="U2")
        text, kind = ack_text(delivery)
        assert kind != "in_channel"  # only the one who asked sees it
        assert "*ops*: active" in text and "*support*: active" in text
        [envelope] = desk.socket.envelopes
        assert envelope.type == "slash_commands" and envelope.message["accepts_response_payload"] is True
        assert envelope.response == json.loads(delivery.text)  # the reply rode on the ack

        text, kind = ack_text(await slash(desk, "pause all"))
        assert "All agents are paused by <@U1>" in text and kind == "in_channel"
        assert await paused_scopes(desk) == {"*"}
        text, _ = ack_text(await slash(desk, "status"))
        assert "paused" in text and "all agents" in text.lower()

        text, _ = ack_text(await slash(desk, "resume all"))
        assert "All agents resumed by <@U1>" in text
        assert await paused_scopes(desk) == set()
        # A request through the command: the ack names the run, which reports in a new thread.
        fake_model.call("append_line", {"line": "by command"}).answer("Done.")
        text, _ = ack_text(await slash(desk, "append a line by command", channel="C7"))
        assert "Run #1" in text and "ops" in text
        [opener] = await wait_until(lambda: fake_slack.top_level("C7"))
        run = await run_for(desk, opener.ts)
        assert run.status == RunStatus.succeeded and lines(notes) == ["by command"]
        desk.every_envelope_acked_once()


async def test_the_undo_button_reverses_the_run(processes, fake_slack, fake_model, tmp_path):
    notes = tmp_path / "notes.txt"
    async with socket_desk(processes, fake_slack, tmp_path, config=config(notes), model=fake_model) as desk:
        run, _ = await _finished_run(desk, fake_model, notes)
        outcome = fake_slack.messages[run.outcome_ts]
        assert "chatops_undo" in outcome.action_ids()

        delivery = await click(desk, "chatops_undo", str(run.id), message=outcome, user="U2")
        assert delivery.text == ""  # a button's ack carries nothing; the answer is a message
        [envelope] = [e for e in desk.socket.envelopes if e.type == "interactive"]
        assert envelope.ack == {"envelope_id": envelope.envelope_id}
        run = await undone(desk, run.id)
        assert run.status == RunStatus.rolled_back and run.undone_by == "U2"
        assert lines(notes) == [] and await desk.tickets() == []
        [answer] = ephemerals_to(desk, "U2")
        assert f"Undoing run #{run.id}" in answer.text
        desk.every_envelope_acked_once()


async def test_approve_clicked_runs_the_waiting_action(processes, fake_slack, fake_model, tmp_path):
    notes = tmp_path / "notes.txt"
    async with socket_desk(processes, fake_slack, tmp_path, config=config(notes), model=fake_model) as desk:
        fake_model.call("deploy", {"service": "api"}).answer("Deployed api.")
        ts = await ask(desk, "deploy api")
        buttons = await approval_message(desk, "C1", ts)
        [approval] = await approvals(desk)
        await run_in(desk, approval.run_id, RunStatus.waiting, reason="approval")
        assert lines(notes) == []

        delivery = await click(desk, "chatops_approve", str(approval.id), message=buttons)
        assert delivery.status == 200
        run = await desk.finished(approval.run_id)
        assert run.status == RunStatus.succeeded
        assert lines(notes) == ["deployed api"]
        [decided] = await approvals(desk)
        assert decided.status == ApprovalStatus.approved and decided.decided_by == "U1"
        desk.every_envelope_acked_once()


async def test_a_slash_commands_answer_is_cleaned_of_secrets(processes, fake_slack, tmp_path):
    """The ack's payload is the second door out to Slack (after the Web API): redacted too."""
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        delivery = await desk.send.command(ev.slash_command(f"pause {fake_slack.app_token}"))
        assert delivery.status == 200
        text, _ = ack_text(delivery)
        assert "There is no agent named" in text
        assert fake_slack.app_token not in delivery.text and "[redacted]" in text
