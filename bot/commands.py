"""Chat commands: plain words (or `/agent <subcommand>`) that control agents, not requests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Verb = Literal["undo", "pause", "resume", "status", "summary", "help"]


@dataclass(frozen=True)
class Command:
    verb: Verb
    target: str | None = None
    """An agent name, "all", or a run number (undo); None means "the one here"."""


_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_FORMS: list[tuple[Verb, re.Pattern[str]]] = [
    ("undo", re.compile(r"^undo(?:\s+(?:run\s+)?#?(?P<target>\d+))?$")),
    ("pause", re.compile(r"^pause(?:\s+(?P<all>all)(?:\s+agents)?|\s+agent(?:\s+(?P<target>[\w-]+))?)?$")),
    ("resume", re.compile(r"^resume(?:\s+(?P<all>all)(?:\s+agents)?|\s+agent(?:\s+(?P<target>[\w-]+))?)?$")),
    ("status", re.compile(r"^status$")),
]
# Through `/agent` the agent name may follow the verb directly: `/agent pause ops`.
_SLASH_ONLY: list[tuple[Verb, re.Pattern[str]]] = [
    ("pause", re.compile(r"^pause\s+(?P<target>[\w-]+)$")),
    ("resume", re.compile(r"^resume\s+(?P<target>[\w-]+)$")),
    ("summary", re.compile(r"^summary(?:\s+(?P<target>\d{4}-\d{2}-\d{2}))?$")),
    ("help", re.compile(r"^help$")),
]


def parse(text: str, *, slash: bool = False) -> Command | None:
    """The command a whole message is, or None when it is an ordinary request."""
    words = " ".join(_MENTION.sub(" ", text).split()).lower().rstrip(".!")
    for verb, pattern in _FORMS + (_SLASH_ONLY if slash else []):
        m = pattern.match(words)
        if m is None:
            continue
        groups = m.groupdict()
        if groups.get("all"):
            return Command(verb, "all")
        return Command(verb, groups.get("target"))
    return None
