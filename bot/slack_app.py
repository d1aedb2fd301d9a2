"""The bolt AsyncApp: every Slack delivery enters here (HTTP, Socket Mode, or the console).

`process_before_response=True`, so the HTTP answer (the ack) goes out only after
the listener has stored what it must: requests are persisted before the ack, and
an exception while storing answers 500 so that Slack delivers again.
Listeners only store and route; the model and actions run on workers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.intake import Incoming, Intake

log = logging.getLogger(__name__)

HUMAN_SUBTYPES = {None, "thread_broadcast", "file_share"}


def build_app(
    intake: Intake,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    authorize: Any = None,
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "socket-mode-has-no-signing-secret",
        authorize=authorize,
        process_before_response=True,
        request_verification_enabled=signing_secret is not None,
        raise_error_for_unhandled_request=False,
    )

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        await _take(intake, body, event, "mention", context.bot_user_id)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        await _take(intake, body, event, "message", context.bot_user_id)

    @app.command("/agent")
    async def on_agent(ack: Any, command: dict[str, Any], context: Any) -> None:
        text = (command.get("text") or "").strip()
        if not text:
            await ack("Tell me what to do: `/agent create a ticket for the login bug`.")
            return
        m = Incoming(
            team_id=command.get("team_id") or "",
            channel_id=command["channel_id"],
            user_id=command["user_id"],
            text=text,
            ts=f"command:{command.get('trigger_id') or ''}",
            thread_ts=None,
            channel_type=None,
            via="command",
            delivery=f"command:{command['trigger_id']}" if command.get("trigger_id") else None,
        )
        routed = await intake.route(m, context.bot_user_id)
        assert routed is not None  # commands are always requests
        accepted = await intake.accept(m, agent=routed[0], kind=routed[1])
        if accepted is None:
            await ack("Already on it.")
        else:
            await ack(f"Run #{accepted.run_id} for *{accepted.agent}*: I'll report in the thread.")

    @app.event(re.compile(".*"))
    async def on_other_event() -> None:
        """Acknowledge every other event so Slack does not retry it (a 404 would)."""

    @app.action(re.compile(".*"))
    async def on_other_action(ack: Any) -> None:
        await ack()

    return app


async def _take(
    intake: Intake, body: dict[str, Any], event: dict[str, Any], via: str, bot_user_id: str | None
) -> None:
    m = incoming(body, event, via)
    if m is None:
        return
    routed = await intake.route(m, bot_user_id)
    if routed is not None:
        await intake.accept(m, agent=routed[0], kind=routed[1])


def incoming(body: dict[str, Any], event: dict[str, Any], via: str) -> Incoming | None:
    """A human message from an event, or None (bots, edits, deletions, joins...)."""
    if event.get("bot_id") or event.get("subtype") not in HUMAN_SUBTYPES:
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    authorizations = body.get("authorizations") or [{}]
    team_id = authorizations[0].get("team_id") or body.get("team_id") or event.get("team") or ""
    return Incoming(
        team_id=team_id,
        channel_id=channel,
        user_id=user,
        text=str(event.get("text") or ""),
        ts=ts,
        thread_ts=event.get("thread_ts"),
        channel_type=event.get("channel_type") or ("im" if channel.startswith("D") else None),
        via="mention" if via == "mention" else "message",
        delivery=body.get("event_id"),
    )


def console_authorize(bot_user_id: str, team_id: str) -> Any:
    """Authorization for the console workspace: no Slack, a fixed bot identity."""

    async def authorize(**_: Any) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=None,
            team_id=team_id,
            bot_token="xoxb-console",
            bot_user_id=bot_user_id,
            bot_id="BCONSOLE",
        )

    return authorize
