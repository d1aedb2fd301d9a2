"""Source changes the profiles point to, applied as monkeypatches so their effect can be measured
without editing the source. `BENCH_PATCHES=a,b` (or `--patch a,b` on the scripts) turns them on;
`make bench` measures the source as it is. docs/benchmarks.md says what each one changes in
which file, and what it does to the figures.

Each patch mirrors a small edit of one or two functions. None changes what chatops does,
only when and how fast it does it (`ack_trace` only measures).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

PATCHES: dict[str, Callable[[], None]] = {}


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    PATCHES[fn.__name__] = fn
    return fn


@patch
def sqlite_write_lock() -> None:
    """storage/engine.py, Database.write: on SQLite, one write transaction at a time per process.

    SQLite has one writer. With BEGIN IMMEDIATE on many pooled connections, the losers wait
    in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... up to 100 ms between tries however
    soon the lock is free: under load a 1 ms transaction waits tens of ms. An asyncio.Lock
    taken before BEGIN queues the writers in the event loop instead, woken the moment the
    previous commit ends. (Other processes on the same file still meet busy_timeout.)

    In the source since 89a8054 (taken inside the session there); kept here to measure
    older commits. Alone it does not help the acks: they queue behind the workers' writes.
    """
    from sqlmodel.ext.asyncio.session import AsyncSession

    from storage.engine import Database

    original_init = Database.__init__

    def __init__(self: Database, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @contextlib.asynccontextmanager
    async def write(self: Database) -> AsyncIterator[AsyncSession]:
        lock = getattr(self, "_write_lock", None)
        async with lock if lock is not None else contextlib.nullcontext():
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                await session.connection(execution_options={"chatops_write": True})
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise

    Database.__init__ = __init__  # type: ignore[method-assign]
    Database.write = write  # type: ignore[method-assign]


@patch
def announce_limit() -> None:
    """bot/presenter.py, Presenter.announce: at most 2 announcements in flight.

    Every accepted request schedules a background refresh (load the run, claim, react,
    post, save the ts: ~5 ms of event-loop time). In a burst they pile up on the loop the
    acks run on, and each ack's database round trips wait behind them. A semaphore keeps
    the announcements queued as idle coroutines instead; the worker's `run_started` posts
    the status message anyway when it picks the run up.
    """
    from bot.presenter import Presenter

    original_init = Presenter.__init__

    def __init__(self: Presenter, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._announcing = asyncio.Semaphore(2)  # type: ignore[attr-defined]

    def announce(self: Presenter, run_id: int) -> None:
        async def bounded() -> None:
            async with self._announcing:  # type: ignore[attr-defined]
                await self._safely(self._refresh(run_id))

        task = asyncio.create_task(bounded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    Presenter.__init__ = __init__  # type: ignore[method-assign]
    Presenter.announce = announce  # type: ignore[method-assign]


@patch
def edit_spacing() -> None:
    """bot/presenter.py, Presenter._refresh: no edit of a status message within `edit_interval`
    of the previous post or edit, whoever asks for it.

    `run_progressed` spaces its own edits, but two other paths edit at once: `run_finished`
    (it cancels the pending edit and refreshes immediately) and the first `run_progressed`
    of a run whose first refresh is still under way (no `_last_edit` yet, so no wait; it
    then edits right after that refresh). Measured: two edits within 6-80 ms. Waiting out
    the rest of the interval inside `_refresh` (under the run's lock, before loading, so
    the edit shows the latest state) is the one place that covers every path; the outcome
    reply is then at most one interval later.
    """
    import time

    from bot.presenter import Presenter
    from storage.runs import PENDING

    async def _refresh(self: Presenter, run_id: int) -> None:
        async with self._locks[run_id]:
            last = self._last_edit.get(run_id)
            if last is not None:
                wait = last + self.edit_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            view = await self._load(run_id)
            if view is None:
                return
            run = view.run
            if run.status_ts == PENDING:
                return
            if run.status_ts is None:
                await self._open(view)
            else:
                message = self._status_message(view)
                if self._last_text.get(run_id) == message.text:
                    return
                await self.surface.update(
                    channel=run.channel_id, ts=run.status_ts, text=message.text, blocks=message.blocks
                )
                self._last_text[run_id] = message.text
            self._last_edit[run_id] = time.monotonic()

    Presenter._refresh = _refresh  # type: ignore[method-assign]


@patch
def indexes() -> None:
    """storage/models.py: three indexes for the periodic jobs, which otherwise scan.

    - `runs.finished_without_outcome` (housekeeping, every 30 s) filters on
      `outcome_ts IS NULL OR (undone_by IS NOT NULL AND undo_ts IS NULL)`: a partial index
      with exactly that condition turns the scan of every run into a look at the few
      undelivered ones (SQLite and PostgreSQL both take partial indexes).
    - the watchdog's `alerts.finished_since` filters on `runs.finished_at`: index it. Its
      GROUP BY agent also lures SQLite (no ANALYZE statistics) into scanning all of
      ix_runs_agent_created instead, so the patched query reads the window's rows from the
      new index and counts them in Python (the rows of one window are few).
    - the watchdog's `alerts.model_failures_since` filters on `steps.started_at`: index it.
    - `runs.latest_run` at channel level (undo, pause, resume in a channel) sorts every run of
      the channel (ix_runs_thread has thread_ts before the id); (team_id, channel_id) gives
      them in id order, so the newest is read directly.
    """
    from collections import Counter
    from datetime import datetime

    from sqlalchemy import Index, text
    from sqlmodel import col, select
    from sqlmodel.ext.asyncio.session import AsyncSession

    from storage import alerts
    from storage.models import Run, Step

    async def finished_since(*, session: AsyncSession, since: datetime) -> list[tuple[str, str, bool, int]]:
        stmt = select(Run.agent, Run.status, col(Run.undone_by).is_not(None)).where(
            col(Run.finished_at) >= since
        )
        counts = Counter((a, s, bool(u)) for a, s, u in (await session.exec(stmt)).all())
        return [(a, s, u, n) for (a, s, u), n in counts.items()]

    alerts.finished_since = finished_since

    undelivered = "outcome_ts IS NULL OR (undone_by IS NOT NULL AND undo_ts IS NULL)"
    runs = Run.__table__  # type: ignore[attr-defined]
    steps = Step.__table__  # type: ignore[attr-defined]
    Index(
        "ix_runs_undelivered", runs.c.id, sqlite_where=text(undelivered), postgresql_where=text(undelivered)
    )
    Index("ix_runs_finished", runs.c.finished_at)
    Index("ix_steps_started", steps.c.started_at)
    Index("ix_runs_channel", runs.c.team_id, runs.c.channel_id)


@patch
def slack_session() -> None:
    """bot/surface.py, make_client: one aiohttp.ClientSession for every Web API call.

    Without `session=`, slack_sdk's AsyncWebClient opens a new ClientSession (and a new
    TCP connection) for each call and closes it after: 0.35 ms of CPU per call instead of
    0.13 ms with a kept-alive connection (measured against the loopback fake).
    """
    import aiohttp

    from bot import runner, surface

    original = surface.make_client

    def make_client(token: str, base_url: str, *, max_retries: int = 3) -> Any:
        client = original(token, base_url, max_retries=max_retries)
        with contextlib.suppress(RuntimeError):  # no running loop: keep a session per call
            asyncio.get_running_loop()
            client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return client

    surface.make_client = make_client
    runner.make_client = make_client  # imported by name there


@patch
def ack_trace() -> None:
    """Diagnostics, not a fix: where an ack's time goes (written to $BENCH_TRACE at exit)."""
    import atexit
    import json
    import time
    from contextvars import ContextVar

    from bot import intake
    from storage.engine import Database

    in_ack: ContextVar[dict[str, float] | None] = ContextVar("in_ack", default=None)
    samples: list[dict[str, float]] = []

    original_accept = intake.Intake.accept
    original_role = intake.Intake.__init__

    async def accept(self: Any, m: Any, *, agent: str, kind: str) -> Any:
        trace = {"start": time.perf_counter()}
        in_ack.set(trace)
        try:
            return await original_accept(self, m, agent=agent, kind=kind)
        finally:
            trace["total"] = time.perf_counter() - trace.pop("start")
            samples.append(trace)

    original_write = Database.write

    @contextlib.asynccontextmanager
    async def write(self: Database) -> AsyncIterator[Any]:
        trace = in_ack.get()
        if trace is None:
            async with original_write(self) as session:
                yield session
            return
        t0 = time.perf_counter()
        trace["before_write"] = t0 - trace["start"]
        async with original_write(self) as session:
            t1 = time.perf_counter()
            trace["begin_wait"] = t1 - t0  # write lock, pool checkout, BEGIN IMMEDIATE
            yield session
            t2 = time.perf_counter()
            trace["statements"] = t2 - t1
        trace["commit"] = time.perf_counter() - t2
        in_ack.set(None)  # the announcement the ack starts next is not the ack's own work

    original_init = Database.__init__

    def __init__(self: Database, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        from sqlalchemy import event

        @event.listens_for(self.engine.sync_engine, "checkout")
        def _checkout(*_: Any) -> None:
            trace = in_ack.get()
            if trace is not None and "checkout" not in trace:
                trace["checkout"] = time.perf_counter() - trace["start"]

    intake.Intake.accept = accept  # type: ignore[method-assign]
    Database.write = write  # type: ignore[method-assign]
    Database.__init__ = __init__  # type: ignore[method-assign]
    del original_role

    def dump() -> None:
        path = os.environ.get("BENCH_TRACE")
        if path:
            with open(path, "w") as f:
                json.dump(samples, f)

    atexit.register(dump)


class _PriorityLock:
    """A lock whose urgent waiters go before the others (FIFO within each class)."""

    def __init__(self) -> None:
        from collections import deque

        self._locked = False
        self._urgent: Any = deque()
        self._normal: Any = deque()

    async def acquire(self, urgent: bool) -> None:
        if not self._locked and not self._urgent and not self._normal:
            self._locked = True
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed to us as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    (self._urgent if urgent else self._normal).remove(waiter)
            raise

    def release(self) -> None:
        while self._urgent or self._normal:
            waiter = (self._urgent or self._normal).popleft()
            if not waiter.done():
                waiter.set_result(True)  # ownership passes to the waiter
                return
        self._locked = False


@patch
def intake_priority() -> None:
    """storage/engine.py + bot/intake.py: SQLite writes one at a time, the ack's write first,
    on connections of its own.

    Traced under load (`ack_trace`), an ack's write waited ~200 ms for a pooled connection
    (5 + 10 shared with 50 runs in flight) and then up to ~1 s in SQLite's busy handler.
    Here `Database.write(urgent=True)` (what `Intake.accept` and `first_delivery` use)
    takes an in-process write lock ahead of the workers' writes and uses a two-connection
    engine of its own; other writes take the same lock in arrival order. No SQLite busy
    sleeps remain within one process.
    """
    from contextvars import ContextVar

    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlmodel.ext.asyncio.session import AsyncSession

    from bot import intake
    from storage import engine as engine_module
    from storage.engine import Database

    urgent_flag: ContextVar[bool] = ContextVar("urgent_write", default=False)
    original_init = Database.__init__

    def __init__(self: Database, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._lock = _PriorityLock() if self.is_sqlite else None  # type: ignore[attr-defined]
        self._urgent_engine = None  # type: ignore[attr-defined]
        if self.is_sqlite:
            urgent = create_async_engine(
                self.url,
                pool_size=2,
                max_overflow=0,
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            engine_module._configure_sqlite(urgent)
            self._urgent_engine = urgent  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def write(self: Database) -> AsyncIterator[AsyncSession]:
        urgent = urgent_flag.get()
        urgent_flag.set(False)  # tasks started from here on (announcements) are not urgent
        lock = getattr(self, "_lock", None)
        if lock is not None:
            await lock.acquire(urgent)
        try:
            bind = self._urgent_engine if urgent and self._urgent_engine else self.engine  # type: ignore[attr-defined]
            async with AsyncSession(bind, expire_on_commit=False) as session:
                await session.connection(execution_options={"chatops_write": True})
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            if lock is not None:
                lock.release()

    original_dispose = Database.dispose

    async def dispose(self: Database) -> None:
        if getattr(self, "_urgent_engine", None) is not None:
            await self._urgent_engine.dispose()  # type: ignore[attr-defined]
        await original_dispose(self)

    def urgent(method: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            urgent_flag.set(True)
            return await method(*args, **kwargs)

        return wrapper

    Database.__init__ = __init__  # type: ignore[method-assign]
    Database.write = write  # type: ignore[method-assign]
    Database.dispose = dispose  # type: ignore[method-assign]
    intake.Intake.accept = urgent(intake.Intake.accept)  # type: ignore[method-assign]
    intake.Intake.first_delivery = urgent(intake.Intake.first_delivery)  # type: ignore[method-assign]


@patch
def sqlite_inline() -> None:
    """Experiment: SQLite calls made inline on the event loop instead of on aiosqlite's thread.

    Needs writes serialized within the process (the source's write lock since 89a8054, or
    intake_priority): two connections of one process must never meet in SQLite's busy
    handler, which would now block the loop.

    aiosqlite runs every DBAPI call (cursor, execute, fetch, close...) on a thread of its own
    and hands the result back through the loop: ~19 thread round trips for one intake
    transaction, ~0.25 ms of CPU for a `SELECT 1` that takes 0.02 ms with the sqlite3 module.
    Inline calls remove the hops. They would block the loop if another *process* held the
    SQLite write lock (busy_timeout), hence only as an experiment here.
    """
    import aiosqlite.core

    async def _execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    aiosqlite.core.Connection._execute = _execute  # type: ignore[method-assign]


def apply(names: str | None = None) -> list[str]:
    """Apply the named patches (comma-separated; default: $BENCH_PATCHES). Returns their names."""
    chosen = [
        n.strip() for n in (names if names is not None else os.environ.get("BENCH_PATCHES", "")).split(",")
    ]
    chosen = [n for n in chosen if n]
    for name in chosen:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")
        PATCHES[name]()
    return chosen


def summarize_trace(path: str) -> str:
    """The `ack_trace` samples as a table: where an ack's time went, p50/p90/p99 in ms."""
    import json

    from _common import percentile, table

    with open(path) as f:
        samples = json.load(f)
    for s in samples:
        if "checkout" in s:
            s["waiting for the write lock and a connection"] = s["checkout"] - s["before_write"]
            s["BEGIN IMMEDIATE (SQLite's lock)"] = (
                s["begin_wait"] - s["waiting for the write lock and a connection"]
            )
    parts = [
        ("total", "whole Intake.accept"),
        ("before_write", "before the write (role, request)"),
        ("waiting for the write lock and a connection", ""),
        ("BEGIN IMMEDIATE (SQLite's lock)", ""),
        ("statements", "the statements"),
        ("commit", "commit"),
    ]
    rows = []
    for key, label in parts:
        values = [s.get(key, 0.0) for s in samples]
        rows.append([label or key, *(f"{percentile(values, p) * 1000:.1f}" for p in (50, 90, 99))])
    return table(
        f"Where an ack's time went ({len(samples)} acks)", ["part", "p50 ms", "p90 ms", "p99 ms"], rows
    )


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "trace":
        print(summarize_trace(sys.argv[2]))
    else:
        print("usage: patches.py trace FILE   (FILE: what BENCH_TRACE named for the ack_trace patch)")
