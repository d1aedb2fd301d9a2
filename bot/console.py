"""The local console workspace: try everything in a terminal, no Slack needed.

Messages typed here become Slack-shaped events dispatched through the same bolt
app, intake, runtime and presenter as real Slack; the console only plays the
Slack workspace (channels, threads, users, message numbers) and prints.
When stdin is not a terminal it reads lines one by one, finishing the work each
line starts before reading the next, so a session can be scripted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.services import Services, build_services
from bot.settings import Settings
from bot.slack_app import build_app, console_authorize
from bot.surface import UserInfo

TEAM = "TCONSOLE"
BOT_USER = "UCHATOPS"
YOU = "UCONSOLE"
DM = "DCONSOLE"
GENERAL = "CGENERAL"

HELP = """\
Console commands:
  <text>              a message where you are (in the DM with the bot, every message is a request)
  @chatops <text>     mention the bot (in a channel)
  /agent <text>       the slash command
  /join <CHANNEL>     go to a channel (agents' channels are listed at start); /dm back to the DM
  /thread <n>         reply in the thread of message n; /top to leave the thread
  /click <n> <button> press a button on message n (Undo, Approve, Deny, Pause)
  /as <user>          speak as another user: you, guest, stranger (for testing permissions)
  /help, /quit"""


@dataclass
class ConsoleMessage:
    number: int
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    ephemeral: bool = False
    """Only the user it was shown to sees it (Slack sends no message with its clicks)."""

    def buttons(self) -> list[dict[str, Any]]:
        return [
            e
            for b in self.blocks
            if b.get("type") == "actions"
            for e in b.get("elements", [])
            if e.get("type") == "button"
        ]


@dataclass
class ConsoleSurface:
    """Plays Slack's Web API for the presenter and Slack actions, printing to a stream."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    messages: dict[tuple[str, str], ConsoleMessage] = field(default_factory=dict)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    users: dict[str, UserInfo] = field(default_factory=dict)
    _last_ts: float = 0.0

    def new_ts(self) -> str:
        """Like Slack's: microsecond time, unique and increasing across sessions."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def add(self, *, channel: str, user: str, text: str, thread_ts: str | None) -> ConsoleMessage:
        m = ConsoleMessage(next(self._numbers), channel, self.new_ts(), user, text, thread_ts)
        self.messages[(channel, m.ts)] = m
        return m

    def by_number(self, n: int) -> ConsoleMessage | None:
        return next((m for m in self.messages.values() if m.number == n), None)

    def show(self, m: ConsoleMessage, *, edited: bool = False) -> None:
        who = "chatops" if m.user == BOT_USER else _name(m.user)
        where = _channel_name(m.channel)
        parent = self.messages.get((m.channel, m.thread_ts or ""))
        indent = f"   └ in thread of ({parent.number}) " if m.thread_ts and parent else ""
        mark = "edited " if edited else ""
        lines = m.text.splitlines() or [""]
        buttons = [b["text"]["text"] for b in m.buttons()]
        if buttons:
            lines.append("[" + "] [".join(buttons) + f"]   (/click {m.number} <button>)")
        print(f"{indent}[{where}] {who} ({mark}{m.number}): {lines[0]}", file=self.out)
        pad = " " * (len(indent) + 4)
        for line in lines[1:]:
            print(f"{pad}{line}", file=self.out)
        self.out.flush()

    # Surface ------------------------------------------------------------------

    async def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        m = self.add(channel=channel, user=BOT_USER, text=text, thread_ts=thread_ts)
        m.blocks = blocks or []
        self.show(m)
        return m.ts

    async def update(
        self, *, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        m = self.messages.get((channel, ts))
        if m is None:  # posted by an earlier console session: show it again
            m = ConsoleMessage(next(self._numbers), channel, ts, BOT_USER, "", None)
            self.messages[(channel, ts)] = m
        m.blocks = blocks or []
        if m.text != text:
            m.text = text
            self.show(m, edited=True)

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        return await self.post(channel=channel, text=text, thread_ts=thread_ts)

    async def delete_message(self, *, channel: str, ts: str) -> None:
        m = self.messages.pop((channel, ts), None)
        if m is not None:
            print(f"   (chatops deleted message {m.number})", file=self.out)

    async def react(self, *, channel: str, ts: str, name: str) -> None:
        m = self.messages.get((channel, ts))
        if m is not None:
            print(f"   (chatops reacted :{name}: to message {m.number})", file=self.out)

    async def post_ephemeral(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        print(f"   (visible only to {_name(user)}) chatops: {text}", file=self.out)
        self.offer_buttons(channel=channel, text=text, thread_ts=thread_ts, blocks=blocks)
        self.out.flush()

    def offer_buttons(
        self, *, channel: str, text: str, thread_ts: str | None, blocks: list[dict[str, Any]] | None
    ) -> None:
        """An ephemeral message's buttons get a number too, so that `/click` reaches them."""
        m = ConsoleMessage(0, channel, self.new_ts(), BOT_USER, text, thread_ts, blocks or [], ephemeral=True)
        if not m.buttons():
            return
        m.number = next(self._numbers)
        self.messages[(channel, m.ts)] = m
        labels = "[" + "] [".join(b["text"]["text"] for b in m.buttons()) + "]"
        print(f"   {labels}   (/click {m.number} <button>)", file=self.out)

    async def user(self, user_id: str) -> UserInfo | None:
        return self.users.get(user_id)


def _name(user: str) -> str:
    return {YOU: "you", "UGUEST": "guest", "USTRANGER": "stranger"}.get(user, user)


def _channel_name(channel: str) -> str:
    return {DM: "DM", GENERAL: "#general"}.get(channel, f"#{channel}")


class Console:
    def __init__(self, settings: Settings, *, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.surface = ConsoleSurface(out=self.out)
        self.surface.users = {
            YOU: UserInfo(YOU, TEAM),
            "UGUEST": UserInfo("UGUEST", TEAM, is_restricted=True),
            "USTRANGER": UserInfo("USTRANGER", "TOTHER", is_stranger=True),
        }
        self.services: Services = build_services(settings, self.surface)
        client = AsyncWebClient(base_url="http://127.0.0.1:9/")  # never called: no Slack here
        self.bolt = build_app(
            self.services.intake,
            self.services.controls,
            client=client,
            signing_secret=None,
            authorize=console_authorize(BOT_USER, TEAM),
        )
        self.channel = DM
        self.thread: str | None = None
        self.user = YOU

    def say(self, text: str) -> None:
        print(text, file=self.out)
        self.out.flush()

    async def run(self, stdin: TextIO) -> None:
        await self.services.db.migrate()
        interactive = stdin.isatty()
        self._greet()
        background = asyncio.create_task(self.services.worker.run_forever()) if interactive else None
        try:
            while True:
                line = await self._read(stdin, interactive)
                if line is None:
                    break
                if not await self.handle(line):
                    break
                if not interactive:
                    await self.settle()
        finally:
            if background is not None:
                await self.services.worker.stop()
                background.cancel()
            await self.settle()
            await self.services.close()

    async def settle(self) -> None:
        """Finish what the last line started: runs, edits, the outcome."""
        await self.services.worker.run_until_idle(timeout=600)
        await self.services.presenter.drain()

    async def _read(self, stdin: TextIO, interactive: bool) -> str | None:
        if interactive:
            try:
                return await asyncio.to_thread(input, self._prompt())
            except EOFError:
                return None
        line = stdin.readline()
        if not line:
            return None
        line = line.rstrip("\n")
        if line.strip():
            print(f"{self._prompt()}{line}", file=self.out)
        return line

    def _prompt(self) -> str:
        where = _channel_name(self.channel)
        if self.thread:
            parent = self.surface.messages.get((self.channel, self.thread))
            where += f" ▸ thread {parent.number if parent else '?'}"
        return f"{_name(self.user)} @ {where}> "

    def _greet(self) -> None:
        config = self.services.config
        planner = (
            "offline planner (no OPENAI_API_KEY)"
            if self.services.settings.openai_api_key is None
            else self.services.settings.chatops_model
        )
        agents = ", ".join(
            f"{a.name}{' (default)' if a is config.default_agent else ''}"
            + (f" serving {' '.join(a.channels)}" if a.channels else "")
            for a in config.agents
        )
        self.say(f"chatops console: agents {agents}; planner: {planner}. /help for commands.")

    async def handle(self, line: str) -> bool:
        """One typed line. False means quit."""
        text = line.strip()
        if not text:
            return True
        if text in ("/quit", "/exit"):
            return False
        if text == "/help":
            self.say(HELP)
        elif text == "/dm":
            self.channel, self.thread = DM, None
        elif text == "/top":
            self.thread = None
        elif m := re.fullmatch(r"/join\s+#?(\S+)", text):
            self.channel, self.thread = ("CGENERAL" if m.group(1) == "general" else m.group(1)), None
        elif m := re.fullmatch(r"/thread\s+(\d+)", text):
            self._enter_thread(int(m.group(1)))
        elif m := re.fullmatch(r"/click\s+(\d+)\s+(.+)", text):
            await self._click(int(m.group(1)), m.group(2))
        elif m := re.fullmatch(r"/as\s+(you|guest|stranger)", text):
            self.user = {"you": YOU, "guest": "UGUEST", "stranger": "USTRANGER"}[m.group(1)]
        elif m := re.fullmatch(r"/agent(?:\s+(.*))?", text):
            await self._command(m.group(1) or "")
        elif text.startswith("/"):
            self.say("Unknown console command; /help lists them.")
        else:
            await self._message(text)
        return True

    def _enter_thread(self, number: int) -> None:
        m = self.surface.by_number(number)
        if m is None:
            self.say(f"There is no message {number}.")
            return
        self.channel, self.thread = m.channel, m.thread_ts or m.ts

    async def _message(self, text: str) -> None:
        text = re.sub(r"@chatops\b", f"<@{BOT_USER}>", text)
        m = self.surface.add(channel=self.channel, user=self.user, text=text, thread_ts=self.thread)
        self.surface.show(m)
        event: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "text": text,
            "ts": m.ts,
            "channel": self.channel,
            "event_ts": m.ts,
            "team": TEAM,
            "channel_type": "im" if self.channel == DM else "channel",
        }
        if self.thread:
            event["thread_ts"] = self.thread
        await self._dispatch(self._envelope(event))
        if f"<@{BOT_USER}>" in text and self.channel != DM:
            mention = {**event, "type": "app_mention"}
            mention.pop("channel_type")
            await self._dispatch(self._envelope(mention))

    async def _command(self, text: str) -> None:
        body = {
            "token": "console",
            "team_id": TEAM,
            "channel_id": self.channel,
            "user_id": self.user,
            "command": "/agent",
            "text": text,
            "trigger_id": f"console.{uuid.uuid4().hex}",
            "response_url": "http://127.0.0.1:9/",
            "api_app_id": "ACONSOLE",
        }
        print(f"   /agent {text}", file=self.out)
        response = await self._dispatch(body)
        reply = _ack_text(response.body)
        if reply:
            self.say(f"   (only you) chatops: {reply}")
            self.surface.offer_buttons(
                channel=self.channel, text=reply, thread_ts=None, blocks=_ack_blocks(response.body)
            )

    async def _click(self, number: int, label: str) -> None:
        m = self.surface.by_number(number)
        button = None
        if m is not None:
            wanted = label.strip().lower()
            button = next((b for b in m.buttons() if b["text"]["text"].lower().startswith(wanted)), None)
        if m is None or button is None:
            self.say(f"Message {number} has no button {label!r}.")
            return
        print(
            f"   ({_name(self.user)} clicked [{button['text']['text']}] on message {number})", file=self.out
        )
        team_id = "TOTHER" if self.user == "USTRANGER" else TEAM
        body = {
            "type": "block_actions",
            "user": {"id": self.user, "team_id": team_id},
            "api_app_id": "ACONSOLE",
            "team": {"id": TEAM},
            "container": {
                "type": "message",
                "message_ts": m.ts,
                "channel_id": m.channel,
                "is_ephemeral": m.ephemeral,
            },
            "channel": {"id": m.channel},
            "trigger_id": f"console.{uuid.uuid4().hex}",
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": "console",
                    "value": button.get("value", ""),
                    "type": "button",
                    "action_ts": m.ts,
                }
            ],
        }
        if not m.ephemeral:
            body["message"] = {"ts": m.ts, "thread_ts": m.thread_ts, "text": m.text}
        await self._dispatch(body)

    def _envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "token": "console",
            "team_id": TEAM,
            "api_app_id": "ACONSOLE",
            "type": "event_callback",
            "event": event,
            "event_id": f"EvConsole{uuid.uuid4().hex}",
            "event_time": 0,
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    async def _dispatch(self, body: dict[str, Any]) -> Any:
        request = AsyncBoltRequest(body=json.dumps(body), mode="socket_mode")
        return await self.bolt.async_dispatch(request)


def _ack_blocks(body: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return []
    return list(data.get("blocks") or []) if isinstance(data, dict) else []


def _ack_text(body: str) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    return str(data.get("text") or "") if isinstance(data, dict) else ""
