"""Which run a log line is about: set once per run task, read by the log formatter."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_run: ContextVar[dict[str, Any] | None] = ContextVar("chatops_run", default=None)


def bind_run(**fields: Any) -> None:
    """Add fields (run_id, agent, channel, thread) for every log line of this task."""
    _run.set({**(_run.get() or {}), **fields})


def run_fields() -> dict[str, Any]:
    return dict(_run.get() or {})
