"""The assistant threads of the app's DM, and the channel the person is viewing in each.

Slack tells it when the thread starts (assistant_thread_started) and whenever the person moves
(assistant_thread_context_changed); a request made in the thread carries it to its run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import AssistantThread


async def remember_context(
    *,
    session: AsyncSession,
    channel_id: str,
    thread_ts: str,
    context: dict[str, Any],
    user_id: str | None = None,
) -> None:
    """Keep the thread's context as Slack gave it. Two deliveries at once (the thread starting,
    the person moving): the primary key keeps one row, and the later write wins."""
    values = {"channel_id": channel_id, "thread_ts": thread_ts, "context": context, "updated_at": now()}
    if await insert_ignore(session, AssistantThread, {**values, "user_id": user_id}):
        return
    if user_id:
        values["user_id"] = user_id
    await session.exec(
        update(AssistantThread)
        .where(col(AssistantThread.channel_id) == channel_id, col(AssistantThread.thread_ts) == thread_ts)
        .values(**values)
    )


async def context_of(*, session: AsyncSession, channel_id: str, thread_ts: str) -> dict[str, Any] | None:
    """The thread's context (channel_id: the channel being viewed), or None: not an assistant
    thread, or Slack said nothing of it."""
    thread = await session.get(AssistantThread, (channel_id, thread_ts))
    return None if thread is None else thread.context
