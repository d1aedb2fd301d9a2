"""The local console, played as a person would: lines piped in (a script), or typed at a
prompt (prompt_toolkit's pipe input and a recording dummy output, no real terminal).

Each test reads the console's output as the person would read it: each message once, people
and channels by name, a message only you see marked so, the prompt never drawn through
what is printed, `/click` saying what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeModel, wait_until
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from sqlmodel import select

from bot.console import Console, ConsoleSurface
from bot.console.terminal import HISTORY_FILE, PipedLines, Screen, TypedLines, history
from bot.console.view import readable
from bot.console.workspace import DM, YOU
from bot.settings import Settings
from storage.models import Run, RunStatus, Step, StepKind, StepStatus

APPROVE_EVERYTHING = """
[[agents]]
name = "ops"
default = true
autonomy = "approve"
actions = ["ticket_create"]
"""

SLOW = """
[[agents]]
name = "ops"
default = true
actions = ["wait_for_it"]

[[actions]]
name = "wait_for_it"
description = "Takes a minute"
kind = "command"
run = "sleep 60"
undo = "true"
"""


def settings(tmp_path: Path, config: str | None = None) -> Settings:
    fields: dict[str, Any] = {"chatops_edit_interval": 0.0, "chatops_poll_seconds": 0.05}
    if config is not None:
        path = tmp_path / "chatops.toml"
        path.write_text(config)
        fields["chatops_config"] = str(path)
    return Settings(**fields)


async def session(tmp_path: Path, script: str, *, config: str | None = None) -> str:
    """Pipe `script` into a console, as `printf ... | chatops console` does; its output."""
    out = io.StringIO()
    await Console(settings(tmp_path, config), out=out).run(lines=PipedLines(io.StringIO(script)))
    return out.getvalue()


def number_of(output: str, pattern: str) -> str:
    """The number of the message whose first line matches `pattern`."""
    m = re.search(r"^\s*\((\d+)\) [^\n]*" + pattern, output, re.MULTILINE)
    assert m, f"no message matching {pattern!r} in:\n{output}"
    return m.group(1)


# Scripted sessions -------------------------------------------------------------------------


async def test_a_scripted_session_shows_every_message_once(tmp_path: Path) -> None:
    output = await session(tmp_path, "create a ticket for x\nstatus\n")

    typed = [line for line in output.splitlines() if "create a ticket for x" in line]
    assert typed == ["(1) DM · you: create a ticket for x"], output  # not echoed, then shown again
    new = re.findall(r"^\s*\((\d+)\) ", output, re.MULTILINE)  # first showings; edits say "(n, edited)"
    assert len(new) == len(set(new)) and new, output
    assert re.search(r"^    \(\d+\) DM ▸ thread 1 · chatops: ✅ Run #1 \(ops\) finished\.$", output, re.M)
    assert "[Undo] [Good] [Bad]   /click" in output
    assert "*Runs in flight*: none" in output


async def test_an_edit_shows_what_changed_and_an_edit_to_the_same_text_shows_nothing() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(Screen(out))
    buttons = [
        {
            "type": "actions",
            "elements": [{"type": "button", "action_id": "chatops_pause", "text": {"text": "Pause ops"}}],
        }
    ]
    ts = await surface.post(channel=DM, text="queued\nfooter", blocks=buttons)
    await surface.update(channel=DM, ts=ts, text="queued\nfooter", blocks=buttons)
    await surface.update(channel=DM, ts=ts, text="finished\nfooter\nwhat was done")

    assert out.getvalue().splitlines() == [
        "(1) DM · chatops: queued",
        "    footer",
        "    [Pause ops]   /click 1 pause",
        "(1, edited) DM · chatops: finished",
        "    what was done",
        "    (its buttons are gone)",
    ]


def test_mentions_channels_links_and_escapes_read_as_slack_shows_them() -> None:
    text = (
        "<@UCONSOLE> asked <@UCHATOPS> in <#C123> and <#C9|ops>: <!here> "
        "see <https://x.io|the doc> &lt;b&gt; &amp;"
    )
    assert readable(text) == "@you asked @chatops in #C123 and #ops: @here see the doc (https://x.io) <b> &"


async def test_mentions_are_names_in_every_message_and_the_typed_mention_is_shown_once(
    tmp_path: Path,
) -> None:
    output = await session(tmp_path, "/join general\n@chatops pause all agents\n@chatops resume all\n")

    assert "<@" not in output and "<#" not in output, output
    assert output.count("@chatops pause all agents") == 1, output
    assert "(1) #general · you: @chatops pause all agents" in output
    assert "paused by @you" in output and "resumed by @you" in output


async def test_public_thread_replies_sit_under_their_thread_and_ephemeral_ones_are_not_numbered(
    tmp_path: Path,
) -> None:
    output = await session(
        tmp_path,
        "/join general\n/as guest\n@chatops pause all agents\n/as you\n/agent status\n/agent pause all\n",
    )

    # A refusal goes only to the one refused, where they typed (here: the channel, not a thread).
    refusal = "(only visible to guest) #general · chatops: Sorry @guest, you can't pause agents"
    assert refusal in output, output
    assert "(only visible to you) #general · chatops: *Agents*" in output  # the /agent status answer
    # The public answer to /agent pause all takes the next number: the two only-you messages took none.
    assert re.search(r"^\(2\) #general · chatops: ⏸️ All agents are paused by @you", output, re.M), output


async def test_a_slash_command_request_runs_and_reports_in_its_own_thread(tmp_path: Path) -> None:
    output = await session(tmp_path, "/agent create a ticket for the printer\n")

    assert "(only visible to you) DM · chatops: Run #1 for *ops*: I'll report in the thread." in output
    opener = number_of(output, r"DM · chatops: @you asked via `/agent`: create a ticket for the printer")
    assert re.search(
        rf"^    \(\d+\) DM ▸ thread {opener} · chatops: ✅ Run #1 \(ops\) finished", output, re.M
    )


class Chat:
    """A console taking one line at a time, finishing its work before the next (as a script)."""

    def __init__(self, console: Console, out: io.StringIO) -> None:
        self.console, self.out = console, out

    async def push(self, line: str) -> str:
        """What the console printed for `line`."""
        mark = len(self.out.getvalue())
        await self.console.handle(line)
        await self.console.settle()
        return self.out.getvalue()[mark:]


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Any]:
    consoles: list[Console] = []

    async def start(config: str | None = None) -> Chat:
        out = io.StringIO()
        console = Console(settings(tmp_path, config), out=out)
        await console.services.db.migrate()
        consoles.append(console)
        return Chat(console, out)

    try:
        yield start
    finally:
        for console in consoles:
            await console.services.close()


async def test_click_errors_name_the_real_problem(chat: Any) -> None:
    c = await chat(APPROVE_EVERYTHING)
    approval = number_of(await c.push("create a ticket for x"), r"wants to run \*ticket_create\*")

    assert await c.push("/click 99 approve") == "you @ DM> /click 99 approve\nThere is no message 99.\n"
    assert "Message 1 has no buttons." in await c.push("/click 1 approve")
    assert f"Message {approval} has no button called 'maybe'; it has [Approve] [Deny]." in await c.push(
        f"/click {approval} maybe"
    )
    assert (
        f"Which button? Message {approval} has [Approve] [Deny]: /click {approval} approve"
        in await c.push(f"/click {approval}")
    )
    approved = await c.push(f"/click {approval} approve")
    assert f"you pressed [Approve] on ({approval})" in approved and "✅ Run #1 (ops) finished." in approved
    assert f"The [Deny] button of message {approval} is gone: the message was edited since." in await c.push(
        f"/click {approval} deny"
    )
    assert f"Message {approval} has no buttons any more: an edit took [Approve] [Deny] away." in await c.push(
        f"/click {approval} maybe"
    )
    assert "There is no message e1: e1, e2... are the messages with buttons only you see." in await c.push(
        "/click e1 undo"
    )


async def test_buttons_on_a_message_only_you_see_are_pressed_by_its_handle(chat: Any) -> None:
    c = await chat()
    undo = {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "chatops_undo", "value": "7", "text": {"text": "Undo run #7"}}
        ],
    }
    await c.console.surface.post_ephemeral(channel=DM, user=YOU, text="Recent runs", blocks=[undo])
    shown = c.out.getvalue()
    pressed = await c.push("/click e1 undo")

    assert (
        shown == "(only visible to you, e1) DM · chatops: Recent runs\n    [Undo run #7]   /click e1 undo\n"
    )
    assert "(only visible to you) DM · chatops: There is no run #7 here." in pressed  # it reached the desk


async def test_quitting_with_a_run_in_flight_says_it_resumes_on_the_next_start(tmp_path: Path) -> None:
    output = await session(tmp_path, "create a ticket for x\n", config=APPROVE_EVERYTHING)

    assert output.rstrip().endswith(
        "Quitting with 1 run in flight (#1): it keeps its journal and resumes on the next start."
    ), output


# Typed at a prompt --------------------------------------------------------------------------


class Terminal(DummyOutput):
    """A dummy terminal that notes when the prompt is drawn and erased, and what is printed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def write(self, data: str) -> None:
        if data:
            self.events.append(("draw", data))

    write_raw = write

    def erase_down(self) -> None:
        self.events.append(("erase", ""))

    def printed(self, text: str) -> int:
        self.events.append(("print", text))
        return len(text)

    def garbled(self) -> list[str]:
        """What was printed while the prompt was on the screen (it should have been erased first)."""
        drawn, bad = False, []
        for kind, data in self.events:
            if kind == "draw":
                drawn = True
            elif kind == "erase":
                drawn = False
            elif drawn:
                bad.append(data)
        return bad

    def drawn_after_last_print(self) -> str:
        last = max(i for i, (kind, _) in enumerate(self.events) if kind == "print")
        return "".join(data for kind, data in self.events[last:] if kind == "draw")


class Screenful(io.StringIO):
    """The console's output stream, noting each write on the terminal's timeline too."""

    def __init__(self, terminal: Terminal) -> None:
        super().__init__()
        self.terminal = terminal

    def write(self, s: str) -> int:
        self.terminal.printed(s)
        return super().write(s)


class Typing:
    """A console with a person at its prompt."""

    def __init__(self, console: Console, lines: TypedLines, pipe: PipeInput, out: Screenful) -> None:
        self.console, self.lines, self.pipe, self.out = console, lines, pipe, out
        self.task = asyncio.create_task(console.run(lines=lines))

    async def prompt(self) -> None:
        """Wait until the prompt is shown and reads keys."""
        await wait_until(lambda: self.lines.session.app.is_running, 20, message="the prompt")

    async def type(self, keys: str) -> None:
        await self.prompt()
        self.pipe.send_text(keys)

    async def sees(self, text: str) -> None:
        await wait_until(lambda: text in self.out.getvalue(), 20, message=lambda: self.out.getvalue())

    async def ended(self) -> None:
        await asyncio.wait_for(self.task, 20)  # bounded, so a hang fails instead of blocking the suite


@pytest.fixture
async def typing(tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Typing] = []

    async def start(*, config: str | None = None, history: Any = None) -> Typing:
        terminal = Terminal()
        pipe = stack.enter_context(create_pipe_input())
        lines = TypedLines(history or InMemoryHistory(), input=pipe, output=terminal)
        out = Screenful(terminal)
        t = Typing(Console(settings(tmp_path, config), out=out), lines, pipe, out)
        started.append(t)
        return t

    with contextlib.ExitStack() as stack:
        try:
            yield start
        finally:
            for t in started:
                t.task.cancel()
                await asyncio.gather(t.task, return_exceptions=True)


async def test_typed_lines_become_messages_once_and_are_kept_in_the_history_file(
    typing: Any, tmp_path: Path
) -> None:
    kept = history(tmp_path)
    assert isinstance(kept, FileHistory) and Path(kept.filename) == tmp_path / HISTORY_FILE
    t = await typing(history=kept)
    await t.type("create a ticket for x\r")
    await t.sees("[Undo]")
    await t.type("\x04")  # Ctrl-D
    await t.ended()

    assert t.out.getvalue().count("create a ticket for x") == 1
    assert "(1) DM · you: create a ticket for x" in t.out.getvalue()
    assert "+create a ticket for x" in (tmp_path / HISTORY_FILE).read_text()
    assert isinstance(history(tmp_path / "not-there"), InMemoryHistory)  # nowhere to write: memory only


async def test_output_from_the_background_is_printed_above_the_prompt_never_through_it(typing: Any) -> None:
    t = await typing()
    await t.type("half typ")
    await wait_until(lambda: "p" in t.out.terminal.drawn_after_last_print(), 20, message="the typed keys")

    await t.console.surface.post(channel=DM, text="an outcome arrives <@UCONSOLE>")  # as the presenter does
    await t.console.screen.flush()
    assert "half typ" in t.out.terminal.drawn_after_last_print()  # the prompt and the line, below it

    await t.type("ed\r")
    await t.sees("you: half typed")
    await t.type("\x03")  # Ctrl-C
    await t.ended()

    assert "(1) DM · chatops: an outcome arrives @you" in t.out.getvalue()
    assert t.out.terminal.garbled() == []


async def test_ctrl_c_quits_at_once_while_a_run_is_in_flight(typing: Any) -> None:
    t = await typing(config=SLOW)
    await t.type("wait_for_it\r")

    async def acting() -> bool:
        async with t.console.services.db.read() as session:
            steps = (await session.exec(select(Step).where(Step.kind == StepKind.action))).all()
        return any(s.status == StepStatus.intent for s in steps)

    await wait_until(acting, 20, message="the run to start its action")
    await t.type("\x03")
    await t.ended()  # did not wait the minute the action takes

    assert (
        t.out.getvalue()
        .rstrip()
        .endswith("Quitting with 1 run in flight (#1): it keeps its journal and resumes on the next start.")
    )
    async with t.console.services.db.read() as session:
        run = (await session.exec(select(Run))).one()
    assert run.status == RunStatus.running and run.worker_id is not None  # leased: the next start resumes it


async def test_cancelling_the_console_quits_it_like_ctrl_c(typing: Any) -> None:
    t = await typing()
    await t.prompt()
    t.task.cancel()  # SIGINT or SIGTERM outside the prompt: `chatops` cancels the console

    with pytest.raises(asyncio.CancelledError):
        await t.ended()
    assert "Traceback" not in t.out.getvalue()


# Slack's AI surface, in text --------------------------------------------------------------


async def test_the_console_shows_the_loading_status_and_the_feedback_buttons_which_click(
    tmp_path: Path,
) -> None:
    first = await session(tmp_path, "create a ticket for the fan noise\n")
    outcome = number_of(first, r"✅ Run #1 \(ops\) finished")
    # While it worked, the thread's loading status; the outcome offers Good and Bad.
    assert re.search(r"^    … DM ▸ thread 1 · chatops is thinking…$", first, re.M), first
    # (The offline planner's steps are quicker than the loading status's pace: one shows.)
    assert f"[Undo] [Good] [Bad]   /click {outcome} undo" in first

    # The same session again (it numbers its messages the same), now clicking them.
    again = tmp_path / "again"
    again.mkdir()
    script = f"create a ticket for the fan noise\n/thread 1\n/click {outcome} good\n/click {outcome} bad\n"
    second = await session(again, script)
    assert "you pressed [Good] on" in second and "you pressed [Bad] on" in second
    # (The same database: this session's run is #2.)
    assert "(only visible to you) DM ▸ thread 1 · chatops: Thanks: your 👍 on run #2 is noted." in second
    assert "chatops: Changed your vote on run #2 to 👎." in second


async def test_with_a_language_model_the_console_shows_the_answer_streamed(tmp_path: Path) -> None:
    with FakeModel() as model:
        model.answer("All **quiet** on the desk.\n" + "\n".join(f"- queue {n}: empty" for n in range(30)))
        fields = {"openai_api_key": "sk-console", "openai_base_url": model.url, "chatops_model": "fake-model"}
        out = io.StringIO()
        console = Console(Settings(**fields, chatops_edit_interval=0.0, chatops_poll_seconds=0.05), out=out)
        await console.run(lines=PipedLines(io.StringIO("how is the desk?\n")))
    output = out.getvalue()
    assert re.search(r"^    \(\d+, streamed\) DM ▸ thread 1 · chatops: ", output, re.M), output
    assert "All **quiet** on the desk." in output
