"""Logging: structured lines with the run they are about; JSON when not on a terminal.

Secrets never reach a log line: the process's one Redactor (agents.redaction) cleans every
record's message and traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from agents.logcontext import run_fields
from agents.redaction import Redactor


class RedactingFilter(logging.Filter):
    """Replaces secrets in the message and the traceback of every record (agents.redaction)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.clean(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redactor.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RunContext(logging.Filter):
    """Adds the run a line is about (run_id, agent, channel, thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run = run_fields()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "run", {}),
        }
        if record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        run = getattr(record, "run", {})
        if run:
            text += "  [" + " ".join(f"{k}={v}" for k, v in run.items()) + "]"
        return text


def setup(*, quiet: bool, redactor: Redactor, json_lines: bool | None = None) -> None:
    """Configure the root logger once: level, format, redaction, run context."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    handler.setFormatter(
        JsonFormatter() if use_json else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RunContext())
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("aiohttp.access", "httpx", "slack_bolt.AsyncApp", "apscheduler", "openai", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
