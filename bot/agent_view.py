"""The app's DM as Slack's assistant container: a new thread there offers suggested prompts
drawn from the default agent's actions, and the channel the person is viewing is kept per
thread, for the requests made in it (the model is told, agents.conversation).

Slack sends `assistant_thread_started` when a person opens a thread with the app and
`assistant_thread_context_changed` when they move to another channel; bolt's Assistant
middleware takes both, and keeps the context through the store below. Messages in the thread
are ordinary DMs to the bot (intake).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.async_store import AsyncAssistantThreadContextStore

from agents.actions.handoff import PREFIX
from agents.actions.registry import Registry
from agents.config import Config
from storage import assistant_threads
from storage.engine import Database

log = logging.getLogger(__name__)

MAX_PROMPTS = 4
"""Slack shows at most four suggested prompts (agent_view's limit; assistant_view's too in practice)."""
TITLE_LIMIT = 75


class ThreadContexts(AsyncAssistantThreadContextStore):
    """bolt's thread context store, kept in chatops' database: bolt's default keeps it in the
    metadata of the bot's first reply in the thread and reads it back with conversations.replies,
    which costs Slack calls and needs a reply to exist; any process here can read this one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        async with self.db.write() as session:
            await assistant_threads.remember_context(
                session=session, channel_id=channel_id, thread_ts=thread_ts, context=dict(context)
            )

    async def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        async with self.db.read() as session:
            context = await assistant_threads.context_of(
                session=session, channel_id=channel_id, thread_ts=thread_ts
            )
        return AssistantThreadContext(context) if context and context.get("channel_id") else None


def suggested_prompts(config: Config, registry: Registry, *, customer: bool) -> list[dict[str, str]]:
    """Prompts for a new thread, from the default agent's actions (the ones this person may
    reach), at most MAX_PROMPTS: each names what the action does, and asks for it."""
    agent = config.default_agent
    prompts = []
    for name, action in registry.for_agent(agent, customer=customer).items():
        if name.startswith(PREFIX) or not action.description.strip():
            continue  # a handoff is the agent's business, not a thing to ask for
        said = action.description.strip().rstrip(".")
        prompts.append({"title": _short(said), "message": said})
        if len(prompts) == MAX_PROMPTS:
            break
    return prompts


def prompts_title(config: Config) -> str:
    return f"Ask {config.default_agent.name}, for example:"


def thread_context(payload: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(DM channel, thread_ts, context) of an assistant thread event; None when malformed."""
    thread = payload.get("assistant_thread")
    if not isinstance(thread, dict):
        return None
    channel, ts, context = thread.get("channel_id"), thread.get("thread_ts"), thread.get("context")
    if not (isinstance(channel, str) and isinstance(ts, str)):
        return None
    return channel, ts, context if isinstance(context, dict) else {}


def _short(text: str) -> str:
    return text if len(text) <= TITLE_LIMIT else text[: TITLE_LIMIT - 1].rstrip() + "…"
