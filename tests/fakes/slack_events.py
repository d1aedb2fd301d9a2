"""Slack's side of the Request URL: payloads shaped as Slack sends them, signed and POSTed.

Payload builders return what Slack would send (an Events API envelope, a slash command's
form fields, an interactivity payload); `SlackSender` signs and delivers them to
`/slack/events` like Slack does, retries and stale or forged signatures included.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier

from fakes.slack_api import BOT_USER_ID, TEAM_ID

APP_ID = "A1"
_event_ids = itertools.count(1)
_ts = itertools.count(1)


def new_ts() -> str:
    """A fresh message ts, distinct from the ones the fake Web API hands out."""
    n = next(_ts)
    return f"{1690000000 + n // 1_000_000}.{n % 1_000_000:06d}"


def new_event_id() -> str:
    return f"Ev{next(_event_ids):08d}"


# Events API -----------------------------------------------------------------------


def envelope(event: dict[str, Any], *, event_id: str | None = None, team_id: str = TEAM_ID) -> dict[str, Any]:
    """The event_callback wrapper Slack puts around every event."""
    event.setdefault("event_ts", event.get("ts") or new_ts())
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-message-{team_id}-{event.get('channel', 'C0')}",
    }


def _message(
    kind: str,
    text: str,
    *,
    user: str | None,
    channel: str,
    ts: str | None,
    thread_ts: str | None,
    channel_type: str | None,
    team_id: str,
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "text": text, "channel": channel, "ts": ts or new_ts()}
    if user is not None:
        event["user"] = user
        event["team"] = team_id
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if channel_type is not None:
        event["channel_type"] = channel_type
    return event


def app_mention(
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """`<@UBOT> ...` as an app_mention event (text should carry the mention, as Slack's does)."""
    event = _message(
        "app_mention",
        text,
        user=user,
        channel=channel,
        ts=ts,
        thread_ts=thread_ts,
        channel_type=None,
        team_id=team_id,
    )
    return envelope(event, event_id=event_id, team_id=team_id)


def channel_message(
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    event_id: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """A human's message event (message.channels); top level unless `thread_ts` is given."""
    event = _message(
        "message",
        text,
        user=user,
        channel=channel,
        ts=ts,
        thread_ts=thread_ts,
        channel_type=channel_type,
        team_id=team_id,
    )
    return envelope(event, event_id=event_id, team_id=team_id)


def thread_reply(text: str, *, thread_ts: str, **kwargs: Any) -> dict[str, Any]:
    """A human's reply in a thread (its own ts, the parent's thread_ts)."""
    return channel_message(text, thread_ts=thread_ts, **kwargs)


def dm(text: str, *, user: str = "U1", channel: str = "D1", **kwargs: Any) -> dict[str, Any]:
    """A direct message to the bot (message.im)."""
    return channel_message(text, user=user, channel=channel, channel_type="im", **kwargs)


def bot_message(
    text: str,
    *,
    bot_id: str = "B999",
    user: str | None = None,
    channel: str = "C1",
    subtype: str | None = "bot_message",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A message posted by a bot (another app's, or ours with bot_id=BBOT, user=UBOT, subtype=None)."""
    event = _message(
        "message",
        text,
        user=user,
        channel=channel,
        ts=ts,
        thread_ts=thread_ts,
        channel_type="channel",
        team_id=TEAM_ID,
    )
    event["bot_id"] = bot_id
    if subtype is not None:
        event["subtype"] = subtype
    return envelope(event, event_id=event_id)


def message_changed(
    *, channel: str, ts: str, new_text: str, user: str = "U1", old_text: str = "", event_id: str | None = None
) -> dict[str, Any]:
    """An edit of message `ts`: the edited message nested under `message`."""
    event = {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel,
        "channel_type": "channel",
        "ts": new_ts(),
        "message": {"type": "message", "user": user, "text": new_text, "ts": ts, "edited": {"user": user}},
        "previous_message": {"type": "message", "user": user, "text": old_text, "ts": ts},
    }
    return envelope(event, event_id=event_id)


def message_deleted(*, channel: str, ts: str, event_id: str | None = None) -> dict[str, Any]:
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": channel,
        "channel_type": "channel",
        "ts": new_ts(),
        "deleted_ts": ts,
        "previous_message": {"type": "message", "user": "U1", "text": "gone", "ts": ts},
    }
    return envelope(event, event_id=event_id)


def url_verification(challenge: str) -> dict[str, Any]:
    return {"token": "legacy-verification-token", "challenge": challenge, "type": "url_verification"}


# Slash commands and interactivity --------------------------------------------------


def slash_command(
    text: str,
    *,
    command: str = "/agent",
    user: str = "U1",
    channel: str = "C1",
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, str]:
    """The form fields of a slash command."""
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "team_domain": "team-one",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": f"https://hooks.slack.com/commands/{team_id}/1/x",
        # Shaped like Slack's (about 41 characters): "13345224609.738474920.8088930838d88f008e0"
        "trigger_id": trigger_id or f"{13345224609 + next(_event_ids)}.738474920.{uuid.uuid4().hex[:19]}",
    }


def block_action(
    action_id: str,
    value: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str,
    thread_ts: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """A button click on one of the bot's messages (block_actions)."""
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if thread_ts:
        container["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": f"{next(_event_ids)}.1.trigger",
        "team": {"id": team_id, "domain": "team-one"},
        "channel": {"id": channel, "name": "general"},
        "message": {"type": "message", "ts": message_ts, "thread_ts": thread_ts, "user": BOT_USER_ID},
        "response_url": f"https://hooks.slack.com/actions/{team_id}/1/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "run_outcome",
                "value": value,
                "type": "button",
                "action_ts": new_ts(),
                "text": {"type": "plain_text", "text": "Button"},
            }
        ],
    }


# Delivery ------------------------------------------------------------------------


@dataclass
class Delivery:
    """Our server's answer to one delivery."""

    status: int
    text: str
    headers: dict[str, str]
    elapsed: float
    """Seconds from sending to the full answer: what Slack's 3-second rule measures."""

    def json(self) -> Any:
        return json.loads(self.text)


class SlackSender:
    """Signs and POSTs to `url` like Slack does (X-Slack-Signature, X-Slack-Request-Timestamp)."""

    def __init__(self, url: str, signing_secret: str) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def event(self, body: dict[str, Any], *, retry_num: int | None = None, **kwargs: Any) -> Delivery:
        """An Events API delivery (JSON)."""
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.raw(json.dumps(body), content_type="application/json", headers=headers, **kwargs)

    async def command(self, fields: dict[str, str], **kwargs: Any) -> Delivery:
        """A slash command (application/x-www-form-urlencoded)."""
        return await self.raw(urlencode(fields), content_type="application/x-www-form-urlencoded", **kwargs)

    async def interaction(self, payload: dict[str, Any], **kwargs: Any) -> Delivery:
        """An interactivity payload (payload=<url-encoded JSON>)."""
        body = urlencode({"payload": json.dumps(payload)})
        return await self.raw(body, content_type="application/x-www-form-urlencoded", **kwargs)

    async def raw(
        self,
        body: str,
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        signature: str | None = None,
    ) -> Delivery:
        """POST `body` signed with `secret` (default: the right one) at `timestamp` (default: now)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        verifier = SignatureVerifier(secret or self.signing_secret)
        sig = signature or str(verifier.generate_signature(timestamp=ts, body=body))
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **(headers or {}),
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        start = time.monotonic()
        async with self._session.post(self.url, data=body.encode(), headers=all_headers) as response:
            text = await response.text()
            return Delivery(response.status, text, dict(response.headers), time.monotonic() - start)
