"""The console's Slack Web API: what the presenter, the controls and Slack actions post,
edit, delete and react to, shown in the terminal as Slack would show it."""

from __future__ import annotations

from typing import Any

from bot.console import view
from bot.console.terminal import Screen
from bot.console.workspace import BOT_USER, Workspace, people
from bot.surface import UserInfo


class ConsoleSurface:
    """A `bot.surface.Surface` that plays the workspace and prints to a Screen."""

    def __init__(self, screen: Screen | None = None, workspace: Workspace | None = None) -> None:
        self.screen = screen or Screen()
        self.workspace = workspace or Workspace()
        self.users: dict[str, UserInfo] = people()

    async def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        m = self.workspace.post(channel=channel, user=BOT_USER, text=text, thread_ts=thread_ts, blocks=blocks)
        self.screen.print(view.show(m, self.workspace))
        return m.ts

    async def update(
        self,
        *,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        m = self.workspace.get(channel, ts)
        if m is None:  # posted by an earlier console session: show it, under a new number
            m = self.workspace.post(channel=channel, user=BOT_USER, text=text, blocks=blocks, ts=ts)
            self.screen.print(view.show(m, self.workspace, note=", from an earlier session"))
            return
        before = (m.text, m.labels())
        m.replace(text=text, blocks=blocks)
        if (m.text, m.labels()) != before:  # an edit that changes nothing visible is not shown
            self.screen.print(view.show(m, self.workspace, edited=True))

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        return await self.post(channel=channel, text=text, thread_ts=thread_ts)

    async def delete_message(self, *, channel: str, ts: str) -> None:
        m = self.workspace.get(channel, ts)
        if m is not None and not m.deleted:
            m.deleted = True
            place = view.where(m, self.workspace)
            self.screen.print(f"{view.indent_of(m)}chatops deleted message ({m.number}) in {place}")

    async def react(self, *, channel: str, ts: str, name: str) -> None:
        m = self.workspace.get(channel, ts)
        if m is not None:
            emoji = view.readable(f":{name}:")
            self.screen.print(f"{view.indent_of(m)}chatops reacted {emoji} to ({m.number})")

    async def post_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        self.show_ephemeral(channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks)

    def show_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message only `user` sees (a `chat.postEphemeral`, or the answer to a slash command)."""
        m = self.workspace.post_ephemeral(
            channel=channel, user=BOT_USER, visible_to=user, text=text, thread_ts=thread_ts, blocks=blocks
        )
        self.screen.print(view.show(m, self.workspace))

    async def user(self, user_id: str) -> UserInfo | None:
        return self.users.get(user_id)

    async def set_status(
        self, *, channel: str, thread_ts: str, status: str, loading_messages: list[str] | None = None
    ) -> None:
        """The thread's loading status, as a line under the thread (cleared: nothing to show)."""
        if status:
            self.screen.print(view.status_line(self.workspace, channel, thread_ts, status))

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
        """A streamed reply, shown once it is whole (a terminal shows it at once)."""
        m = self.workspace.post(channel=channel, user=BOT_USER, text=text, thread_ts=thread_ts, blocks=blocks)
        self.screen.print(view.show(m, self.workspace, note=", streamed"))
        return m.ts
