"""The offline planner: a deterministic stand-in for a language model.

Used when no OPENAI_API_KEY is set, for demos and tests. It understands the
explicit form `action_name key=value key2="two words"` for any tool it is given,
and plain requests for the built-in ticket and Slack actions. Every reply it writes
says it is the offline planner; it never pretends to be a language model.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from agents.model import ToolCall, Turn

LABEL = "offline planner"
_WHO = r"(?P<who>me|myself|<@[A-Z0-9]+(?:\|[^>]*)?>|[A-Z][A-Z0-9]{6,})"


def _user_id(who: str | None, requester: str | None) -> str | None:
    if who is None:
        return None
    if who.lower() in ("me", "myself"):
        return requester
    m = re.match(r"<@([A-Z0-9]+)", who)
    return m.group(1) if m else who


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "ticket_create",
        re.compile(
            r"^(?:please\s+)?(?:create|open|file|make|raise|log)\s+(?:a\s+|an\s+)?(?:new\s+)?"
            r"(?:ticket|issue|bug(?:\s+report)?)\s*(?:for|about|on|regarding|titled|called|:)?\s*"
            r"(?P<title>.+?)"
            r"(?:,?\s+(?:and\s+)?assign(?:ed)?\s+(?:it\s+)?to\s+" + _WHO + r")?"
            r"(?:,?\s+(?:with\s+)?(?P<prio>low|normal|high|urgent)\s+priority)?\s*[.!]?$",
            re.I,
        ),
    ),
    (
        "ticket_close",
        re.compile(
            r"^(?:please\s+)?(?:close|resolve)\s+(?:ticket|issue)\s+#?(?P<id>\d+)"
            r"(?:\s*(?:because|as|with|:|-)\s*(?P<res>.+?))?\s*[.!]?$",
            re.I,
        ),
    ),
    (
        "ticket_comment",
        re.compile(
            r"^(?:please\s+)?(?:add\s+a\s+)?(?:comment|note)\s+(?:on|to)\s+(?:ticket|issue)\s+"
            r"#?(?P<id>\d+)\s*[:,-]?\s*(?:saying\s+)?(?P<text>.+)$",
            re.I,
        ),
    ),
    (
        "ticket_update",
        re.compile(
            r"^(?:please\s+)?assign\s+(?:ticket|issue)\s+#?(?P<id>\d+)\s+to\s+" + _WHO + r"\s*[.!]?$",
            re.I,
        ),
    ),
    (
        "ticket_find",
        re.compile(
            r"^(?:please\s+)?(?:find|search|list|show)(?:\s+me)?(?:\s+(?:all|the))?"
            r"(?:\s+(?P<status>open|closed|in_progress))?\s+(?:tickets|issues)"
            r"(?:\s+(?:about|for|matching|with|mentioning)\s+(?P<q>.+?))?\s*[.?!]?$",
            re.I,
        ),
    ),
    ("slack_reply", re.compile(r"^(?:please\s+)?(?:reply|say)\s*:?\s+(?P<text>.+)$", re.I)),
]


def _plain(name: str, m: re.Match[str], requester: str | None) -> dict[str, Any]:
    g = m.groupdict()
    if name == "ticket_create":
        args: dict[str, Any] = {"title": g["title"].strip().strip('"“”')}
        if g.get("who"):
            args["assignee"] = _user_id(g["who"], requester)
        if g.get("prio"):
            args["priority"] = g["prio"].lower()
        return args
    if name == "ticket_close":
        return {"ticket_id": int(g["id"]), **({"resolution": g["res"]} if g.get("res") else {})}
    if name == "ticket_comment":
        return {"ticket_id": int(g["id"]), "text": g["text"].strip()}
    if name == "ticket_update":
        return {"ticket_id": int(g["id"]), "assignee": _user_id(g["who"], requester)}
    if name == "ticket_find":
        return {k: v for k, v in {"query": g.get("q"), "status": g.get("status")}.items() if v}
    return {"text": g["text"].strip()}


def _explicit(text: str, tools: set[str]) -> tuple[str, dict[str, Any]] | None:
    """`action_name key=value ...`."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    if not words or words[0] not in tools:
        return None
    args: dict[str, Any] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key.isidentifier():
            return None
        args[key] = _scalar(value)
    return words[0], args


def _scalar(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class OfflinePlanner:
    label = LABEL
    offline = True

    async def next_turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        names = {t["function"]["name"] for t in tools}
        last = messages[-1]
        if last["role"] == "tool":
            return Turn(content=self._conclude(messages))
        request = _clean(str(last.get("content") or ""))
        requester = _requester(messages)
        planned = _explicit(request, names)
        if planned is None:
            for name, pattern in _PATTERNS:
                m = pattern.match(request)
                if m and name in names:
                    planned = (name, _plain(name, m, requester))
                    break
        if planned is None:
            return Turn(content=self._help(names), understood=False)
        name, args = planned
        n = sum(1 for m in messages if m["role"] == "assistant")
        return Turn(
            content=None,
            tool_calls=[ToolCall(id=f"offline-{n + 1}", name=name, arguments=json.dumps(args))],
        )

    def _conclude(self, messages: list[dict[str, Any]]) -> str:
        results = []
        for m in reversed(messages):
            if m["role"] != "tool":
                break
            results.append(str(m.get("content") or ""))
        results.reverse()
        failed = [r for r in results if r.startswith("error")]
        body = "\n".join(results)
        if failed:
            return f"(offline planner) I could not do it:\n{body}"
        return f"(offline planner) Done:\n{body}"

    def _help(self, names: set[str]) -> str:
        known = ", ".join(sorted(names)) or "none"
        return (
            "(offline planner) No language model is configured, so I only understand a few "
            "forms: `create a ticket for <title> [and assign it to me]`, `close ticket <n>`, "
            "`comment on ticket <n>: <text>`, `assign ticket <n> to me`, `find tickets about "
            "<words>`, `reply <text>`, or any action as `<action> key=value ...`. "
            f"My actions: {known}."
        )


def _clean(text: str) -> str:
    text = re.sub(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[:,]?\s*", "", text)  # leading mention
    return " ".join(text.split())


def _requester(messages: list[dict[str, Any]]) -> str | None:
    for m in messages:
        if m["role"] == "system":
            found = re.search(r"Slack user id ([A-Z0-9]+)", str(m.get("content") or ""))
            if found:
                return found.group(1)
    return None
