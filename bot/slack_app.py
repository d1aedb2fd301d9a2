"""The bolt AsyncApp: every Slack delivery enters here (HTTP, Socket Mode, or the console).

`process_before_response=True`, so the HTTP answer (the ack) goes out only after
the listener has stored what it must: requests are persisted (and commands
performed) before the ack, and an exception while storing answers 500 so that
Slack delivers again. Listeners only store, route and control; the model and
actions run on workers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger import get_bolt_logger
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from agents.actions.registry import Registry
from agents.redaction import Redactor
from bot import agent_view
from bot.commands import Command, near_miss, parse
from bot.controls import Controls, Reply
from bot.feedback import Votes
from bot.intake import Incoming, Intake, command_ts
from bot.places import Scope, Where
from bot.redaction import RedactingApp

log = logging.getLogger(__name__)

HUMAN_SUBTYPES = {None, "thread_broadcast", "file_share"}
HOME_HINT = (
    "Your own runs and approvals. `/agent status` in a channel shows that channel's; "
    "`pause all agents` is the emergency stop."
)
BUTTON_VERBS = {
    "chatops_undo": "undo",
    "chatops_approve": "approve",
    "chatops_deny": "deny",
    "chatops_pause": "pause",
}


def build_app(
    intake: Intake,
    controls: Controls,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    authorize: Any = None,
    redactor: Redactor | None = None,
    oauth_settings: Any = None,
    listeners: Callable[[AsyncApp], None] | None = None,
) -> AsyncApp:
    """`oauth_settings` (bot.oauth): installed in many workspaces, each request authorized by
    its workspace's installation; `listeners`: more listeners, registered before the catch-alls."""
    _quiet_the_token_warning()
    app = RedactingApp(
        client=client,
        signing_secret=signing_secret or "socket-mode-has-no-signing-secret",
        authorize=authorize,
        oauth_settings=oauth_settings,
        process_before_response=True,
        request_verification_enabled=signing_secret is not None,
        raise_error_for_unhandled_request=False,
    )
    if redactor is not None:
        app.redactor = redactor

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        await _take(intake, controls, body, event, "mention", context.bot_user_id)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        await _take(intake, controls, body, event, "message", context.bot_user_id)

    @app.event("app_home_opened")
    async def on_home(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        """The Home tab: agents, their state, and the user's own runs and approvals."""
        team_id = context.team_id or body.get("team_id") or ""
        surface = controls.surfaces.for_team(team_id)
        if event.get("tab") != "home" or not hasattr(surface, "publish_home"):
            return
        text = await controls.status(Scope.own_runs(team_id, event["user"]))
        view = {
            "type": "home",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "chatops"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": HOME_HINT}]},
            ],
        }
        await surface.publish_home(user=event["user"], view=view)

    @app.command("/agent")
    async def on_agent(ack: Any, command: dict[str, Any], context: Any) -> None:
        text = (command.get("text") or "").strip()
        if not text:
            await ack("Tell me what to do: `/agent create a ticket for the login bug`, or `/agent help`.")
            return
        team_id = context.team_id or command.get("team_id") or ""
        user_id = command["user_id"]
        trigger = f"command:{command['trigger_id']}" if command.get("trigger_id") else None
        where = Where(team_id, command["channel_id"], None)
        control = parse(text, slash=True)
        if control is not None:
            await _answer_slash(ack, await _control(controls, control, user_id, where, trigger))
            return
        meant = near_miss(text, agents=[a.name for a in controls.config.agents])
        if meant is not None and await controls.authority.not_a_member(user_id, team_id=team_id) is None:
            await _answer_slash(ack, await controls.did_you_mean(meant, user_id=user_id, where=where))
            return
        m = Incoming(
            team_id=team_id,
            channel_id=command["channel_id"],
            user_id=user_id,
            text=text,
            ts=command_ts(command.get("trigger_id") or ""),
            thread_ts=None,
            channel_type=None,
            via="command",
            delivery=command_ts(command["trigger_id"]) if command.get("trigger_id") else None,
        )
        routed = await intake.route(m, context.bot_user_id)
        assert routed is not None  # commands are always requests
        accepted = await intake.accept(m, agent=routed[0], kind=routed[1])
        if accepted is None:
            await ack("Already on it.")
        else:
            await ack(f"Run #{accepted.run_id} for *{accepted.agent}*: I'll report in the thread.")

    @app.action(re.compile("^chatops_(undo|approve|deny|pause|command)$"))
    async def on_button(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
        """Undo, Approve, Deny and Pause buttons, and the "did you mean" button: the same
        controls as the chat commands, acting only on what belongs to the clicked message."""
        await ack()
        await _button(controls, body, action, context)

    votes = Votes(controls.db, owner=controls.surfaces.owner)

    @app.action("chatops_feedback")
    async def on_feedback(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
        """A Good or Bad vote under an outcome: counted only from the run's own message."""
        await ack()
        user_id = (body.get("user") or {}).get("id") or ""
        where = _clicked(body, context)
        reply = await votes.vote(user_id, str(action.get("value") or ""), where=where)
        await controls.surfaces.for_team(where.team_id).post_ephemeral(
            channel=where.channel_id, user=user_id, text=reply.text, thread_ts=where.thread_ts
        )

    registry = Registry(controls.config)
    contexts = agent_view.ThreadContexts(controls.db)
    assistant = AsyncAssistant(thread_context_store=contexts)

    @assistant.thread_started
    async def on_assistant_thread(payload: dict[str, Any], set_suggested_prompts: Any, context: Any) -> None:
        """A person opened a thread with the app (its assistant container): keep where they are,
        and suggest what to ask, from what the default agent can do for them."""
        found = agent_view.thread_context(payload)
        if found is None:
            return
        channel, thread_ts, where = found
        user_id = str((payload.get("assistant_thread") or {}).get("user_id") or "")
        await contexts.save(channel_id=channel, thread_ts=thread_ts, context=where)
        role = await controls.role_of(user_id, team_id=context.team_id or "") if user_id else "customer"
        prompts = agent_view.suggested_prompts(controls.config, registry, customer=role != "member")
        if not prompts:
            return
        try:
            await set_suggested_prompts(prompts=prompts, title=agent_view.prompts_title(controls.config))
        except Exception as e:  # broad on purpose: prompts are a suggestion; Slack must not retry
            log.warning("suggested prompts for %s/%s failed: %s", channel, thread_ts, e)

    app.assistant(assistant)

    if listeners is not None:
        listeners(app)

    @app.event(re.compile(".*"))
    async def on_other_event() -> None:
        """Acknowledge every other event so Slack does not retry it (a 404 would)."""

    @app.action(re.compile(".*"))
    async def on_other_action(ack: Any) -> None:
        await ack()

    return app


async def _control(
    controls: Controls, command: Command, user_id: str, where: Where, trigger: str | None
) -> Reply:
    """A slash control: authorized, never replayed; `/agent undo` alone offers a choice."""
    if command.verb == "help":
        return await controls.run_command(command, user_id=user_id, where=where)
    refusal = await controls.authority.refusal(user_id, team_id=where.team_id, verb=command.verb)
    if refusal:
        return await controls.authority.refused(user_id, command.verb, refusal, team_id=where.team_id)
    replayed = await controls.authority.first_time(user_id, command.verb, trigger, team_id=where.team_id)
    if replayed is not None:
        return replayed
    if command.verb == "undo" and command.target is None:
        return await controls.undo_choices(where)
    return await controls.run_command(command, user_id=user_id, where=where)


async def _answer_slash(ack: Any, reply: Reply) -> None:
    await ack(
        text=reply.text,
        blocks=reply.blocks,
        response_type="in_channel" if reply.public and not reply.private else "ephemeral",
    )


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
    where = Where(m.team_id, m.channel_id, m.thread_ts if m.thread_ts != m.ts else None)
    command = parse(m.text)
    meant = None if command else near_miss(m.text, agents=[a.name for a in controls.config.agents])
    if meant is not None and await controls.authority.not_a_member(
        m.user_id, team_id=m.team_id, user_team=m.user_team
    ):
        meant = None  # a customer's words are always a request: they cannot control agents
    if command is None and meant is None:
        await intake.accept(m, agent=routed[0], kind=routed[1])
        return
    if not await intake.first_delivery(m):
        return
    if meant is not None:
        reply = await controls.did_you_mean(meant, user_id=m.user_id, where=where)
    else:
        assert command is not None
        refusal = await controls.authority.refusal(
            m.user_id, team_id=m.team_id, user_team=m.user_team, verb=command.verb
        )
        if refusal:
            reply = await controls.authority.refused(m.user_id, command.verb, refusal, team_id=m.team_id)
        else:
            reply = await controls.run_command(command, user_id=m.user_id, where=where)
    surface = controls.surfaces.for_team(m.team_id)
    if reply.private:
        await surface.post_ephemeral(
            channel=m.channel_id, user=m.user_id, text=reply.text, thread_ts=m.thread_ts, blocks=reply.blocks
        )
    else:
        await surface.post(channel=m.channel_id, text=reply.text, thread_ts=m.thread_ts or m.ts)


def _clicked(body: dict[str, Any], context: Any) -> Where:
    """Where a button was clicked: the message (and its thread) in its workspace's channel."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    return Where(
        context.team_id or (body.get("team") or {}).get("id") or "",
        (body.get("channel") or {}).get("id") or container.get("channel_id") or "",
        message.get("thread_ts") or container.get("thread_ts"),
        message_ts=container.get("message_ts") or message.get("ts"),
        ephemeral=bool(container.get("is_ephemeral")),
    )


async def _button(controls: Controls, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    user = body.get("user") or {}
    user_id = user.get("id") or ""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or container.get("thread_ts")
    team_id = context.team_id or (body.get("team") or {}).get("id") or ""
    where = Where(
        team_id,
        channel,
        thread_ts,
        message_ts=container.get("message_ts") or message.get("ts"),
        ephemeral=bool(container.get("is_ephemeral")),
    )
    action_id, value = action["action_id"], action.get("value")
    command = parse(str(value or ""), slash=True) if action_id == "chatops_command" else None
    verb = BUTTON_VERBS.get(action_id) or (command.verb if command else "help")
    refusal = await controls.authority.refusal(
        user_id, team_id=team_id, user_team=user.get("team_id"), verb=verb
    )
    if refusal:
        reply = await controls.authority.refused(user_id, verb, refusal, team_id=team_id)
    else:
        trigger = f"action:{body['trigger_id']}" if body.get("trigger_id") else None
        reply = await controls.authority.first_time(user_id, verb, trigger, team_id=team_id) or await _press(
            controls, action_id, value, command, user_id, where
        )
    surface = controls.surfaces.for_team(team_id)
    if reply.public and not reply.private:
        await surface.post(channel=channel, text=reply.text, thread_ts=thread_ts)
    else:
        await surface.post_ephemeral(
            channel=channel, user=user_id, text=reply.text, thread_ts=thread_ts, blocks=reply.blocks
        )


async def _press(
    controls: Controls, action_id: str, value: Any, command: Command | None, user_id: str, where: Where
) -> Reply:
    number = _int(value) or 0  # a button always names its run or approval
    if action_id == "chatops_undo":
        return await controls.undo(user_id, where=where, run_id=number)
    if action_id in ("chatops_approve", "chatops_deny"):
        return await controls.decide(user_id, number, approve=action_id == "chatops_approve", where=where)
    if action_id == "chatops_pause":
        command = Command("pause", str(value or "") or None)
    if command is None or command.verb == "help":
        return Reply("That button does nothing any more.", private=True)
    return await controls.run_command(command, user_id=user_id, where=where)


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
