"""The console itself: read a line, play it into the workspace, show what comes back.

A person types at a prompt (line editing, history, Ctrl-C or Ctrl-D to quit) while runs
go on in the background; a script pipes lines in, and the console finishes the work each
line starts before reading the next, so a scripted session always reads the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.console import payloads, view
from bot.console.surface import ConsoleSurface
from bot.console.terminal import Lines, PipedLines, Screen, TypedLines, history, logs_on
from bot.console.workspace import (
    BOT_USER,
    DM,
    GENERAL,
    NAMES,
    PEOPLE,
    TEAM,
    YOU,
    ConsoleMessage,
    channel_id,
    channel_name,
    user_name,
)
from bot.services import Services, build_services
from bot.settings import Settings
from bot.slack_app import build_app, console_authorize
from storage import runs

HELP = """\
Console commands:
  <text>              a message where you are (in the DM with the bot, every message is a request)
  @chatops <text>     mention the bot (in a channel)
  /agent <text>       the slash command
  /join <channel>     go to a channel (agents' channels are listed at start); /dm back to the DM
  /thread <n>         reply in the thread of message n; /top to leave the thread
  /click <n> <button> press a button on message n (Undo, Approve, Deny, Pause, and Good or Bad
                      to vote on an answer); e1, e2... for buttons on a message only you see
  /as <user>          speak as another user: you, guest, stranger (for testing permissions)
  /help, /quit        (Ctrl-D and Ctrl-C quit too; runs in flight resume on the next start)"""

log = logging.getLogger(__name__)

_MENTIONS = {f"@{name}": user for user, name in NAMES.items()}


class Console:
    def __init__(self, settings: Settings, *, out: TextIO | None = None) -> None:
        self.screen = Screen(out or sys.stdout)
        self.surface = ConsoleSurface(self.screen)
        self.workspace = self.surface.workspace
        self.services: Services = build_services(settings, self.surface)
        self.screen.redactor = self.services.runtime.redactor
        client = AsyncWebClient(base_url="http://127.0.0.1:9/")  # never called: no Slack here
        self.bolt = build_app(
            self.services.intake,
            self.services.controls,
            client=client,
            signing_secret=None,
            authorize=console_authorize(BOT_USER, TEAM),
            redactor=self.services.runtime.redactor,
        )
        self.channel = DM
        self.thread: str | None = None
        self.user = YOU

    def say(self, text: str) -> None:
        self.screen.print(text)

    async def run(self, stdin: TextIO | None = None, *, lines: Lines | None = None) -> None:
        """Until the lines end, /quit, Ctrl-C or Ctrl-D (or cancellation: SIGINT, SIGTERM).

        `lines`: where lines come from; by default typed at a prompt when `stdin` is a terminal
        (history in ./.chatops_history), otherwise read from `stdin` one by one.
        """
        if lines is None:
            stdin = stdin or sys.stdin
            lines = TypedLines(history(Path.cwd())) if stdin.isatty() else PipedLines(stdin)
        await self.services.db.migrate()
        self._greet()
        worker: asyncio.Task[None] | None = None
        try:
            await self.services.presenter.redeliver()  # outcomes an earlier session left unposted
            if lines.interactive:
                worker = asyncio.create_task(self.services.worker.run_forever())
            else:
                await self.settle()  # runs an earlier session left in flight, before the script
            with logs_on(self.screen) if lines.interactive else contextlib.nullcontext():
                while (line := await lines.read(self._prompt())) is not None:
                    if not await self.handle(line):
                        break
                    if not lines.interactive:
                        await self.settle()
        finally:
            await self._quit(worker)

    async def settle(self) -> None:
        """Finish what the last line started: runs, edits, the outcome."""
        await self.services.worker.run_until_idle(timeout=600)
        await self.services.presenter.drain()
        await self.screen.flush()

    async def _quit(self, worker: asyncio.Task[None] | None) -> None:
        """Stop at once: runs in flight are cancelled where they are; their journal and lease
        stay, and the next start (of any chatops process here) resumes them."""
        await self.services.worker.stop(grace=0)
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        try:
            async with self.services.db.read() as session:
                left = [r.id for r in await runs.runs_in_flight(session=session)]
        except Exception:  # broad on purpose: only for the goodbye line; quitting goes on
            log.warning("could not count the runs in flight", exc_info=True)
            left = []
        await self.services.close()
        if left:
            ids = ", ".join(f"#{i}" for i in left)
            what = (
                f"1 run in flight ({ids}): it keeps its journal and resumes"
                if len(left) == 1
                else f"{len(left)} runs in flight ({ids}): they keep their journal and resume"
            )
            self.say(f"Quitting with {what} on the next start.")
        await self.screen.flush()

    def _prompt(self) -> str:
        where = channel_name(self.channel)
        if self.thread:
            parent = self.workspace.get(self.channel, self.thread)
            where += f" ▸ thread {parent.number if parent else '?'}"
        return f"{user_name(self.user)} @ {where}> "

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
        """One line, typed or piped. False means quit."""
        text = line.strip()
        if not text:
            return True
        if not text.startswith("/"):
            await self._message(text)
            return True
        self.say(f"{self._prompt()}{text}")  # a console command: shown as typed, once
        if text in ("/quit", "/exit"):
            return False
        if text == "/help":
            self.say(HELP)
        elif text == "/dm":
            self.channel, self.thread = DM, None
        elif text == "/top":
            self.thread = None
        elif m := re.fullmatch(r"/join\s+(\S+)", text):
            self.channel, self.thread = channel_id(m.group(1)), None
        elif m := re.fullmatch(r"/thread\s+\(?(\d+)\)?", text):
            self._enter_thread(int(m.group(1)))
        elif m := re.fullmatch(r"/click\s+(\S+)(?:\s+(.+))?", text):
            await self._click(m.group(1), m.group(2) or "")
        elif m := re.fullmatch(r"/as\s+(you|guest|stranger)", text):
            self.user = PEOPLE[m.group(1)]
        elif m := re.fullmatch(r"/agent(?:\s+(.*))?", text):
            await self._command(m.group(1) or "")
        else:
            self.say("Unknown console command; /help lists them.")
        return True

    def _enter_thread(self, number: int) -> None:
        m = self.workspace.find(str(number))
        if m is None or m.number is None:
            self.say(f"There is no message {number}.")
            return
        self.channel, self.thread = m.channel, m.thread_ts or m.ts

    async def _message(self, text: str) -> None:
        m = self.workspace.post(
            channel=self.channel, user=self.user, text=_as_slack(text), thread_ts=self.thread
        )
        self.say(view.show(m, self.workspace))  # the line typed, as the workspace shows it
        for body in payloads.message_events(m):
            await self._dispatch(body)

    async def _command(self, text: str) -> None:
        body = payloads.slash_command(channel=self.channel, user=self.user, text=text)
        response = await self._dispatch(body)
        answer = payloads.ack_answer(response.body)
        if not (answer.text or answer.blocks):
            return
        if answer.public:  # Slack shows the command and its answer to the whole channel
            m = self.workspace.post(
                channel=self.channel, user=BOT_USER, text=answer.text, blocks=answer.blocks
            )
            self.say(view.show(m, self.workspace))
        else:
            self.surface.show_ephemeral(
                channel=self.channel, user=self.user, text=answer.text, blocks=answer.blocks
            )

    async def _click(self, ref: str, label: str) -> None:
        m = self.workspace.find(ref)
        problem = _click_problem(ref, m, label, self.user)
        if problem:
            self.say(problem)
            return
        assert m is not None
        button = _button(m, label)
        assert button is not None
        shown = button["text"]["text"]
        self.say(f"{view.indent_of(m)}{user_name(self.user)} pressed [{shown}] on ({m.ref})")
        await self._dispatch(payloads.button_press(user=self.user, message=m, button=button))

    async def _dispatch(self, body: dict[str, Any]) -> Any:
        request = AsyncBoltRequest(body=json.dumps(body), mode="socket_mode")
        return await self.bolt.async_dispatch(request)


def _as_slack(text: str) -> str:
    """What a Slack client sends for a typed line: &, < and > escaped, mentions as ids."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(
        r"(?<![\w@])@(chatops|you|guest|stranger)\b",
        lambda m: f"<@{_MENTIONS['@' + m.group(1)]}>",
        text,
    )
    return re.sub(r"(?<![\w#])#general\b", f"<#{GENERAL}|general>", text)


def _button(m: ConsoleMessage, label: str) -> dict[str, Any] | None:
    """The button `label` names: its exact label, else the one label it begins, any case."""
    wanted = label.strip().lower()
    buttons = m.buttons()
    exact = [b for b in buttons if b["text"]["text"].lower() == wanted]
    if exact:
        return exact[0]
    starting = [b for b in buttons if b["text"]["text"].lower().startswith(wanted)]
    return starting[0] if len(starting) == 1 else None


def _click_problem(ref: str, m: ConsoleMessage | None, label: str, user: str) -> str | None:
    """Why `/click ref label` presses nothing, in words; None when it presses a button."""
    if m is None:
        if ref.lower().startswith("e"):
            return f"There is no message {ref}: e1, e2... are the messages with buttons only you see."
        return f"There is no message {ref}."
    if m.deleted:
        return f"Message {m.ref} was deleted."
    if m.visible_to is not None and m.visible_to != user:
        return f"Message {m.ref} is only visible to {user_name(m.visible_to)}."
    labels = m.labels()
    if not label.strip() and labels:
        example = (labels[0].split() or ["<button>"])[0].lower()
        return f"Which button? Message {m.ref} has {_listed(labels)}: /click {m.ref} {example}"
    if label.strip() and _button(m, label) is not None:
        return None
    wanted = label.strip().lower()
    gone = [b for b in m.removed_buttons if b.lower().startswith(wanted)]
    if gone:
        now = f"; it has {_listed(labels)} now" if labels else ""
        return f"The [{gone[0]}] button of message {m.ref} is gone: the message was edited since{now}."
    if not labels and m.removed_buttons:
        taken = _listed(sorted(m.removed_buttons))
        return f"Message {m.ref} has no buttons any more: an edit took {taken} away."
    if not labels:
        return f"Message {m.ref} has no buttons."
    several = [b for b in labels if b.lower().startswith(wanted)]
    if len(several) > 1:
        return f"Message {m.ref} has several buttons starting with {label!r}: {_listed(several)}."
    return f"Message {m.ref} has no button called {label!r}; it has {_listed(labels)}."


def _listed(labels: list[str]) -> str:
    return " ".join(f"[{b}]" for b in labels)
