"""Many workspaces: each team's Slack surface, with the bot token its installation holds.

With SLACK_CLIENT_ID (bot.oauth) there is no single bot token: every call for a workspace
goes through a client made with that workspace's token from the installation store. Each
team gets its own client (its own rate limits, retries and connection, the RedactingWebClient
of `make_client` like every other), kept for `TTL` seconds and dropped at once when the
app is removed from the workspace or Slack refuses the token. A workspace without an
installation gets nothing from Slack: its calls are not made at all (a post is recorded as
delivered nowhere, an action is told the app is not installed there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError

from agents.errors import ActionError
from agents.redaction import Redactor
from bot.surface import SlackSurface, Surface, UserInfo, UserLookupFailed, make_client
from storage import installations
from storage.engine import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
TTL = 60.0
"""Seconds a team's token is trusted before the store is read again (another process may have
seen the app removed, or installed again)."""
REVOKED = {"invalid_auth", "token_revoked", "account_inactive", "not_authed", "team_access_not_granted"}
"""Slack's answers that mean the token is no good any more: read the store again."""
NOWHERE = ""
"""The ts of a message to a workspace without the app: none was posted, and none will be
(it is not retried, and no edit or button can name it: `is_ts` is false)."""


class Workspaces:
    """`bot.surface.Surfaces` for many workspaces: each team its own surface and rows."""

    def __init__(
        self,
        db: Database,
        client_id: str,
        *,
        base_url: str,
        redactor: Redactor | None = None,
        on_failure: Callable[[], None] | None = None,
        ttl: float = TTL,
    ) -> None:
        self.db = db
        self.client_id = client_id
        self.base_url = base_url
        self.redactor = redactor
        self.on_failure = on_failure
        self.ttl = ttl
        self._surfaces: dict[str, tuple[float, str | None, SlackSurface | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._told: set[str] = set()  # teams whose missing installation was logged
        self._retired: list[SlackSurface] = []
        """Surfaces of tokens no longer used: closed when the process stops, not when dropped
        (a call may still be under way on them: closing its session would leave it hanging)."""

    def for_team(self, team_id: str) -> Surface:
        return TeamSurface(self, team_id)

    def owner(self, team_id: str) -> str:
        return team_id

    async def teams(self) -> list[str]:
        async with self.db.read() as session:
            return await installations.installed_teams(session=session, client_id=self.client_id)

    async def surface(self, team_id: str) -> SlackSurface | None:
        """The team's surface, made with its bot token; None when the app is not installed there
        (or for no team: the operator's, when `[alerts] team` is not set)."""
        if not team_id:
            return None
        held = self._surfaces.get(team_id)
        if held is not None and time.monotonic() < held[0]:
            return held[2]
        async with self._locks.setdefault(team_id, asyncio.Lock()):
            held = self._surfaces.get(team_id)
            if held is not None and time.monotonic() < held[0]:
                return held[2]
            async with self.db.read() as session:
                token = await installations.bot_token(
                    session=session, client_id=self.client_id, team_id=team_id
                )
            surface = held[2] if held is not None and held[1] == token else None
            if surface is None and held is not None and held[2] is not None:
                self._retired.append(held[2])  # a new token (installed again): a new client
            if surface is None and token is not None:
                client = make_client(token, self.base_url, redactor=self.redactor)
                surface = SlackSurface(client, on_failure=self.on_failure)
            self._surfaces[team_id] = (time.monotonic() + self.ttl, token, surface)
        if surface is None and team_id not in self._told:
            self._told.add(team_id)
            log.warning("workspace %s has no installation of the app: nothing is sent to it", team_id)
        elif surface is not None:
            self._told.discard(team_id)
        return surface

    async def forget(self, team_id: str) -> None:
        """Read the team's installation again at its next call (removed, installed again, or
        its token refused)."""
        held = self._surfaces.pop(team_id, None)
        if held is not None and held[2] is not None:
            self._retired.append(held[2])

    async def close(self) -> None:
        for team_id in list(self._surfaces):
            await self.forget(team_id)
        retired, self._retired = self._retired, []
        for surface in retired:
            await surface.close()


class TeamSurface:
    """One workspace's surface, resolved at each call (cheap: cached by `Workspaces`)."""

    def __init__(self, workspaces: Workspaces, team_id: str) -> None:
        self.workspaces = workspaces
        self.team_id = team_id

    async def _call(self, call: Callable[[SlackSurface], Awaitable[T]], nowhere: Callable[[], T]) -> T:
        surface = await self.workspaces.surface(self.team_id)
        if surface is None:
            return nowhere()
        try:
            return await call(surface)
        except SlackApiError as e:
            if e.response.get("error") in REVOKED:
                log.warning(
                    "workspace %s: Slack refused its bot token (%s)", self.team_id, e.response.get("error")
                )
                await self.workspaces.forget(self.team_id)
            raise

    async def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        return await self._call(
            lambda s: s.post(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts), lambda: NOWHERE
        )

    async def update(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        await self._call(
            lambda s: s.update(channel=channel, ts=ts, text=text, blocks=blocks, best_effort=best_effort),
            lambda: None,
        )

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        return await self._call(
            lambda s: s.post_text(channel=channel, text=text, thread_ts=thread_ts), _absent
        )

    async def delete_message(self, *, channel: str, ts: str) -> None:
        await self._call(lambda s: s.delete_message(channel=channel, ts=ts), _absent)

    async def react(self, *, channel: str, ts: str, name: str) -> None:
        await self._call(lambda s: s.react(channel=channel, ts=ts, name=name), lambda: None)

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
            lambda s: s.post_ephemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks
            ),
            lambda: None,
        )

    async def set_status(
        self, *, channel: str, thread_ts: str, status: str, loading_messages: list[str] | None = None
    ) -> None:
        await self._call(
            lambda s: s.set_status(
                channel=channel, thread_ts=thread_ts, status=status, loading_messages=loading_messages
            ),
            lambda: None,
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
        return await self._call(
            lambda s: s.stream(
                channel=channel,
                thread_ts=thread_ts,
                markdown=markdown,
                blocks=blocks,
                text=text,
                recipient_team_id=recipient_team_id,
                recipient_user_id=recipient_user_id,
            ),
            lambda: NOWHERE,
        )

    async def publish_home(self, *, user: str, view: dict[str, Any]) -> None:
        await self._call(lambda s: s.publish_home(user=user, view=view), lambda: None)

    async def user(self, user_id: str) -> UserInfo | None:
        def nowhere() -> UserInfo | None:
            raise UserLookupFailed("the app is not installed in this workspace")

        return await self._call(lambda s: s.user(user_id), nowhere)


def _absent() -> Any:
    """What an action is told in a workspace without the app (agents.ports.Chat)."""
    raise ActionError("the app is no longer installed in this workspace")
