"""Chat commands: plain words (or `/agent <subcommand>`) that control agents, not requests.

`parse` reads a whole message as a command, exactly. `near_miss` reads a short message that
is close to one (a typo, a polite word around it, a synonym of the emergency stop), so that
the person can be asked "did you mean ...?" instead of the words becoming a request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Verb = Literal["undo", "pause", "resume", "status", "summary", "help"]


@dataclass(frozen=True)
class Command:
    verb: Verb
    target: str | None = None
    """An agent name, "all", or a run number (undo); None means "the one here"."""

    def words(self) -> str:
        """The command as a person types it (`pause all agents`, `resume agent ops`)."""
        if self.target is None:
            return self.verb
        if self.target == "all":
            return f"{self.verb} all agents" if self.verb in ("pause", "resume") else f"{self.verb} all"
        if self.verb in ("pause", "resume"):
            return f"{self.verb} agent {self.target}"
        return f"{self.verb} {self.target}"


_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>[:,]?")
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
    words = _words(text).rstrip(".!")
    for verb, pattern in _FORMS + (_SLASH_ONLY if slash else []):
        m = pattern.match(words)
        if m is None:
            continue
        groups = m.groupdict()
        if groups.get("all"):
            return Command(verb, "all")
        return Command(verb, groups.get("target"))
    return None


def _words(text: str) -> str:
    """The message without mentions, lower case, single spaces."""
    return " ".join(_MENTION.sub(" ", text).split()).lower()


# Near-misses ----------------------------------------------------------------------

MAX_WORDS = 5
MAX_CHARS = 40
"""Longer messages are requests, whatever words they share with a command
("stop the api service on staging")."""

POLITE = ("please", "pls", "plz", "kindly", "can you", "could you", "would you", "hey", "ok", "okay")
POLITE_AFTER = ("please", "pls", "plz", "now", "thanks", "thank you")
EMERGENCY_STOP = {
    "stop",
    "stop all",
    "stop all agents",
    "stop agents",
    "stop the agents",
    "stop everything",
    "halt",
    "halt all",
    "halt all agents",
    "halt everything",
    "emergency stop",
    "freeze",
    "freeze all agents",
}
"""Words people use for the emergency stop (`pause all agents`)."""

_PHRASES = [
    "undo",
    "pause",
    "pause agent",
    "pause all",
    "pause all agents",
    "resume",
    "resume agent",
    "resume all",
    "resume all agents",
    "status",
]


def near_miss(text: str, *, agents: Iterable[str] = ()) -> Command | None:
    """The command a short message is close to but not exactly, or None.

    Only short messages count, and only when, once a polite word or two is taken away,
    they are a command, a synonym of the emergency stop, or within a typo of a command
    phrase (one edit for a short phrase, two for a long one; a swap of two letters is one).
    """
    said = _words(text).strip(".!?,;: ")
    if not said or parse(text) is not None:
        return None
    if len(said) > MAX_CHARS or len(said.split()) > MAX_WORDS:
        return None
    core = _unpolite(said)
    if core in EMERGENCY_STOP:
        return Command("pause", "all")
    names = {a.lower() for a in agents}
    exact = _named(core, names)
    if exact is not None:
        return exact
    phrases = _PHRASES + [f"{verb} agent {name}" for name in sorted(names) for verb in ("pause", "resume")]
    distance, phrase = min((_distance(core, p), p) for p in phrases)
    if distance <= (2 if len(phrase) >= 12 else 1):
        return _named(phrase, names)
    return None


def _unpolite(words: str) -> str:
    changed = True
    while changed:
        changed = False
        for polite in POLITE:
            if words.startswith(polite + " "):
                words, changed = words[len(polite) + 1 :], True
        for polite in POLITE_AFTER:
            if words.endswith(" " + polite):
                words, changed = words[: -len(polite) - 1], True
        words = words.strip(".!?,;: ")
    return words


def _named(words: str, names: set[str]) -> Command | None:
    """A command these words are exactly; an agent named without "agent" must exist."""
    command = parse(words)
    if command is not None:
        return command
    command = parse(words, slash=True)
    if command is not None and command.verb in ("pause", "resume") and command.target in names:
        return command
    return None


def _distance(a: str, b: str) -> int:
    """Edit distance where swapping two neighbouring letters counts as one edit ("pasue")."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
