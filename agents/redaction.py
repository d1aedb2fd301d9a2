"""Secrets never leave the process: one Redactor, applied where text leaves.

The secrets are the credentials chatops holds (Slack, OpenAI) and every value the
configuration reads from the environment (`{{ env.NAME }}`, an action's `env` list):
they are replaced by value, and anything shaped like a Slack or OpenAI token by pattern.
The same Redactor cleans tool output before it is journaled or shown to the model, every
call to Slack's Web API and every answer to a Slack request (bot/), log lines and traces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

TOKEN_SHAPES = re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{8,})")
REDACTED = "[redacted]"
MIN_SECRET = 6
"""Shorter values are not secrets worth hiding, and replacing them would mangle ordinary text."""


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return TOKEN_SHAPES.sub(REDACTED, text)

    def clean_data(self, value: Any) -> Any:
        """Every string inside a JSON-like value cleaned, the structure kept."""
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, dict):
            return {k: self.clean_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean_data(v) for v in value]
        return value
