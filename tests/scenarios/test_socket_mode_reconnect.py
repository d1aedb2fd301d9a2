"""Slack moves a Socket Mode app between connections: it asks (`disconnect`, reason
"refresh_requested" or "warning"), it closes the socket, or the connection just drops. Each
time chatops opens a new URL through apps.connections.open and carries on: a run in flight
finishes and reports, an ack that was on its way arrives, an event Slack delivers again
after a lost ack is still one request, and new envelopes are taken on the new connection."""

from __future__ import annotations

import copy

import pytest
from fakes import slack_events as ev
from fakes import wait_until

from scenarios.control_support import paused_scopes, reply_saying
from scenarios.faults_support import quoted
from scenarios.socket_support import SocketDesk, socket_desk
from storage.models import RunStatus


def _gated(gate, log) -> str:
    """One action that logs its start, runs while `gate` exists, and logs its end."""
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["long_job", "ticket_create"]

[[actions]]
name = "long_job"
description = "A job that takes a while"
kind = "command"
run = '''
echo start >> {quoted(log)}
while [ -e {quoted(gate)} ]; do sleep 0.05; done
echo end >> {quoted(log)}
'''
undo = "true"
timeout = 60
"""


async def _moved(desk: SocketDesk, old, count: int) -> None:
    """chatops left connection `old` and opened connection `count`, through a new URL."""
    new = await desk.connected(count)
    assert new.number == count and new is not old
    await wait_until(lambda: not old.open, message="the old connection to be closed")
    assert len(desk.slack.calls_to("apps.connections.open", ok=True)) == count
    assert len(desk.socket.tickets) == count and desk.socket.refused == []


@pytest.mark.parametrize("reason", ["refresh_requested", "warning"])
async def test_a_disconnect_in_the_middle_of_a_run_loses_nothing(processes, fake_slack, tmp_path, reason):
    gate, log = tmp_path / "gate", tmp_path / "job.log"
    gate.touch()
    async with socket_desk(processes, fake_slack, tmp_path, config=_gated(gate, log)) as desk:
        mention = ev.app_mention("<@UBOT> long_job")
        ts = mention["event"]["ts"]
        assert (await desk.send.event(mention)).status == 200
        await wait_until(lambda: log.exists() and "start" in log.read_text(), message="the job to start")

        old = await desk.socket.disconnect(reason)
        await _moved(desk, old, 2)
        assert old.closed_by == "app"

        gate.unlink()  # the job ends; the run reports over the Web API, whatever the socket did
        run = await desk.only_run()
        assert run.status == RunStatus.succeeded and log.read_text().split() == ["start", "end"]
        assert [m.ts for m in fake_slack.thread("C1", ts)] == [run.status_ts, run.outcome_ts]

        # And the new connection takes deliveries.
        second = ev.app_mention("<@UBOT> create a ticket for after the move")
        envelope = await desk.socket.event(second)
        await desk.acked(envelope)
        assert envelope.connection == 2 and envelope.ack_connections == [2]
        later = await wait_until(lambda: _thread_of(desk, second["event"]["ts"]))
        assert (await desk.finished(later.id)).status == RunStatus.succeeded
        desk.every_envelope_acked_once()


async def test_an_ack_on_its_way_during_a_move_still_arrives(processes, fake_slack, tmp_path):
    """The listener is still at work (Slack is slow to take its reply) when Slack asks the app
    to move: the ack, sent afterwards, arrives on the new connection."""
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        fake_slack.hold("chat.postMessage")
        pause = ev.app_mention("<@UBOT> pause all agents")
        envelope = await desk.socket.event(pause)
        await wait_until(lambda: fake_slack.calls_to("chat.postMessage"), message="the reply to be sent")
        assert envelope.ack is None  # the listener answers in the thread before it acks

        old = await desk.socket.disconnect("refresh_requested")
        await _moved(desk, old, 2)
        fake_slack.release("chat.postMessage")
        await desk.acked(envelope)
        assert envelope.ack_connections == [2]
        assert await paused_scopes(desk) == {"*"}
        await reply_saying(desk, "C1", pause["event"]["ts"], "All agents are paused by <@U1>")
        desk.every_envelope_acked_once()


async def test_a_connection_slack_closes_is_opened_again(processes, fake_slack, tmp_path):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        old = await desk.socket.close()
        await _moved(desk, old, 2)
        assert old.closed_by == "server"

        mention = ev.app_mention("<@UBOT> create a ticket for the reopened socket")
        assert (await desk.send.event(mention)).status == 200
        run = await desk.only_run()
        assert run.status == RunStatus.succeeded and len(await desk.tickets()) == 1
        desk.every_envelope_acked_once()


async def test_a_dropped_connection_is_opened_again_and_a_redelivered_event_is_one_request(
    processes, fake_slack, tmp_path
):
    """The connection drops while a control is being answered. Slack, which had no ack in
    time, delivers the event again (retry_attempt 1) on the new connection: both envelopes are
    acked, and the pause is neither done nor answered twice."""
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        fake_slack.hold("chat.postMessage")
        pause = ev.app_mention("<@UBOT> pause all agents")
        first = await desk.socket.event(pause)
        await wait_until(lambda: fake_slack.calls_to("chat.postMessage"), message="the reply to be sent")

        old = await desk.socket.drop()
        await _moved(desk, old, 2)
        assert old.closed_by == "drop" and first.ack is None
        fake_slack.release("chat.postMessage")
        await desk.acked(first)
        again = await desk.socket.event(copy.deepcopy(pause), retry_attempt=1, retry_reason="timeout")
        await desk.acked(again)

        assert await paused_scopes(desk) == {"*"}
        assert len(await desk.deliveries()) == 1
        await reply_saying(desk, "C1", pause["event"]["ts"], "All agents are paused by <@U1>")
        assert len(fake_slack.calls_to("chat.postMessage")) == 1
        desk.every_envelope_acked_once()


async def _thread_of(desk: SocketDesk, ts: str):
    return next((r for r in await desk.runs() if r.thread_ts == ts), None)
