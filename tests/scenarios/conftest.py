"""Fixtures of the scenarios that run real `chatops` processes (faults, monitoring)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from scenarios.faults_support import Processes, fresh_database


@pytest.fixture
def processes(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Processes]:
    with Processes(tmp_path, template=migrated_sqlite) as procs:
        yield procs


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url
