"""The terminal: typed lines with editing and history, piped lines, and a screen that
prints above the prompt.

Everything the console prints goes through one `Screen`. While a prompt is shown,
output (a status message being edited, an outcome arriving, a log line) is printed
through prompt_toolkit's `in_terminal`: the prompt and the half-typed line are erased,
the output is printed, and the prompt is drawn again below it, so the two never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import in_terminal
from prompt_toolkit.application.current import get_app_or_none
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from agents.redaction import Redactor

HISTORY_FILE = ".chatops_history"
"""In the working directory, beside the default database (chatops.db) and chatops.toml: the
lines typed name this workspace's channels, agents and runs, so they belong with it."""
COMMANDS = ["/agent", "/as", "/click", "/dm", "/help", "/join", "/quit", "/thread", "/top"]


class Screen:
    """Where the console prints: straight to `out`, or above the prompt while one is shown."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.redactor = Redactor()
        """Set to the process's one Redactor: the console's screen is where its text leaves."""
        self._queue: list[str] = []
        self._printing: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def print(self, text: str) -> None:
        """Print `text` (and a newline), in order with everything printed before."""
        text = self.redactor.clean(text)
        app = get_app_or_none()
        if not self._queue and (app is None or not app.is_running):
            self._write(text)  # no prompt on the screen: nothing to erase
            return
        self._queue.append(text)
        if self._printing is None or self._printing.done():
            self._printing = asyncio.get_running_loop().create_task(self._print_queued())

    def print_threadsafe(self, text: str) -> None:
        """`print` from any thread (a log record may come from a database driver's thread)."""
        loop = self._loop
        if loop is None or _on(loop):
            self.print(text)
            return
        try:
            loop.call_soon_threadsafe(self.print, text)
        except RuntimeError:  # the loop is closed: nothing is drawn any more
            self._write(text)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the prompt runs on, for `print_threadsafe`."""
        self._loop = loop

    async def flush(self) -> None:
        """Wait until everything printed so far is on the terminal."""
        while self._printing is not None and not self._printing.done():
            await self._printing

    async def _print_queued(self) -> None:
        async with in_terminal():  # erase the prompt; it is drawn again when this block ends
            while self._queue:
                self._write(self._queue.pop(0))

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class Lines(Protocol):
    """Where the console's lines come from."""

    interactive: bool
    """A person typing (work goes on in the background) rather than a script."""

    async def read(self, prompt: str) -> str | None:
        """The next line, or None: the end (Ctrl-D, Ctrl-C, end of input)."""
        ...


class PipedLines:
    """Lines from a pipe or a file, one at a time (a script, a test)."""

    interactive = False

    def __init__(self, stdin: TextIO) -> None:
        self.stdin = stdin

    async def read(self, prompt: str) -> str | None:
        line = self.stdin.readline()
        return line.rstrip("\r\n") if line else None


class TypedLines:
    """Lines a person types: editing, history kept in a file, Ctrl-C or Ctrl-D to quit."""

    interactive = True

    def __init__(self, history: History, *, input: Input | None = None, output: Output | None = None) -> None:
        # erase_when_done: the typed line is replaced by the message as the workspace shows it
        # (with its number), instead of appearing twice.
        self.session: PromptSession[str] = PromptSession(
            history=history,
            erase_when_done=True,
            completer=WordCompleter(COMMANDS, sentence=True),  # Tab completes a console command
            complete_while_typing=False,
            input=input,
            output=output,
        )

    async def read(self, prompt: str) -> str | None:
        try:
            # handle_sigint=False: a SIGINT that does not come from the keyboard (kill -INT)
            # reaches `chatops`'s own handler, which stops the console.
            return await self.session.prompt_async(prompt, handle_sigint=False)
        except (EOFError, KeyboardInterrupt):  # Ctrl-D, Ctrl-C
            return None


def history(directory: Path) -> History:
    """The typed-line history in `directory`, or only in memory when it is not writable."""
    path = directory / HISTORY_FILE
    if os.access(path if path.exists() else directory, os.W_OK):
        return FileHistory(str(path))
    return InMemoryHistory()


@contextlib.contextmanager
def logs_on(screen: Screen) -> Iterator[None]:
    """Log records that would go to the terminal go through `screen` while it is in use."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.__stderr__)
    ]
    screen.attach(asyncio.get_running_loop())
    stream = _ScreenStream(screen)
    previous = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for h, old in zip(handlers, previous, strict=True):
            h.setStream(old)


class _ScreenStream:
    """A text stream whose complete lines go to a Screen."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self._partial = ""

    def write(self, data: str) -> int:
        self._partial += data
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.screen.print_threadsafe(line)
        return len(data)

    def flush(self) -> None:
        pass
