"""What Socket Mode does at its door that HTTP does at POST /slack/events: it says what it is
doing in its log, refuses to start with a token that cannot open a connection (naming the
variable), and drops a payload of a shape Slack never sends (acked, so Slack does not send it
again) instead of crashing a listener on it."""

from __future__ import annotations

import json

import pytest
from fakes import slack_events as ev
from fakes import wait_until
from fakes.socket_mode import FakeSocketMode
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from scenarios.faults_support import sqlite_url
from scenarios.socket_support import socket_desk, socket_environment
from storage.models import RunStatus


def _log_lines(proc) -> list[dict]:
    lines = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_socket_mode_logs_what_it_does_as_serve_does(processes, fake_slack, tmp_path):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        mention = ev.app_mention("<@UBOT> create a ticket for the log")
        assert (await desk.send.event(mention)).status == 200
        await desk.only_run()
        proc = desk.proc
    messages = [line["message"] for line in _log_lines(proc)]
    assert any("connected to Slack in Socket Mode" in m for m in messages), messages
    assert not any(fake_slack.app_token in m for m in messages)


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("xoxb-faults", "not an app-level token"),  # the bot token pasted twice
        ("xapp-1-A1-2222-revoked", "Slack refused it (invalid_auth)"),
    ],
)
async def test_a_token_that_cannot_open_a_connection_stops_chatops_run_with_a_reason(
    processes, fake_slack, tmp_path, token, why
):
    env = socket_environment(fake_slack, sqlite_url(tmp_path / "chatops.db"))
    env["SLACK_APP_TOKEN"] = token
    with FakeSocketMode(fake_slack) as socket:
        proc = processes.start("run", env=env, name="run")
        await wait_until(
            lambda: not proc.alive, 30, message=lambda: f"chatops run to exit:\n{proc.log_tail()}"
        )
        assert proc.proc.returncode == 2, proc.log_tail()
        out = proc.log_path.read_text()
        assert "SLACK_APP_TOKEN" in out and why in out, out
        assert token not in out  # a secret, wrong or not
        assert socket.connections == []


async def test_a_payload_of_a_shape_slack_never_sends_is_acked_and_dropped(processes, fake_slack, tmp_path):
    async with socket_desk(processes, fake_slack, tmp_path) as desk:
        broken = [
            ("events_api", {**ev.app_mention("<@UBOT> x"), "event": "not an object"}),
            ("slash_commands", {**ev.slash_command("status"), "channel_id": ""}),
            ("interactive", {**ev.block_action("chatops_undo", "1", message_ts=ev.new_ts()), "actions": "x"}),
        ]
        for kind, payload in broken:
            envelope = await desk.socket.send(kind, payload)
            assert await desk.acked(envelope) == {"envelope_id": envelope.envelope_id}, kind
        assert await desk.requests() == [] and await desk.deliveries() == []
        assert fake_slack.calls_to("chat.postMessage") == fake_slack.calls_to("chat.postEphemeral") == []

        # The process is fine and takes the next good delivery.
        assert (
            await desk.send.event(ev.app_mention("<@UBOT> create a ticket for the next one"))
        ).status == 200
        run = await desk.only_run()
        assert run.status == RunStatus.succeeded
        desk.every_envelope_acked_once()
        log = desk.proc.log_path.read_text()
        assert "Traceback" not in log and "unexpected shape" in log


async def test_the_fake_opens_connections_for_the_app_token_only(fake_slack):
    """What the scenarios rely on: apps.connections.open refuses a bot token, as Slack does,
    and hands the app token a one-time ws:// URL of the fake Socket Mode server."""
    with FakeSocketMode(fake_slack) as socket:
        bot = AsyncWebClient(token="xoxb-faults", base_url=fake_slack.url)
        with pytest.raises(SlackApiError) as refused:
            await bot.apps_connections_open(app_token="xoxb-faults")
        assert refused.value.response["error"] == "not_allowed_token_type"
        opened = await bot.apps_connections_open(app_token=fake_slack.app_token)
        assert opened["url"].startswith("ws://127.0.0.1:") and socket.tickets[0] in opened["url"]
