from __future__ import annotations

from collections.abc import Iterator

import pytest
from storage_rows import Clock

from storage import clock


@pytest.fixture
def frozen_clock() -> Iterator[Clock]:
    """The stored clock stands still until the test moves it."""
    fake = Clock()
    clock.set_clock(fake)
    try:
        yield fake
    finally:
        clock.set_clock(None)
