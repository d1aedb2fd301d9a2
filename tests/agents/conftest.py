from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
