"""The database: one async engine, write and read sessions, and the schema.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions
begin IMMEDIATE so two writers never deadlock upgrading a read lock.
PostgreSQL (`postgresql+psycopg://`) is for many processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import models  # noqa: F401  (registers the tables)
from storage.models import Meta

SCHEMA_VERSION = "1"


def async_url(url: str) -> str:
    """Map a user's URL to its async driver (`sqlite://` -> aiosqlite, postgres -> psycopg)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite" and u.drivername != "sqlite+aiosqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
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
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if make_url(url).database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared; use a file")
        elif pooled:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # SQLite has one writer. Writers queue here, in the event loop, and start the moment
        # the previous commit ends, instead of sleeping in SQLite's busy handler (1, 2, 5 ...
        # 100 ms between tries). Other processes on the same file still meet busy_timeout.
        self._write_lock: asyncio.Lock | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine)
            self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on error. Not re-entrant."""
        async with (
            self._write_lock or contextlib.nullcontext(),
            AsyncSession(self.engine, expire_on_commit=False) as session,
        ):
            await session.connection(execution_options={"chatops_write": True})
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield session

    async def migrate(self) -> None:
        """Create missing tables and record the schema version (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        async with self.write() as session:
            meta = await session.get(Meta, "schema_version")
            if meta is None:
                session.add(Meta(key="schema_version", value=SCHEMA_VERSION))
            else:
                meta.value = SCHEMA_VERSION

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.read() as session:
                await session.exec(select(1))  # type: ignore[call-overload]
            return True
        except Exception:  # broad on purpose: any failure means "not reachable"
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN can be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("chatops_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
