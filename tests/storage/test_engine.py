from __future__ import annotations

from pathlib import Path

import pytest

from storage.engine import SCHEMA_VERSION, Database, async_url
from storage.models import Meta


def test_async_url_maps_drivers() -> None:
    assert async_url("sqlite:///chatops.db") == "sqlite+aiosqlite:///chatops.db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert async_url("postgresql+psycopg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Database("sqlite:///:memory:")


async def test_migrate_is_idempotent_and_records_the_schema_version(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        await db.migrate()
        await db.migrate()
        async with db.read() as session:
            meta = await session.get(Meta, "schema_version")
        assert meta is not None and meta.value == SCHEMA_VERSION
        assert await db.ping()
    finally:
        await db.dispose()


async def test_a_failed_write_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            session.add(Meta(key="half", value="written"))
            await session.flush()
            raise RuntimeError("boom")
    async with db.read() as session:
        assert await session.get(Meta, "half") is None
