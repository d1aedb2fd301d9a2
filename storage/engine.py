"""The database: one async engine, write and read sessions, and the schema.

SQLite (the default) runs in WAL mode. Write transactions begin IMMEDIATE, so two
writers never deadlock upgrading a read lock, and within one process they queue on one
lock per file, shared by the process's event loops, the intake's writes first. SQLite
calls run inline on the event loop (see `InlineSQLiteConnection`); a write lock held by
another process is waited for with `asyncio.sleep`, never in SQLite's busy handler.
PostgreSQL (`postgresql+psycopg://`) is for many processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event, exc, select
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import (
    models,  # noqa: F401  (registers the tables)
    schema,
)

# How long a write waits for another process's SQLite write lock before it fails.
SQLITE_LOCK_TIMEOUT = 30.0


def async_url(url: str) -> str:
    """Map a user's URL to its async driver (`sqlite://` -> aiosqlite, postgres -> psycopg)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite" and u.drivername != "sqlite+aiosqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic's command line)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        u = u.set(drivername="sqlite")
    elif backend == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


class Database:
    """Owns the engine. Use `write()` for transactions that change rows, `read()` otherwise."""

    def __init__(self, url: str, *, echo: bool = False, pooled: bool = True) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if not pooled:  # short-lived commands and subprocess tests
            kwargs["poolclass"] = NullPool
        self._lock: PriorityLock | None = None
        self._urgent_engine: AsyncEngine | None = None
        if self.is_sqlite:
            if make_url(url).database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared; use a file")
            self.engine: AsyncEngine = _sqlite_engine(self.url, **kwargs)
            # SQLite has one writer. Writers of this process queue here, whatever their event
            # loop, and start the moment the previous commit ends; the intake's writes go first,
            # on connections of their own, so an ack never waits behind the runs' writes.
            self._lock = _write_lock(str(make_url(url).database))
            if pooled:
                self._urgent_engine = _sqlite_engine(self.url, echo=echo, pool_size=2, max_overflow=0)
        else:
            if pooled:
                kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
            self.engine = create_async_engine(self.url, **kwargs)

    @asynccontextmanager
    async def write(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on error. Not re-entrant.

        `urgent` writes (the intake's, which an ack waits for) go before the others.
        """
        lock = self._lock
        if lock is not None:
            await lock.acquire(urgent=urgent)
        held = lock is not None
        try:
            bind = self._urgent_engine if urgent and self._urgent_engine is not None else self.engine
            async with AsyncSession(bind, expire_on_commit=False) as session:
                await session.connection(execution_options={"chatops_write": True})
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                finally:
                    # Released as the transaction ends, before the session closes: closing
                    # goes round the event loop (SQLAlchemy shields it in a task of its own),
                    # and the next writer, the intake's perhaps, need not wait for that.
                    if lock is not None:
                        held = False
                        lock.release()
        finally:
            if held:
                assert lock is not None
                lock.release()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield session

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to the newest revision (Alembic), keeping every row.

        `revision`: stop at an older one instead (tests of a later revision's upgrade).

        One transaction: a failed upgrade leaves the database as it was. On SQLite, foreign
        keys are off while it runs (a table is altered by copying it into a new one, which
        they would forbid) and checked before they are turned back on.
        """
        lock = self._lock
        if lock is not None:
            await lock.acquire(urgent=True)
        try:
            async with self.engine.connect() as conn:
                if self.is_sqlite:
                    await conn.run_sync(_sqlite_pragma, "PRAGMA foreign_keys=OFF")
                try:
                    writing = await conn.execution_options(chatops_write=True)
                    await writing.run_sync(schema.upgrade, revision)
                    await writing.commit()
                    if self.is_sqlite:
                        broken = await conn.run_sync(_sqlite_pragma, "PRAGMA foreign_key_check")
                        if broken:
                            raise RuntimeError(f"the upgrade broke foreign keys: {broken[:5]}")
                finally:
                    if self.is_sqlite:
                        await conn.run_sync(_sqlite_pragma, "PRAGMA foreign_keys=ON")
        finally:
            if lock is not None:
                lock.release()

    async def schema_revision(self) -> str | None:
        """The database's schema revision (None: no schema yet)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(schema.current)

    async def check_schema(self) -> None:
        """Raise SchemaOutOfDate unless the database is at the revision this code needs."""
        revision = await self.schema_revision()
        if revision != schema.head():
            raise schema.SchemaOutOfDate(revision, schema.head())

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.read() as session:
                await session.exec(select(1))  # type: ignore[call-overload]
            return True
        except Exception:  # broad on purpose: any failure means "not reachable"
            return False

    async def dispose(self) -> None:
        if self._urgent_engine is not None:
            await self._urgent_engine.dispose()
        await self.engine.dispose()


def _sqlite_pragma(conn: Any, pragma: str) -> list[Any]:
    """A PRAGMA on the raw SQLite connection, outside any transaction (where some are no-ops)."""
    cursor = conn.connection.driver_connection.sqlite.execute(pragma)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


class PriorityLock:
    """A lock whose urgent waiters go before the others (first come, first served within each).

    Thread-safe: the event loops of one process share it (`chatops serve` works its runs on a
    thread and event loop of their own, next to the intake's). A waiter on another loop is
    woken through that loop (`call_soon_threadsafe`).

    An urgent waiter is handed the lock: it owns it from the moment it is chosen (a waiter
    cancelled before it wakes passes it on). The others are only woken, and take the lock
    if it is still free when they run: a busy event loop may take a while to run the one it
    woke, and the lock is not held idle meanwhile, for the intake's next write above all.
    A woken waiter that finds the lock taken again waits at the head of the line; a new one
    queues behind those woken and waiting.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locked = False
        self._urgent: deque[_Waiter] = deque()
        self._normal: deque[_Waiter] = deque()

    def locked(self) -> bool:
        return self._locked

    async def acquire(self, *, urgent: bool = False) -> None:
        loop = asyncio.get_running_loop()
        again = False
        while True:
            with self._mutex:
                # Free, and nobody before us: urgent waiters go first, then those in line.
                first = urgent or (not self._urgent and (again or not self._normal))
                if not self._locked and first:
                    self._locked = True
                    return
                waiter = _Waiter(loop, loop.create_future())
                if urgent:
                    self._urgent.append(waiter)
                    for hook in URGENT_WAIT_HOOKS:
                        hook()
                elif again:
                    self._normal.appendleft(waiter)  # it was first in line
                else:
                    self._normal.append(waiter)
            try:
                await waiter.future
            except asyncio.CancelledError:
                with self._mutex:
                    granted, woken = waiter.granted, waiter.future.done() and not waiter.future.cancelled()
                    if not waiter.future.done():
                        with contextlib.suppress(ValueError):
                            (self._urgent if urgent else self._normal).remove(waiter)
                if granted:
                    self.release()  # handed to us as we were cancelled: pass it on
                elif woken:
                    self._wake_next()  # woken as we were cancelled: wake the next instead
                raise
            if waiter.granted:
                return
            again = True

    def release(self) -> None:
        """Hand the lock to the next urgent waiter; otherwise free it and wake the next waiter."""
        with self._mutex:
            while self._urgent:
                waiter = self._urgent.popleft()
                if _wake(waiter, grant=True):
                    return
            self._locked = False
            self._wake_next_locked()

    def _wake_next(self) -> None:
        with self._mutex:
            if not self._locked:
                self._wake_next_locked()

    def _wake_next_locked(self) -> None:
        while self._normal:
            if _wake(self._normal.popleft(), grant=False):
                return


class _Waiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future
        self.granted = False


def _wake(waiter: _Waiter, *, grant: bool) -> bool:
    """Wake a waiter (holding the lock's mutex); False if it no longer waits."""
    if waiter.future.done():  # cancelled while waiting
        return False
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    # Granted before it is woken: the waiter's thread may run the moment it is woken.
    waiter.granted = grant
    if waiter.loop is here:
        waiter.future.set_result(None)
    else:
        try:
            waiter.loop.call_soon_threadsafe(_set, waiter.future)
        except RuntimeError:  # its loop is closed: nobody waits there any more
            waiter.granted = False
            return False
    return True


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_LOCKS: weakref.WeakValueDictionary[str, PriorityLock] = weakref.WeakValueDictionary()
_LOCKS_MUTEX = threading.Lock()


URGENT_WAIT_HOOKS: list[Callable[[], None]] = []
"""Called (from the waiter's thread) when an urgent writer starts to wait for a write lock:
whoever holds it back (bot.background's runs' loop, giving way to the intake) lets it go on."""


def urgent_writer_waiting() -> bool:
    """Whether an urgent writer (the intake) waits for a write lock of this process."""
    with _LOCKS_MUTEX:  # a Database made on another thread may add a lock meanwhile
        locks = list(_LOCKS.values())
    return any(lock._urgent for lock in locks)


def _write_lock(path: str) -> PriorityLock:
    """The one write lock of an SQLite file in this process, whichever Database asks."""
    key = os.path.realpath(path)
    with _LOCKS_MUTEX:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = PriorityLock()
        return lock


# SQLite, inline ----------------------------------------------------------------------


class _RunNow:
    """Stands in for aiosqlite's queue to its thread: runs each call at once, on this thread."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as e:
            if future is not None and not future.done():
                future.set_exception(e)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class InlineSQLiteConnection(aiosqlite.Connection):
    """aiosqlite's connection, with every SQLite call made directly on the event loop.

    aiosqlite runs each call (cursor, execute, fetch, close) on a thread of its own and
    hands the result back through the event loop: about 0.25 ms of CPU per round trip for
    SQLite work that takes 0.02 ms, and ~19 round trips for one intake transaction
    (docs/benchmarks.md). Made inline, a call costs what SQLite costs. This is safe because
    nothing here waits inside SQLite: in WAL mode readers never wait for the writer, the
    writers of this process queue on `Database.write`'s lock, and the write lock of another
    process is waited for outside SQLite, with `asyncio.sleep` (busy_timeout is 0; see
    `_retrying`). Commits do not fsync (synchronous=NORMAL).
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (calls on it are what `_execute` would make)."""
        return self._conn

    def __await__(self) -> Any:  # no thread to start
        return self._connect().__await__()

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _sqlite_engine(url: str, **kwargs: Any) -> AsyncEngine:
    args, connect_kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))
    connect_kwargs.update(check_same_thread=False, timeout=0)
    connector = partial(sqlite3.connect, *args, **connect_kwargs)

    async def connect() -> InlineSQLiteConnection:
        return await InlineSQLiteConnection(connector)

    engine = create_async_engine(url, async_creator=connect, **kwargs)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        sqlite = record.driver_connection.sqlite
        sqlite.isolation_level = None  # take transaction control, so BEGIN can be IMMEDIATE
        # Waits for another process's locks happen in _retrying, not in SQLite's busy
        # handler (it would block the event loop).
        sqlite.execute("PRAGMA busy_timeout=0").close()
        _retrying(
            sqlite,
            ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"],
        )

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        sqlite = conn.connection.driver_connection.sqlite
        if conn.get_execution_options().get("chatops_write", False):
            _retrying(sqlite, ["BEGIN IMMEDIATE"])
        else:
            # Reading the schema cookie starts the read transaction here, where a busy
            # database (another process recovering the WAL after a crash) can be waited for.
            _retrying(sqlite, ["BEGIN", "PRAGMA schema_version"])


def _retrying(sqlite: sqlite3.Connection, statements: list[str]) -> None:
    """Run statements, retried with `asyncio.sleep` while SQLite says it is busy.

    Runs inside SQLAlchemy's greenlet, so `await_` suspends this coroutine and lets the
    event loop go on; SQLite's own busy handler would sleep with the loop blocked. A
    transaction the statements began is rolled back before a retry.
    """
    deadline = time.monotonic() + SQLITE_LOCK_TIMEOUT
    delay = 0.001
    while True:
        for sql in statements:
            try:
                sqlite.execute(sql).close()
            except sqlite3.OperationalError as e:
                if sqlite.in_transaction:
                    sqlite.execute("ROLLBACK").close()
                if not _is_busy(e):
                    raise exc.OperationalError(sql, None, e) from e
                if time.monotonic() + delay > deadline:
                    why = sqlite3.OperationalError(
                        f"database is locked: another process held it for over {SQLITE_LOCK_TIMEOUT:g} s"
                    )
                    raise exc.OperationalError(sql, None, why) from e
                break
        else:
            return
        await_(asyncio.sleep(delay))
        delay = min(delay * 2, 0.05)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
    return "locked" in str(error) or "busy" in str(error)
