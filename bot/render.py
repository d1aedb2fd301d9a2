"""Messages as jinja2 templates rendered to Block Kit, each with a text fallback."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
)


@dataclass
class Message:
    text: str
    """The fallback: notifications, screen readers, and the console."""
    blocks: list[dict[str, Any]]


_redact: Callable[[str], str] = lambda s: s  # noqa: E731


def set_redactor(redact: Callable[[str], str]) -> None:
    """Secrets in action output or errors never reach a Slack message (bot.logs.Redactor)."""
    global _redact
    _redact = redact


def render(template: str, *, text: str, **context: Any) -> Message:
    blocks = json.loads(_redact(_env.get_template(template).render(**context)))
    return Message(text=_redact(text), blocks=blocks)


def escape(text: str) -> str:
    """Slack mrkdwn control characters in text a person typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
