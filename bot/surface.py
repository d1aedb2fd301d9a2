"""Where messages go: a Slack workspace through the Web API (or the console, in bot.console).

Every Web API call goes through one AsyncWebClient that retries 429s (honouring
Retry-After), 5xx and connection errors.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from agents import metrics
from agents.errors import ActionError
from agents.redaction import Redactor
from bot.redaction import RedactingWebClient

log = logging.getLogger(__name__)

GONE = {"message_not_found", "channel_not_found", "cant_delete_message"}
# What Slack answers for a method this app cannot use here (an older workspace or plan, a scope
# the app was not given): asked once, and then not again by this process.
UNAVAILABLE = {
    "unknown_method",
    "method_deprecated",
    "missing_scope",
    "not_allowed",
    "not_supported",
    "feature_not_enabled",
}
STREAM_BUFFER = 256
"""Characters of an answer gathered before each chat.appendStream (slack_sdk's default)."""


class Unavailable(Exception):
    """Slack does not offer this method to this app here; it is not asked again."""


class StreamFailed(Exception):
    """A streamed reply did not complete."""

    def __init__(self, ts: str | None, reason: str) -> None:
        super().__init__(reason)
        self.ts = ts
        """The reply as far as it was shown (to be replaced), or None when nothing was posted."""


class UserLookupFailed(Exception):
    """Slack could not say who a user is right now (users.info failed)."""


@dataclass(frozen=True)
class UserInfo:
    id: str
    team_id: str | None
    is_bot: bool = False
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    is_stranger: bool = False
    deleted: bool = False


class Surface(Protocol):
    """What presenters and Slack actions need from a chat workspace."""

    async def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str: ...

    async def update(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        """Edit a message. `best_effort`: do not wait out a server error (the caller makes the
        edit again later, as the presenter's sweep does for status messages)."""
        ...

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str: ...

    async def delete_message(self, *, channel: str, ts: str) -> None: ...

    async def react(self, *, channel: str, ts: str, name: str) -> None: ...

    async def post_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message only `user` sees (its buttons work like any message's)."""
        ...

    async def user(self, user_id: str) -> UserInfo | None:
        """What the workspace says of a user; None: no such user. Raises UserLookupFailed when
        it cannot say now."""
        ...

    async def set_status(
        self, *, channel: str, thread_ts: str, status: str, loading_messages: list[str] | None = None
    ) -> None:
        """The thread's loading status ("is thinking…"): shown until the app replies in the
        thread, it is set to "" or two minutes pass. Raises Unavailable where Slack has none."""
        ...

    async def stream(
        self,
        *,
        channel: str,
        thread_ts: str,
        markdown: str,
        blocks: list[dict[str, Any]],
        text: str,
        recipient_team_id: str,
        recipient_user_id: str,
    ) -> str:
        """A reply whose `markdown` appears as it is streamed, `blocks` (buttons...) attached when
        it stops; returns its ts. `text`: the whole reply as text, for surfaces that show text.
        Raises StreamFailed."""
        ...


class _CountingRateLimitHandler(AsyncRateLimitErrorRetryHandler):
    """Slack's 429 handling (sleep Retry-After, try again), counted for /metrics."""

    async def _can_retry_async(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        if response is not None and response.status_code == 429:
            metrics.SLACK_RATE_LIMITED.inc()
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


def make_client(
    token: str, base_url: str, *, max_retries: int = 3, redactor: Redactor | None = None
) -> AsyncWebClient:
    """The one Web API client: retries connection errors, 429s (honouring Retry-After) and 5xx,
    and cleans what it sends of secrets."""
    client = RedactingWebClient(token=token, base_url=base_url, timeout=15)
    if redactor is not None:
        client.redactor = redactor
    client.retry_handlers = [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        _CountingRateLimitHandler(max_retry_count=max_retries),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]
    return client


class SlackSurface:
    def __init__(self, client: AsyncWebClient, *, on_failure: Callable[[], None] | None = None) -> None:
        self.client = client
        # For best-effort edits (status messages: one Slack refuses is made again by the
        # presenter's sweep): no waiting out a server error, whose retries' sleeps would hold the
        # run's outcome behind them. Rate limits are still honoured.
        self.edits = copy.copy(client)
        self.edits.retry_handlers = [
            h for h in client.retry_handlers if not isinstance(h, AsyncServerErrorRetryHandler)
        ]
        self.on_failure = on_failure or (lambda: None)
        self._session: aiohttp.ClientSession | None = None
        self.unavailable: set[str] = set()
        """Methods Slack said this app cannot use here (UNAVAILABLE)."""

    def _keep_alive(self) -> None:
        """One HTTP session for every call, kept alive: without one, slack_sdk opens a new
        session (a new TCP and TLS connection) for each call and closes it after."""
        if self.client.session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.client.timeout))
            self.client.session = self._session
        self.edits.session = self.client.session

    async def close(self) -> None:
        if self._session is not None:
            for client in (self.client, self.edits):
                if client.session is self._session:
                    client.session = None
            await self._session.close()
            self._session = None

    async def _call(self, method: str, call: Awaitable[Any]) -> Any:
        self._keep_alive()  # before `call` starts: it takes the client's session when it does
        try:
            response = await call
        except SlackApiError as e:
            metrics.SLACK_CALLS.labels(method, _code(e)).inc()
            self.on_failure()
            raise
        except Exception:
            metrics.SLACK_CALLS.labels(method, "error").inc()
            self.on_failure()
            raise
        metrics.SLACK_CALLS.labels(method, "ok").inc()
        return response

    async def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        response = await self._call(
            "chat.postMessage",
            self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return str(response["ts"])

    async def update(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        self._keep_alive()  # the edits' client takes the session when its call starts
        client = self.edits if best_effort else self.client
        await self._call("chat.update", client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        try:
            return await self.post(channel=channel, text=text, thread_ts=thread_ts)
        except SlackApiError as e:
            raise ActionError(f"Slack refused the message: {_code(e)}") from None

    async def delete_message(self, *, channel: str, ts: str) -> None:
        try:
            await self._call("chat.delete", self.client.chat_delete(channel=channel, ts=ts))
        except SlackApiError as e:
            if _code(e) in GONE:
                return
            raise ActionError(f"Slack refused to delete the message: {_code(e)}") from None

    async def react(self, *, channel: str, ts: str, name: str) -> None:
        try:
            await self._call(
                "reactions.add", self.client.reactions_add(channel=channel, timestamp=ts, name=name)
            )
        except SlackApiError as e:
            if _code(e) != "already_reacted":
                raise

    async def post_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        await self._call(
            "chat.postEphemeral",
            self.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks
            ),
        )

    async def set_status(
        self, *, channel: str, thread_ts: str, status: str, loading_messages: list[str] | None = None
    ) -> None:
        self._keep_alive()  # the edits' client takes the session when its call starts
        await self._optional(
            "assistant.threads.setStatus",
            # Decoration, like a status edit: a server error is not waited out.
            lambda: self.edits.assistant_threads_setStatus(
                channel_id=channel, thread_ts=thread_ts, status=status, loading_messages=loading_messages
            ),
        )

    async def stream(
        self,
        *,
        channel: str,
        thread_ts: str,
        markdown: str,
        blocks: list[dict[str, Any]],
        text: str,
        recipient_team_id: str,
        recipient_user_id: str,
    ) -> str:
        """Through slack_sdk's `chat_stream`: chat.startStream once the first STREAM_BUFFER
        characters are gathered, chat.appendStream for each next ones, chat.stopStream with
        the rest and `blocks`."""
        if "chat.startStream" in self.unavailable:
            raise StreamFailed(None, "Slack offers no streaming here")
        self._keep_alive()
        streamer = await self.client.chat_stream(
            channel=channel,
            thread_ts=thread_ts,
            recipient_team_id=recipient_team_id,
            recipient_user_id=recipient_user_id,
            buffer_size=STREAM_BUFFER,
        )

        async def streamed() -> Any:
            for line in markdown.splitlines(keepends=True):
                await streamer.append(markdown_text=line)
            return await streamer.stop(blocks=blocks)

        try:
            response = await self._call("chat.stream", streamed())
        except Exception as e:  # broad on purpose: whatever broke the stream, the reply is delivered
            reason = _code(e) if isinstance(e, SlackApiError) else type(e).__name__
            if streamer.ts is None and reason in UNAVAILABLE:
                self.unavailable.add("chat.startStream")
                log.warning("Slack offers no streaming here (%s): outcomes are posted whole", reason)
            raise StreamFailed(streamer.ts, reason) from e
        return str(response.get("ts") or streamer.ts)

    async def _optional(self, method: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """A call Slack may not offer here: once it says so (UNAVAILABLE), Unavailable without asking."""
        if method in self.unavailable:
            raise Unavailable(method)
        try:
            return await self._call(method, call())
        except SlackApiError as e:
            if _code(e) not in UNAVAILABLE:
                raise
            self.unavailable.add(method)
            log.warning("Slack does not offer %s here (%s): not asked again", method, _code(e))
            raise Unavailable(method) from None

    async def publish_home(self, *, user: str, view: dict[str, Any]) -> None:
        await self._call("views.publish", self.client.views_publish(user_id=user, view=view))

    async def user(self, user_id: str) -> UserInfo | None:
        """What users.info says of a user; None when Slack says there is no such user.

        Raises UserLookupFailed when Slack could not say (an outage, a rate limit past the
        retries): not knowing is not the same as "not a member" (bot.authority keeps the last
        known answer for that).
        """
        try:
            response = await self._call("users.info", self.client.users_info(user=user_id))
        except SlackApiError as e:
            if _code(e) in ("user_not_found", "users_not_found"):
                return None
            log.warning("users.info %s failed: %s", user_id, _code(e))
            raise UserLookupFailed(_code(e)) from None
        except Exception as e:  # broad on purpose: any transport failure means "could not ask"
            log.warning("users.info %s failed: %s", user_id, type(e).__name__)
            raise UserLookupFailed(type(e).__name__) from None
        u = response.get("user") or {}
        return UserInfo(
            id=user_id,
            team_id=u.get("team_id"),
            is_bot=bool(u.get("is_bot")),
            is_restricted=bool(u.get("is_restricted")),
            is_ultra_restricted=bool(u.get("is_ultra_restricted")),
            is_stranger=bool(u.get("is_stranger")),
            deleted=bool(u.get("deleted")),
        )


def _code(e: SlackApiError) -> str:
    try:
        return str(e.response.get("error") or e.response.status_code)
    except Exception:  # broad on purpose: only used to describe an error
        return str(e)


class Surfaces(Protocol):
    """Each workspace's surface, and which workspace the rows of a request belong to.

    One bot token (or the console): one surface for every team, and every pause, alert, summary
    and audit row belongs to every workspace (team ""), as before there were many. Many
    workspaces installed through OAuth (bot.workspaces): each team its own surface and rows.
    """

    def for_team(self, team_id: str) -> Surface:
        """The surface that reaches workspace `team_id` (with its own bot token)."""
        ...

    def owner(self, team_id: str) -> str:
        """The team the pauses, alerts, summaries and audit rows of `team_id` are kept under."""
        ...

    async def teams(self) -> list[str]:
        """The workspaces to report on (daily summaries): the installed ones, or [""] for one."""
        ...


class OneSurface:
    """A single workspace (one bot token, or the console): its surface for every team."""

    def __init__(self, surface: Surface) -> None:
        self.surface = surface

    def for_team(self, team_id: str) -> Surface:
        return self.surface

    def owner(self, team_id: str) -> str:
        return ""

    async def teams(self) -> list[str]:
        return [""]
