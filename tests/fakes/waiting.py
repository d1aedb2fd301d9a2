"""Poll for a condition instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    message: str | Callable[[], str] = "",
) -> Any:
    """Call `predicate` (sync or async) until it returns something truthy; return that value.

    Fails the test with `message` (or a generic one) when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout:g}s waiting: {text or predicate!r} (last: {last!r})"
            )
        await asyncio.sleep(interval)
