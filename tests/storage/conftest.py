from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from storage_rows import Clock

from storage import clock
from storage.engine import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A real, migrated SQLite database file for one test."""
    database = Database(f"sqlite:///{tmp_path / 'chatops.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def frozen_clock() -> Iterator[Clock]:
    """The stored clock stands still until the test moves it."""
    fake = Clock()
    clock.set_clock(fake)
    try:
        yield fake
    finally:
        clock.set_clock(None)
