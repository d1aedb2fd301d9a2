"""One clock for everything that is stored, so tests can move time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, timezone-aware UTC (how every timestamp is stored)."""
    return _now()


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); `None` restores the wall clock."""
    global _now
    _now = fn or (lambda: datetime.now(UTC))
