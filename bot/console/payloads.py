"""Slack-shaped deliveries the console makes, as Slack would send them: an Events API
envelope for a message (and for a mention, the `app_mention` Slack sends too), a slash
command, and a button press (`block_actions`); and what a slash command's ack says."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.console.workspace import BOT_USER, DM, OTHER_TEAM, STRANGER, TEAM, ConsoleMessage

APP = "ACONSOLE"
_triggers = itertools.count(1)


def _team_of(user: str) -> str:
    return OTHER_TEAM if user == STRANGER else TEAM


def message_events(m: ConsoleMessage) -> list[dict[str, Any]]:
    """The `message` event of a person's message, and its `app_mention` when it mentions the bot
    in a channel (Slack delivers both; intake makes one request of them)."""
    event: dict[str, Any] = {
        "type": "message",
        "user": m.user,
        "text": m.text,
        "ts": m.ts,
        "channel": m.channel,
        "event_ts": m.ts,
        "team": TEAM,
        "channel_type": "im" if m.channel == DM else "channel",
    }
    if m.user == STRANGER:
        event["user_team"] = OTHER_TEAM
    if m.thread_ts:
        event["thread_ts"] = m.thread_ts
    events = [event]
    if f"<@{BOT_USER}>" in m.text and m.channel != DM:
        mention = {k: v for k, v in event.items() if k != "channel_type"}
        events.append({**mention, "type": "app_mention"})
    return [_envelope(e) for e in events]


def _envelope(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": "console",
        "team_id": TEAM,
        "api_app_id": APP,
        "type": "event_callback",
        "event": event,
        "event_id": f"EvConsole{uuid.uuid4().hex}",
        "event_time": 0,
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


def slash_command(*, channel: str, user: str, text: str) -> dict[str, Any]:
    trigger = f"{next(_triggers)}.{uuid.uuid4().int % 10**9}.{uuid.uuid4().hex[:19]}"  # Slack's shape
    return {
        "token": "console",
        "team_id": TEAM,
        "channel_id": channel,
        "user_id": user,
        "command": "/agent",
        "text": text,
        "trigger_id": trigger,
        "response_url": "http://127.0.0.1:9/",
        "api_app_id": APP,
    }


def button_press(*, user: str, message: ConsoleMessage, button: dict[str, Any]) -> dict[str, Any]:
    """The `block_actions` of a press; an ephemeral message comes with no `message` (as in Slack)."""
    container: dict[str, Any] = {"type": "message", "message_ts": message.ts, "channel_id": message.channel}
    body: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "team_id": _team_of(user)},
        "api_app_id": APP,
        "team": {"id": TEAM},
        "container": container,
        "channel": {"id": message.channel},
        "trigger_id": f"{next(_triggers)}.{uuid.uuid4().hex[:12]}",
        "actions": [
            {
                "action_id": button["action_id"],
                "block_id": "console",
                "value": button.get("value", ""),
                "type": button.get("type", "button"),
                "action_ts": message.ts,
            }
        ],
    }
    if message.visible_to is not None:
        container["is_ephemeral"] = True
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
    else:
        body["message"] = {"ts": message.ts, "thread_ts": message.thread_ts, "text": message.text}
    return body


@dataclass
class Answer:
    """What a slash command's ack says, and who sees it."""

    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    public: bool = False
    """`response_type: in_channel`: everyone in the channel sees it (with the command)."""


def ack_answer(body: str) -> Answer:
    if not body:
        return Answer()
    try:
        data = json.loads(body)
    except ValueError:
        return Answer(text=body)
    if not isinstance(data, dict):
        return Answer()
    return Answer(
        text=str(data.get("text") or ""),
        blocks=list(data.get("blocks") or []),
        public=data.get("response_type") == "in_channel",
    )
