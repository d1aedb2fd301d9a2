"""`chatops run` in Socket Mode: a mention arrives as an envelope, is acked with its id, and the
run works and reports in the thread as it does over HTTP; one message is one run, however
often and through whichever events it arrives."""

from __future__ import annotations

import asyncio
import copy

from fakes import slack_events as ev
from fakes import wait_until

from scenarios.faults_support import SIGNING_SECRET
from scenarios.socket_support import socket_desk
from storage.models import RunStatus


async def test_chatops_run_opens_its_connection_with_the_app_token(processes, fake_slack, tmp_path):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        [opened] = fake_slack.calls_to("apps.connections.open")
        assert opened.status == 200 and opened.error is None  # the fake takes only the xapp- token
        [connection] = desk.socket.connections
        assert connection.ticket == desk.socket.tickets[0] and desk.socket.refused == []
    assert connection.closed_by == "app"  # SIGTERM closed it


async def test_with_a_signing_secret_set_too_chatops_run_still_takes_socket_mode(
    processes, fake_slack, tmp_path
):
    """An app moved from HTTP to Socket Mode keeps its signing secret in the environment: the
    envelopes, which carry no signature, are taken all the same."""
    async with socket_desk(processes, fake_slack, tmp_path, SLACK_SIGNING_SECRET=SIGNING_SECRET) as desk:
        assert desk.proc.env["SLACK_SIGNING_SECRET"] == SIGNING_SECRET
        assert (await desk.send.event(ev.app_mention("<@UBOT> create a ticket for the move"))).status == 200
        assert (await desk.only_run()).status == RunStatus.succeeded
        assert "Socket Mode" in desk.proc.log_path.read_text()


async def test_a_mention_is_acked_with_its_envelope_id_and_the_run_reports_in_its_thread(
    processes, fake_slack, tmp_path
):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        mention = ev.app_mention("<@UBOT> create a ticket for the login bug", user="U1", channel="C1")
        ts = mention["event"]["ts"]
        envelope = await desk.socket.event(mention)
        ack = await desk.acked(envelope)
        assert ack == {"envelope_id": envelope.envelope_id}  # an event's ack carries nothing else
        # Stored before the ack, as over HTTP.
        [request] = await desk.requests()
        assert (request.channel_id, request.ts, request.thread_ts, request.kind) == ("C1", ts, ts, "mention")
        assert request.text == "create a ticket for the login bug"

        run = await desk.only_run()
        assert run.status == RunStatus.succeeded and run.thread_ts == ts
        status, outcome = fake_slack.thread("C1", ts)
        assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
        assert "finished" in status.text and "created ticket #1" in status.text
        assert "offline planner" in outcome.text and "created ticket #1" in outcome.text
        assert "chatops_undo" in outcome.action_ids()
        await wait_until(lambda: fake_slack.reactions_on("C1", ts) == ["eyes", "white_check_mark"])
        [ticket] = await desk.tickets()
        assert (ticket.title, ticket.reporter, ticket.run_id) == ("the login bug", "U1", run.id)
        desk.every_envelope_acked_once()


async def test_a_dm_and_a_reply_in_the_thread_are_requests_too(processes, fake_slack, tmp_path):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        dm = ev.dm("create a ticket for the printer")
        assert (await desk.send.event(dm)).status == 200
        first = await desk.only_run()
        assert first.channel_id == "D1" and first.thread_ts == dm["event"]["ts"]

        reply = ev.thread_reply("close ticket 1", thread_ts=first.thread_ts, channel="D1", channel_type="im")
        assert (await desk.send.event(reply)).status == 200
        runs = await wait_until(lambda: _runs(desk, 2), message="a second run in the thread")
        second = await desk.finished(runs[1].id)
        assert second.thread_ts == first.thread_ts and second.status == RunStatus.succeeded
        [ticket] = await desk.tickets()
        assert ticket.status == "closed"
        desk.every_envelope_acked_once()


async def test_slack_retrying_an_envelope_makes_one_run(processes, fake_slack, tmp_path):
    """Slack redelivers an event it got no ack for in time: the same payload in a new envelope,
    with retry_attempt 1, 2, 3 (bolt passes them on as x-slack-retry-num)."""
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        mention = ev.app_mention("<@UBOT> create a ticket for the retried bug")
        ts = mention["event"]["ts"]
        for attempt in (0, 1, 2, 3):
            envelope = await desk.socket.event(
                copy.deepcopy(mention), retry_attempt=attempt, retry_reason="timeout"
            )
            await desk.acked(envelope)

        run = await desk.only_run()
        assert len(await desk.requests()) == 1
        assert [d.key for d in await desk.deliveries()] == [mention["event_id"]]
        assert len(await desk.tickets()) == 1
        await wait_until(lambda: len(fake_slack.thread("C1", ts)) == 2)
        assert [m.ts for m in fake_slack.thread("C1", ts)] == [run.status_ts, run.outcome_ts]
        assert len({e.envelope_id for e in desk.socket.envelopes}) == 4
        desk.every_envelope_acked_once()


async def test_a_mention_delivered_as_app_mention_and_as_message_makes_one_run(
    processes, fake_slack, tmp_path
):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        text = "<@UBOT> create a ticket for the double delivery"
        mention = ev.app_mention(text, channel="C1")
        ts = mention["event"]["ts"]
        message = ev.channel_message(text, channel="C1", ts=ts)
        # Both at once, and each retried once, as Slack may.
        sends = [
            desk.send.event(copy.deepcopy(body), retry_num=retry)
            for body in (message, mention)
            for retry in (None, 1)
        ]
        assert [d.status for d in await asyncio.gather(*sends)] == [200] * 4

        await desk.only_run()
        assert len(await desk.requests()) == 1
        assert len(await desk.deliveries()) == 2  # both deliveries were seen; one became a request
        assert len(await desk.tickets()) == 1
        await wait_until(lambda: len(fake_slack.thread("C1", ts)) == 2)
        assert fake_slack.reactions_on("C1", ts).count("eyes") == 1
        desk.every_envelope_acked_once()


async def _runs(desk, n):
    runs = await desk.runs()
    return runs if len(runs) >= n else None
