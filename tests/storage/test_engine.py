from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from fakes import wait_until
from sqlalchemy.exc import OperationalError

from storage import engine, schema
from storage.engine import Database, PriorityLock, async_url
from storage.models import Meta


def test_async_url_maps_drivers() -> None:
    assert async_url("sqlite:///chatops.db") == "sqlite+aiosqlite:///chatops.db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert async_url("postgresql+psycopg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Database("sqlite:///:memory:")


async def test_migrate_is_idempotent_and_records_the_schema_revision(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        await db.migrate()
        await db.migrate()
        assert await db.schema_revision() == schema.head()
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


# The write lock -------------------------------------------------------------------


async def test_the_priority_lock_serves_urgent_waiters_first_and_each_class_in_order() -> None:
    lock = PriorityLock()
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        await lock.acquire(urgent=urgent)
        order.append(name)
        await asyncio.sleep(0)
        lock.release()

    await lock.acquire()
    waiters = [
        asyncio.create_task(take("n1", False)),
        asyncio.create_task(take("n2", False)),
        asyncio.create_task(take("u1", True)),
        asyncio.create_task(take("n3", False)),
        asyncio.create_task(take("u2", True)),
    ]
    await asyncio.sleep(0)  # every waiter queued
    lock.release()
    await asyncio.gather(*waiters)
    assert order == ["u1", "u2", "n1", "n2", "n3"]
    assert not lock.locked()


async def test_a_cancelled_waiter_neither_keeps_nor_loses_the_lock() -> None:
    lock = PriorityLock()
    await lock.acquire()
    cancelled = asyncio.create_task(lock.acquire(urgent=True))
    after = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    lock.release()  # handed to the cancelled waiter as it is cancelled: it must pass it on
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(after, 5)
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_urgent_writes_go_before_queued_writes(db: Database) -> None:
    order: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with db.write() as session:
            session.add(Meta(key="first", value="x"))
            holding.set()
            await release.wait()

    async def write(name: str, urgent: bool) -> None:
        async with db.write(urgent=urgent) as session:
            session.add(Meta(key=name, value="x"))
            order.append(name)

    holder = asyncio.create_task(first())
    await holding.wait()
    queued = [asyncio.create_task(write(f"worker{i}", False)) for i in range(3)]
    await asyncio.sleep(0.01)
    queued.append(asyncio.create_task(write("intake", True)))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(holder, *queued)
    assert order == ["intake", "worker0", "worker1", "worker2"]
    async with db.read() as session:
        for name in ["first", "intake", "worker0", "worker1", "worker2"]:
            assert await session.get(Meta, name) is not None


# SQLite inline, and another process's locks ----------------------------------------


def _other_process(path: Path, *, exclusive: bool = False) -> sqlite3.Connection:
    """A connection of its own: to SQLite it is another process holding the write lock."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if exclusive:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("INSERT INTO meta (key, value) VALUES ('other', 'x')")
    else:
        conn.execute("BEGIN IMMEDIATE")
    return conn


async def _ticks_while(work: asyncio.Task[object]) -> int:
    """How often the event loop ran a 5 ms ticker while `work` waited."""
    ticks = 0
    while not work.done():
        await asyncio.sleep(0.005)
        ticks += 1
    return ticks


async def test_a_write_waits_for_another_process_without_blocking_the_loop(
    db: Database, tmp_path: Path
) -> None:
    other = _other_process(tmp_path / "chatops.db")

    async def write() -> None:
        async with db.write() as session:
            session.add(Meta(key="mine", value="x"))

    task = asyncio.create_task(write())
    loop = asyncio.get_running_loop()
    loop.call_later(0.4, other.rollback)
    ticks = await _ticks_while(task)
    await task
    other.close()
    # The loop went on while the write waited (SQLite's busy handler would have blocked it).
    assert ticks >= 20
    async with db.read() as session:
        assert await session.get(Meta, "mine") is not None


async def test_a_write_gives_up_on_a_lock_held_too_long_with_a_clear_error(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SQLITE_LOCK_TIMEOUT", 0.2)
    other = _other_process(tmp_path / "chatops.db")
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with db.write() as session:
                session.add(Meta(key="mine", value="x"))
    finally:
        other.rollback()
        other.close()
    async with db.write() as session:  # the connection it used is fine afterwards
        session.add(Meta(key="mine", value="x"))
    async with db.read() as session:
        assert await session.get(Meta, "mine") is not None


async def test_a_read_waits_for_an_exclusive_lock_without_blocking_the_loop(
    db: Database, tmp_path: Path
) -> None:
    await db.dispose()  # no connection of ours open: the other can take the file for itself
    other = _other_process(tmp_path / "chatops.db", exclusive=True)

    async def read() -> Meta | None:
        async with db.read() as session:
            return await session.get(Meta, "other")

    task = asyncio.create_task(read())

    def done() -> None:
        other.commit()
        other.close()

    asyncio.get_running_loop().call_later(0.3, done)
    ticks = await _ticks_while(task)
    assert (await task) is not None  # it read after the other committed
    assert ticks >= 10


def test_the_write_lock_is_shared_by_the_event_loops_of_the_process(tmp_path: Path, monkeypatch) -> None:
    """`chatops serve` writes from two event loops (bot.background): they queue on one lock,
    the urgent write first, and none of them meets SQLite's busy lock."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    busy: list[str] = []
    is_busy = engine._is_busy
    monkeypatch.setattr(engine, "_is_busy", lambda e: busy.append(str(e)) or is_busy(e))
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    async def other_loop() -> None:
        db = Database(url)
        try:
            async with db.write() as session:
                session.add(Meta(key="other", value="x"))
                await session.flush()
                holding.set()
                await asyncio.to_thread(release.wait, 30)
        finally:
            await db.dispose()

    async def here() -> None:
        db = Database(url)
        await db.migrate()
        other = threading.Thread(target=asyncio.run, args=(other_loop(),))
        other.start()
        try:
            assert await asyncio.to_thread(holding.wait, 30)

            async def write(name: str, urgent: bool) -> None:
                async with db.write(urgent=urgent) as session:
                    session.add(Meta(key=name, value="x"))
                    order.append(name)

            queued = [asyncio.create_task(write(f"worker{i}", False)) for i in range(2)]
            await wait_until(lambda: len(db._lock._normal) == 2)  # type: ignore[union-attr]
            queued.append(asyncio.create_task(write("intake", True)))
            await wait_until(lambda: len(db._lock._urgent) == 1)  # type: ignore[union-attr]
            release.set()
            await asyncio.wait_for(asyncio.gather(*queued), 30)
        finally:
            release.set()
            await asyncio.to_thread(other.join, 30)
        async with db.read() as session:
            assert all([await session.get(Meta, k) for k in ("other", "intake", "worker0", "worker1")])
        await db.dispose()

    asyncio.run(here())
    assert order == ["intake", "worker0", "worker1"]
    assert busy == []  # the lock, not SQLite, made them wait
