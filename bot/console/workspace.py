"""The console's Slack workspace: its people, its channels, and every message it has shown.

Public messages are numbered in the order they appear (what `/thread` and `/click` take);
a message only one person sees is not: Slack shows it to nobody else and it has no place
in the thread. One with buttons gets a handle (`e1`, `e2`...) so that they can be pressed.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from bot.surface import UserInfo

TEAM = "TCONSOLE"
OTHER_TEAM = "TOTHER"
BOT_USER = "UCHATOPS"
YOU = "UCONSOLE"
GUEST = "UGUEST"
STRANGER = "USTRANGER"
DM = "DCONSOLE"
GENERAL = "CGENERAL"

PEOPLE = {"you": YOU, "guest": GUEST, "stranger": STRANGER}
"""Who `/as` can speak as."""
NAMES = {YOU: "you", GUEST: "guest", STRANGER: "stranger", BOT_USER: "chatops"}


def people() -> dict[str, UserInfo]:
    """What users.info says about the console's people: a member, a guest, a stranger."""
    return {
        YOU: UserInfo(YOU, TEAM),
        GUEST: UserInfo(GUEST, TEAM, is_restricted=True),
        STRANGER: UserInfo(STRANGER, OTHER_TEAM, is_stranger=True),
    }


def user_name(user_id: str) -> str:
    return NAMES.get(user_id, user_id)


def channel_name(channel_id: str) -> str:
    """How the channel is written: `DM`, `#general`, `#C0123OPS`."""
    if channel_id == DM:
        return "DM"
    return "#general" if channel_id == GENERAL else f"#{channel_id}"


def channel_id(name: str) -> str:
    """The channel a person means by `general`, `#general` or `C0123OPS`."""
    name = name.removeprefix("#")
    return GENERAL if name.lower() == "general" else name


@dataclass
class ConsoleMessage:
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    number: int | None = None
    """Public messages: the number people use to refer to it."""
    visible_to: str | None = None
    """Ephemeral messages: the one person who sees it."""
    handle: str | None = None
    """Ephemeral messages with buttons: e1, e2..."""
    shown: list[str] = field(default_factory=list)
    """The lines of text last printed for it, so an edit prints only what changed."""
    shown_buttons: str = ""
    """Its buttons as last printed."""
    removed_buttons: set[str] = field(default_factory=set)
    """Labels of buttons an edit took away."""
    deleted: bool = False

    @property
    def ref(self) -> str:
        """How a person names it in `/click`."""
        return str(self.number) if self.number is not None else (self.handle or "?")

    @property
    def in_thread(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def buttons(self) -> list[dict[str, Any]]:
        """Its buttons, each as a button element; the two of a feedback element (👍 👎) are two,
        each with the element's type and action_id and its own text and value."""
        found: list[dict[str, Any]] = []
        for b in self.blocks:
            if b.get("type") not in ("actions", "context_actions"):
                continue
            for e in b.get("elements", []):
                if e.get("type") == "button":
                    found.append(e)
                elif e.get("type") == "feedback_buttons":
                    found += [
                        {**e[side], "type": e["type"], "action_id": e.get("action_id")}
                        for side in ("positive_button", "negative_button")
                        if isinstance(e.get(side), dict)
                    ]
        return found

    def labels(self) -> list[str]:
        return [str(b.get("text", {}).get("text", "")) for b in self.buttons()]

    def replace(self, *, text: str, blocks: list[dict[str, Any]] | None) -> None:
        """An edit: new text and blocks; buttons it takes away are remembered."""
        before = set(self.labels())
        self.text, self.blocks = text, blocks or []
        self.removed_buttons |= before - set(self.labels())


class Workspace:
    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], ConsoleMessage] = {}
        self._by_ref: dict[str, ConsoleMessage] = {}
        self._numbers = itertools.count(1)
        self._handles = itertools.count(1)
        self._last_ts = 0.0

    def new_ts(self) -> str:
        """Like Slack's: microsecond time, unique and increasing across sessions."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def post(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        ts: str | None = None,
    ) -> ConsoleMessage:
        """A public message, numbered; `ts` for one posted by an earlier session."""
        m = ConsoleMessage(channel, ts or self.new_ts(), user, text, thread_ts, blocks or [])
        m.number = next(self._numbers)
        self.messages[(channel, m.ts)] = m
        self._by_ref[m.ref] = m
        return m

    def post_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        visible_to: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> ConsoleMessage:
        m = ConsoleMessage(channel, self.new_ts(), user, text, thread_ts, blocks or [], visible_to=visible_to)
        if m.buttons():
            m.handle = f"e{next(self._handles)}"
            self._by_ref[m.handle] = m
        return m

    def get(self, channel: str, ts: str) -> ConsoleMessage | None:
        return self.messages.get((channel, ts))

    def find(self, ref: str) -> ConsoleMessage | None:
        """A message by its number (`3`) or an ephemeral message's handle (`e1`)."""
        return self._by_ref.get(ref.strip().lower().lstrip("(").rstrip(")"))

    def thread_of(self, m: ConsoleMessage) -> ConsoleMessage | None:
        """The message a thread reply belongs under (None: not a reply, or an earlier session's)."""
        return self.get(m.channel, m.thread_ts) if m.in_thread and m.thread_ts else None
