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

from agents.conversation import EarlierRun, TurnContext
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


# Talking: answered from the action list and the thread's journal, with no side effect.
_GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|good\s+(?:morning|afternoon|evening)|thanks|thank\s+you)"
    r"(?:\s+(?:there|again|a\s+lot))?\s*[!.]*$",
    re.I,
)
_ABILITIES = re.compile(
    r"^(?:what\s+can\s+you\s+do|what\s+do\s+you\s+do|how\s+can\s+you\s+help(?:\s+me)?|help)"
    r"(?:\s+(?:here|for\s+me))?\s*[?!.]*$",
    re.I,
)
_RECAP = re.compile(r"^what\s+(?:did|have)\s+you\s+(?:just\s+)?(?:do|done)(?:\s+\w+)*\s*\??$", re.I)

# Follow-ups: "it" is the ticket the thread's latest run touched.
_FOLLOW_UPS: list[tuple[str, re.Pattern[str]]] = [
    (
        "ticket_close",
        re.compile(
            r"^(?:please\s+)?(?:now\s+)?(?:close|resolve)\s+(?:it|that(?:\s+one)?|the\s+ticket|this\s+ticket)"
            r"(?:\s*(?:because|as|with|:|-)\s*(?P<res>.+?))?\s*[.!]?$",
            re.I,
        ),
    ),
    (
        "ticket_comment",
        re.compile(
            r"^(?:please\s+)?(?:also\s+)?(?:add\s+(?:a\s+)?)?(?:comment|note)"
            r"(?:\s+(?:on|to)\s+(?:it|that|the\s+ticket))?\s*[:,-]?\s*(?:saying\s+(?:that\s+)?)?(?P<text>.+)$",
            re.I,
        ),
    ),
    (
        "ticket_update",
        re.compile(
            r"^(?:please\s+)?(?:also\s+)?assign\s+(?:it|that|the\s+ticket)\s+to\s+" + _WHO + r"\s*[.!]?$",
            re.I,
        ),
    ),
    (
        "ticket_update",
        re.compile(
            r"^(?:please\s+)?(?:also\s+)?make\s+(?:it|that|the\s+ticket)\s+(?P<prio>low|normal|high|urgent)"
            r"(?:\s+priority)?\s*[.!]?$",
            re.I,
        ),
    ),
]
STEERING = re.compile(r"^\(<@[A-Z0-9]+> adds, while you work:\)\s*")


class OfflinePlanner:
    label = LABEL
    offline = True

    async def next_turn(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        context: TurnContext | None = None,
    ) -> Turn:
        names = {t["function"]["name"] for t in tools}
        last = messages[-1]
        if last["role"] == "tool":
            return Turn(content=self._conclude(messages))
        request = _clean(STEERING.sub("", str(last.get("content") or "")))
        requester = context.requester if context else None
        thread = context.thread if context else ()
        planned = _explicit(request, names)
        if planned is None:
            for name, pattern in _PATTERNS:
                m = pattern.match(request)
                if m and name in names:
                    planned = (name, _plain(name, m, requester))
                    break
        if planned is None:
            talk = _talk(request, tools, thread)
            if talk is not None:
                return Turn(content=talk)
            followed = _follow_up(request, names, thread, requester)
            if isinstance(followed, str):
                return Turn(content=followed, understood=False)
            planned = followed
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
            "<words>`, `reply <text>`, or any action as `<action> key=value ...`; in a thread, "
            "`close it`, `add a comment saying <text>`, `make it urgent` and `what did you just do?`. "
            f"My actions: {known}."
        )


def _talk(request: str, tools: list[dict[str, Any]], thread: tuple[EarlierRun, ...]) -> str | None:
    """An answer to small talk, "what can you do?" or "what did you just do?", or None."""
    if _GREETING.match(request):
        return (
            "(offline planner) Hello! I'm the offline planner (no language model is configured). "
            "Ask me for something, or `what can you do?`."
        )
    if _ABILITIES.match(request):
        lines = [f"• `{t['function']['name']}`: {t['function'].get('description', '')}" for t in tools]
        return "(offline planner) I can do this, one action per request:\n" + "\n".join(
            lines or ["• nothing"]
        )
    if _RECAP.match(request):
        if not thread:
            return "(offline planner) Nothing yet in this thread."
        last = thread[-1]
        done = [a.summary for a in last.actions if a.status in ("succeeded", "compensated")]
        what = "; ".join(done) if done else "nothing"
        text = f"(offline planner) In run #{last.id} you asked “{last.request}”. I did: {what}."
        if last.undone_by:
            text += f" It was undone later, at the request of <@{last.undone_by}>."
        return text
    return None


def _follow_up(
    request: str, names: set[str], thread: tuple[EarlierRun, ...], requester: str | None
) -> tuple[str, dict[str, Any]] | str | None:
    """A follow-up about "it" (the ticket the thread's latest run touched): the call to make, a
    sentence saying which ticket is missing, or None when the request is not a follow-up."""
    for name, pattern in _FOLLOW_UPS:
        m = pattern.match(request)
        if m is None or name not in names:
            continue
        ticket = _thread_ticket(thread)
        if ticket is None:
            return (
                "(offline planner) I don't know which ticket you mean: nothing in this thread touched "
                "one yet. Name it, e.g. `close ticket 12`."
            )
        g = m.groupdict()
        if name == "ticket_close":
            return name, {"ticket_id": ticket, **({"resolution": g["res"]} if g.get("res") else {})}
        if name == "ticket_comment":
            return name, {"ticket_id": ticket, "text": g["text"].strip()}
        if g.get("who"):
            return name, {"ticket_id": ticket, "assignee": _user_id(g["who"], requester)}
        return name, {"ticket_id": ticket, "priority": g["prio"].lower()}
    return None


def _thread_ticket(thread: tuple[EarlierRun, ...]) -> int | None:
    """The ticket the thread's latest run (not undone) touched last."""
    for run in reversed(thread):
        if run.undone_by:
            continue
        for action in reversed(run.actions):
            if action.status != "succeeded":
                continue
            ticket = action.data.get("ticket_id") or action.arguments.get("ticket_id")
            if isinstance(ticket, int):
                return ticket
    return None


def _clean(text: str) -> str:
    text = re.sub(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[:,]?\s*", "", text)  # leading mention
    return " ".join(text.split())
