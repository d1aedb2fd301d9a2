"""What Socket Mode does at its door that HTTP does at POST /slack/events: it says what it is
doing in its log, refuses to start with a token that cannot open a connection (naming the
variable), and drops a payload of a shape Slack never sends (acked, so Slack does not send it
again) instead of crashing a listener on it."""

from __future__ import annotations

import json

from fakes import slack_events as ev

from scenarios.socket_support import socket_desk


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
