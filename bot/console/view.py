"""How a message reads in the terminal: as a person sees it in Slack, one line per line.

Slack's markup for people and channels (`<@U123>`, `<#C123|ops>`), links and escaping
becomes what Slack would display (`@you`, `#ops`); the emoji the desk uses become emoji.
A message is labelled with its number (or "only visible to you"), where it is, and who
wrote it; a thread reply is indented under its thread; buttons are listed with the
`/click` that presses them. An edit prints the first line and only the lines that changed.
"""

from __future__ import annotations

import re

from bot.console.workspace import ConsoleMessage, Workspace, channel_name, user_name

EMOJI = {
    "arrow_forward": "▶️",
    "double_vertical_bar": "⏸️",
    "eyes": "👀",
    "gear": "⚙️",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "leftwards_arrow_with_hook": "↩️",
    "memo": "📝",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "raised_hand": "✋",
    "warning": "⚠️",
    "white_check_mark": "✅",
    "x": "❌",
    "+1": "👍",
    "-1": "👎",
}
INDENT = "    "
_ANGLE = re.compile(r"<([^<>]+)>")
_EMOJI = re.compile(r":([a-z0-9_+-]+):")


def readable(text: str) -> str:
    """Slack's message markup as Slack displays it."""
    text = _ANGLE.sub(_angle, text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _angle(m: re.Match[str]) -> str:
    inner = m.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return f"@{label or user_name(target[1:])}"
    if target.startswith("#"):
        return f"#{label}" if label else channel_name(target[1:])
    if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S123|@ops>
        special = label or target[1:].split("^")[0]
        return special if special.startswith("@") else f"@{special}"
    if "://" in target or target.startswith("mailto:"):
        return f"{label} ({target})" if label and label != target else target
    return m.group(0)


def where(m: ConsoleMessage, workspace: Workspace) -> str:
    """`#ops`, or `#ops ▸ thread 3` for a reply in the thread of message 3."""
    place = channel_name(m.channel)
    if not m.in_thread:
        return place
    parent = workspace.thread_of(m)
    return f"{place} ▸ thread {parent.number if parent and parent.number else '(earlier session)'}"


def status_line(workspace: Workspace, channel: str, thread_ts: str, status: str) -> str:
    """A thread's loading status ("chatops is thinking…"), under the thread it is shown in (the
    loading messages Slack would rotate through are left out: a terminal line cannot rotate)."""
    parent = workspace.get(channel, thread_ts)
    place = channel_name(channel) + (f" ▸ thread {parent.number}" if parent and parent.number else "")
    return f"{INDENT}… {place} · chatops {status}"


def indent_of(m: ConsoleMessage) -> str:
    return INDENT if m.in_thread else ""


def show(m: ConsoleMessage, workspace: Workspace, *, edited: bool = False, note: str = "") -> str:
    """The lines that show `m` (all of it, or for an edit what changed), and remember them."""
    body = readable(m.text).splitlines() or [""]
    labels = m.labels()
    buttons = _buttons_line(m, labels) if labels else ""
    previous, previous_buttons = m.shown, m.shown_buttons
    m.shown, m.shown_buttons = body, buttons
    rest = body[1:]
    if not edited:
        rest += [buttons] if buttons else []
    else:
        rest = [line for line in rest if line not in previous]
        if buttons != previous_buttons:
            rest.append(buttons or "(its buttons are gone)")
    if m.visible_to is not None:
        handle = f", {m.handle}" if m.handle else ""
        label = f"(only visible to {user_name(m.visible_to)}{handle})"
    else:
        label = f"({m.number}{', edited' if edited else ''}{note})"
    indent = indent_of(m)
    first = f"{indent}{label} {where(m, workspace)} · {user_name(m.user)}: {body[0]}"
    return "\n".join([first, *(f"{indent}{INDENT}{line}" for line in rest)])


def _buttons_line(m: ConsoleMessage, labels: list[str]) -> str:
    example = labels[0].split()[0].lower() if labels[0].split() else "<button>"
    return " ".join(f"[{label}]" for label in labels) + f"   /click {m.ref} {example}"
