"""Messages as jinja2 templates rendered to Block Kit, each with a text fallback."""

from __future__ import annotations

import json
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


def render(template: str, *, text: str, **context: Any) -> Message:
    """A message from a template. Secrets are cleaned where it leaves: bot.redaction."""
    blocks = json.loads(_env.get_template(template).render(**context))
    return Message(text=text, blocks=blocks)


def escape(text: str) -> str:
    """Slack mrkdwn control characters in text a person typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
