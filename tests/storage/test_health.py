"""The write probe behind /healthz: a committed write, and why one did not go through."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from storage.engine import Database
from storage.health import READ_ONLY, write_refusal
from storage.models import Meta


async def test_a_database_that_takes_writes_passes_and_keeps_the_time_of_the_probe(db: Database) -> None:
    async with db.write() as session:
        session.add(Meta(key="other", value="kept"))
    assert await write_refusal(db) is None
    assert await write_refusal(db) is None  # the second probe updates the same row
    async with db.read() as session:
        row = await session.get(Meta, "healthz")
        other = await session.get(Meta, "other")
    assert row is not None and row.value.startswith("20")
    assert other is not None and other.value == "kept"  # the probe touches its own row only


async def test_a_read_only_sqlite_database_is_reported_as_read_only(db: Database) -> None:
    async with db.write() as session:
        session.add(Meta(key="other", value="kept"))
    await db.engine.dispose()  # new connections only, each of them read-only
    await _every_connection(db, "PRAGMA query_only = ON")
    assert await write_refusal(db) == READ_ONLY
    async with db.read() as session:
        assert await session.get(Meta, "other") is not None  # reads still work


async def test_a_write_that_waits_too_long_is_reported_not_hung(db: Database) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_write_lock() -> None:
        async with db.write():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_write_lock())
    await holding.wait()
    try:
        assert await write_refusal(db, timeout=0.2) == "not writable: no write went through within 0.2 s"
    finally:
        release.set()
        await holder
    assert await write_refusal(db) is None  # the lock was handed on, not lost


async def _every_connection(db: Database, pragma: str) -> None:
    @event.listens_for(db.engine.sync_engine, "connect")
    def _on_connect(_dbapi: Any, record: Any) -> None:
        record.driver_connection.sqlite.execute(pragma).close()
