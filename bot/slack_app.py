"""The bolt AsyncApp: every Slack delivery enters here (HTTP, Socket Mode, or the console).

`process_before_response=True`, so the HTTP answer (the ack) goes out only after
the listener has stored what it must: requests are persisted (and commands
performed) before the ack, and an exception while storing answers 500 so that
Slack delivers again. Listeners only store, route and control; the model and
actions run on workers.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger import get_bolt_logger
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import Command, parse
from bot.controls import Controls, Where
from bot.intake import Incoming, Intake

log = logging.getLogger(__name__)

HUMAN_SUBTYPES = {None, "thread_broadcast", "file_share"}
PUBLIC_VERBS = {"pause", "resume", "summary"}  # announced in the channel, not only to the one who asked
HOME_HINT = "`/agent status` in any channel shows this too; `pause all agents` is the emergency stop."


def build_app(
    intake: Intake,
    controls: Controls,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    authorize: Any = None,
) -> AsyncApp:
    _quiet_the_token_warning()
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
        await _take(intake, controls, body, event, "mention", context.bot_user_id)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        await _take(intake, controls, body, event, "message", context.bot_user_id)

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any]) -> None:
        """The Home tab: agents, their state, runs in flight, approvals waiting."""
        if event.get("tab") != "home" or not hasattr(controls.surface, "publish_home"):
            return
        text = await controls.status()
        view = {
            "type": "home",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "chatops"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": HOME_HINT}]},
            ],
        }
        await controls.surface.publish_home(user=event["user"], view=view)

    @app.command("/agent")
    async def on_agent(ack: Any, command: dict[str, Any], context: Any) -> None:
        text = (command.get("text") or "").strip()
        if not text:
            await ack("Tell me what to do: `/agent create a ticket for the login bug`, or `/agent help`.")
            return
        team_id = context.team_id or command.get("team_id") or ""
        control = parse(text, slash=True)
        if control is not None:
            if control.verb != "help":
                refusal = await controls.refusal(command["user_id"], team_id=team_id)
                if refusal:
                    await ack(await controls.refused(command["user_id"], control.verb, refusal))
                    return
            where = Where(team_id, command["channel_id"], None)
            reply = await controls.run_command(control, user_id=command["user_id"], where=where)
            public = control.verb in PUBLIC_VERBS and "already" not in reply
            await ack(text=reply, response_type="in_channel" if public else "ephemeral")
            return
        m = Incoming(
            team_id=team_id,
            channel_id=command["channel_id"],
            user_id=command["user_id"],
            text=text,
            ts=_command_key(command.get("trigger_id") or ""),
            thread_ts=None,
            channel_type=None,
            via="command",
            delivery=_command_key(command["trigger_id"]) if command.get("trigger_id") else None,
        )
        routed = await intake.route(m, context.bot_user_id)
        assert routed is not None  # commands are always requests
        accepted = await intake.accept(m, agent=routed[0], kind=routed[1])
        if accepted is None:
            await ack("Already on it.")
        else:
            await ack(f"Run #{accepted.run_id} for *{accepted.agent}*: I'll report in the thread.")

    buttons: dict[str, tuple[str, Button, bool]] = {
        "chatops_undo": (
            "undo",
            lambda user, where, value: controls.undo(user, where=where, run_id=_int(value)),
            False,
        ),
        "chatops_approve": (
            "approve",
            lambda user, where, value: controls.decide(user, _int(value) or 0, approve=True),
            False,
        ),
        "chatops_deny": (
            "deny",
            lambda user, where, value: controls.decide(user, _int(value) or 0, approve=False),
            False,
        ),
        "chatops_pause": (
            "pause",
            lambda user, where, value: controls.run_command(
                Command("pause", str(value or "")), user_id=user, where=where
            ),
            True,  # a pause is announced in the thread, not only to the one who clicked
        ),
    }

    @app.action(re.compile("^chatops_(undo|approve|deny|pause)$"))
    async def on_button(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
        """Undo, Approve, Deny and Pause buttons: the same controls as the chat commands."""
        await ack()
        verb, act, public = buttons[action["action_id"]]
        await _button(controls, body, context, verb, act, action.get("value"), public=public)

    @app.event(re.compile(".*"))
    async def on_other_event() -> None:
        """Acknowledge every other event so Slack does not retry it (a 404 would)."""

    @app.action(re.compile(".*"))
    async def on_other_action(ack: Any) -> None:
        await ack()

    return app


class _SameToken(logging.Filter):
    """Drops bolt's start-up warning that `client` wins over `token`.

    AsyncApp reads SLACK_BOT_TOKEN from the environment by itself, and warns that the
    `client` we pass prevails; that client was made from the very same variable (with our
    base_url and timeout), so the warning tells a user nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def _quiet_the_token_warning() -> None:
    bolt_log = get_bolt_logger(AsyncApp)
    if not any(isinstance(f, _SameToken) for f in bolt_log.filters):
        bolt_log.addFilter(_SameToken())


async def _take(
    intake: Intake,
    controls: Controls,
    body: dict[str, Any],
    event: dict[str, Any],
    via: str,
    bot_user_id: str | None,
) -> None:
    m = incoming(body, event, via)
    if m is None:
        return
    routed = await intake.route(m, bot_user_id)
    if routed is None:
        return
    command = parse(m.text)
    if command is None:
        await intake.accept(m, agent=routed[0], kind=routed[1])
        return
    if not await intake.first_delivery(m):
        return
    thread_ts = m.thread_ts or m.ts
    refusal = await controls.refusal(m.user_id, team_id=m.team_id, user_team=m.user_team)
    if refusal:
        text = await controls.refused(m.user_id, command.verb, refusal)
        await controls.surface.post_ephemeral(
            channel=m.channel_id, user=m.user_id, text=text, thread_ts=thread_ts
        )
        return
    where = Where(m.team_id, m.channel_id, m.thread_ts if m.thread_ts != m.ts else None)
    reply = await controls.run_command(command, user_id=m.user_id, where=where)
    await controls.surface.post(channel=m.channel_id, text=reply, thread_ts=thread_ts)


Button = Callable[[str, Where, Any], Awaitable[str]]


async def _button(
    controls: Controls,
    body: dict[str, Any],
    context: Any,
    verb: str,
    act: Button,
    value: Any,
    *,
    public: bool = False,
) -> None:
    user = body.get("user") or {}
    user_id = user.get("id") or ""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or container.get("thread_ts")
    team_id = context.team_id or (body.get("team") or {}).get("id") or ""
    refusal = await controls.refusal(user_id, team_id=team_id, user_team=user.get("team_id"))
    if refusal:
        text = await controls.refused(user_id, verb, refusal)
    else:
        text = await act(user_id, Where(team_id, channel, thread_ts), value)
    if public and not refusal:
        await controls.surface.post(channel=channel, text=text, thread_ts=thread_ts)
    else:
        await controls.surface.post_ephemeral(channel=channel, user=user_id, text=text, thread_ts=thread_ts)


def incoming(body: dict[str, Any], event: dict[str, Any], via: str) -> Incoming | None:
    """A human message from an event, or None (bots, edits, deletions, joins...)."""
    if event.get("bot_id") or event.get("subtype") not in HUMAN_SUBTYPES:
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    authorizations = body.get("authorizations") or [{}]
    team_id = authorizations[0].get("team_id") or body.get("team_id") or event.get("team") or ""
    user_team = event.get("user_team")
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
        user_team=user_team if isinstance(user_team, str) and user_team.startswith("T") else None,
    )


def _command_key(trigger_id: str) -> str:
    """A command's stand-in for a message ts, and its delivery key.

    Slack's trigger ids run to 60 characters and more (the console's to 40), past the 32 of
    a request's ts column: hashed, every one fits and stays distinct.
    """
    return "command:" + hashlib.sha256(trigger_id.encode()).hexdigest()[:24]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


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
