"""Random signed deliveries at /slack/events: whatever the body, the answer is 200, 400, 401
or 413, and nothing is logged as an error.

The bodies are real Slack payloads (a mention, a thread reply, a DM, an edit, a Home tab
visit, a button click, a slash command, the URL verification) with fields deleted or replaced
by random JSON, and random text besides. Each is signed with the right secret, so it passes
the signature check and reaches the parsing and the listeners. Derandomized: the same
examples on every run, so a red CI is a regression and not a draw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes import slack_events as ev
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALLOWED = {200, 400, 401, 413}
JSON, FORM = "application/json", "application/x-www-form-urlencoded"

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | text
json_value = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
# Values of the right form in the wrong place: they get past the shape check, into the listeners.
plausible = st.sampled_from(
    [
        *("", "U9", "UBOT", "W1", "C9", "D9", "G9", "T9", "T1", "E1", "B1", "1690000000.000001", "1.1"),
        *("undo", "status", "pause all agents", "resume all", "<@UBOT> undo 1", "message", "app_mention"),
        *("im", "channel", "message_changed", "bot_message", "chatops_undo", "chatops_pause", "home", "99"),
    ]
)

TEMPLATES: dict[str, Callable[[], dict[str, Any]]] = {
    "mention": lambda: ev.app_mention("<@UBOT> find tickets about printers"),
    "thread reply": lambda: ev.thread_reply("and the scanners", thread_ts=ev.new_ts()),
    "dm": lambda: ev.dm("status"),
    "edit": lambda: ev.message_changed(channel="C1", ts=ev.new_ts(), new_text="edited"),
    "home": lambda: ev.envelope({"type": "app_home_opened", "user": "U1", "tab": "home", "channel": "D1"}),
    "undo button": lambda: ev.block_action("chatops_undo", "1", message_ts=ev.new_ts()),
    "pause button": lambda: ev.block_action("chatops_pause", "ops", message_ts=ev.new_ts()),
    "approve button": lambda: ev.block_action("chatops_approve", "1", message_ts=ev.new_ts()),
    "slash command": lambda: ev.slash_command("status"),
    "url verification": lambda: ev.url_verification("challenge"),
}


def _places(obj: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON value, the container itself first."""
    found: list[tuple[Any, Any]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.append((obj, key))
            found.extend(_places(value))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found.append((obj, i))
            found.extend(_places(value))
    return found


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, str]:
    """(content type, body): a mutated Slack payload, or random JSON or text."""
    source = draw(st.sampled_from([*TEMPLATES, "random JSON", "random text"]))
    if source == "random JSON":
        return JSON, json.dumps(draw(json_value))
    if source == "random text":
        return draw(st.sampled_from([JSON, FORM])), draw(st.text(max_size=200).filter(_encodable))
    payload = TEMPLATES[source]()
    for _ in range(draw(st.integers(1, 3))):
        places = _places(payload)
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        if draw(st.booleans()) and isinstance(container, dict):
            del container[key]
        else:
            container[key] = draw(plausible | json_value)
    if source == "slash command" and draw(st.booleans()):
        # As Slack sends it: a form, every value a string.
        return FORM, urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()})
    if source.endswith("button"):
        return FORM, urlencode({"payload": json.dumps(payload)})
    return JSON, json.dumps(payload)


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture
async def desk(start_desk):
    return await start_desk()


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
async def test_random_signed_deliveries_never_make_a_500_nor_an_error(
    desk, caplog: pytest.LogCaptureFixture, delivery: tuple[str, str]
):
    caplog.clear()
    content_type, body = delivery
    answer = await desk.send.raw(body, content_type=content_type)
    assert answer.status in ALLOWED, (answer.status, answer.text, body)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], ([f"{r.levelname} {r.name}: {r.getMessage()} {_trace(r)}" for r in bad], body)


def _trace(record: logging.LogRecord) -> str:
    return logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
