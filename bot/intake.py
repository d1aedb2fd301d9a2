"""Intake: decide whether a Slack message is a request, and persist it before the ack.

Transport-independent: the bolt listeners (HTTP, Socket Mode, and the console,
which dispatches Slack-shaped events through the same app) hand over an
`Incoming`. Deduplication is in the database: the delivery key (event_id or
trigger_id) and the message itself (team, channel, ts) are unique, so retries and
the double delivery of one mention as `app_mention` and `message` make one run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from agents import metrics
from agents.config import Config
from bot.presenter import Presenter
from storage import assistant_threads, requests, steering
from storage.engine import Database
from storage.models import RequestBase, Run

log = logging.getLogger(__name__)

MAX_TEXT = 20_000  # characters of a request kept; Slack allows 40k, no request needs more


@dataclass(frozen=True)
class Incoming:
    """One human message (or `/agent` command), normalised from whatever carried it."""

    team_id: str
    channel_id: str
    user_id: str
    text: str
    ts: str
    thread_ts: str | None
    channel_type: str | None
    via: Literal["mention", "message", "command"]
    delivery: str | None
    """Unique key of this delivery: the event_id, or the command's trigger_id."""
    source: str = "slack"
    user_team: str | None = None
    """The sender's own workspace when Slack says (shared channels)."""


@dataclass(frozen=True)
class Accepted:
    run_id: int
    agent: str
    steered: bool = False
    """The message steers `run_id`, a run of its thread in flight, instead of starting one."""


class Intake:
    def __init__(
        self,
        db: Database,
        config: Config,
        presenter: Presenter,
        on_queued: Callable[[], None],
        role_of: Callable[..., Awaitable[str]],
    ) -> None:
        self.db = db
        self.config = config
        self.presenter = presenter
        self.on_queued = on_queued
        self.role_of = role_of
        """("member" | "customer") for a user: decided in code from Slack's user flags."""

    async def route(self, m: Incoming, bot_user_id: str | None) -> tuple[str, str] | None:
        """(agent, kind) when the message is a request, else None."""
        mentioned = bool(bot_user_id) and f"<@{bot_user_id}>" in m.text
        served = self.config.agent_for_channel(m.channel_id)
        top_level = m.thread_ts is None or m.thread_ts == m.ts
        if m.via == "command":
            return ((served or self.config.default_agent).name, "command")
        if m.channel_type == "im":
            return (self.config.default_agent.name, "dm")
        if m.via == "mention" or mentioned:
            return ((served or self.config.default_agent).name, "mention")
        if served and top_level:
            return (served.name, "channel")
        if not top_level and m.thread_ts:
            async with self.db.read() as session:
                agent = await requests.thread_has_runs(
                    session=session, team_id=m.team_id, channel_id=m.channel_id, thread_ts=m.thread_ts
                )
            if agent is not None:
                return (agent, "thread")  # a follow-up queues behind the thread's run
        return None

    async def first_delivery(self, m: Incoming) -> bool:
        """True the first time this message is seen (a command must not run twice).

        Keyed on the message itself, so a retry and the double delivery of a mention as
        `app_mention` and `message` both count as seen.
        """
        key = f"message:{m.team_id}:{m.channel_id}:{m.ts}"
        async with self.db.write(urgent=True) as session:
            return await requests.record_delivery(session=session, key=key, kind="command")

    async def accept(self, m: Incoming, *, agent: str, kind: str) -> Accepted | None:
        """Persist the request and queue its run. None if this was already taken."""
        thread_ts = m.thread_ts or m.ts
        role = await self.role_of(m.user_id, team_id=m.team_id, user_team=m.user_team)
        viewing = await self._viewing(m) if m.channel_type == "im" and m.thread_ts else None
        request = RequestBase(
            source=m.source,
            kind=kind,
            team_id=m.team_id,
            channel_id=m.channel_id,
            user_id=m.user_id,
            ts=m.ts,
            thread_ts=thread_ts,
            event_id=m.delivery,
            text=_clean(m.text)[:MAX_TEXT],
            agent=agent,
            requester_role=role,
            context_channel_id=viewing,
        )
        in_thread = m.via != "command" and m.thread_ts is not None and m.thread_ts != m.ts
        async with self.db.write(urgent=True) as session:
            if m.delivery and not await requests.record_delivery(session=session, key=m.delivery, kind=m.via):
                return None  # Slack retried a delivery we already took
            target = await self._run_to_steer(session, request) if in_thread else None
            if target is not None:
                request.agent = target.agent
                if await steering.attach(session=session, request=request, run_id=target.id or 0) is None:
                    return None  # the same message, delivered through another event type
            else:
                queued = await requests.queue_request(session=session, request=request)
                if queued is None:
                    return None  # the same message, delivered through another event type
                run_id = queued
        metrics.REQUESTS.labels("steering" if target is not None else kind).inc()
        if target is not None:
            assert target.id is not None
            log.info("reply in the thread of run #%s steers it (%s)", target.id, m.channel_id)
            self.presenter.steered(target.id, channel=m.channel_id, ts=m.ts, team_id=m.team_id)
            return Accepted(target.id, target.agent, steered=True)
        log.info("request accepted: run #%s for %s (%s in %s)", run_id, agent, kind, m.channel_id)
        self.on_queued()
        self.presenter.announce(run_id)
        return Accepted(run_id, agent)

    async def _viewing(self, m: Incoming) -> str | None:
        """In a thread of the app's assistant container: the channel the person is viewing, as
        Slack last said (bot.agent_view)."""
        async with self.db.read() as session:
            context = await assistant_threads.context_of(
                session=session, channel_id=m.channel_id, thread_ts=m.thread_ts or m.ts
            )
        channel = (context or {}).get("channel_id")
        return channel[:32] if isinstance(channel, str) and channel else None

    async def _run_to_steer(self, session: AsyncSession, request: RequestBase) -> Run | None:
        """The thread's run in flight this reply steers, or None (then it is a request of its own).

        A person steers a run they asked for, and a team member steers any; a customer's reply
        to a team member's run is a request of its own (it reaches only what customers may, and
        must not speak inside a run that reaches more).
        """
        run = await steering.run_to_steer(
            session=session,
            team_id=request.team_id,
            channel_id=request.channel_id,
            thread_ts=request.thread_ts,
        )
        if run is None or request.requester_role == "member":
            return run
        asked = await requests.get_request(session=session, request_id=run.request_id)
        return run if asked is not None and asked.user_id == request.user_id else None


def command_ts(trigger_id: str) -> str:
    """What stands for a message ts for a slash command (it has no message): unique per
    command, and as short as a ts column takes. Slack's trigger ids are about 41 characters,
    so they are hashed rather than kept whole."""
    return "command:" + hashlib.sha256(trigger_id.encode()).hexdigest()[:24]


def _clean(text: str) -> str:
    """Drop a leading bot mention and Slack's escaping (&amp; &lt; &gt;); keep the rest as written."""
    text = re.sub(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[:,]?\s*", "", text).strip() or text.strip()
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
