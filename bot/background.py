"""The runs' side of a process: workers and scheduled jobs, and (in `chatops serve`) their
own thread and event loop, so that an ack never waits for them.

On one event loop, a delivery's ack waited behind every run's step and refresh that was
ready before it (asyncio serves ready callbacks first come, first served): 37-67 ms at
p99 at 200 events/s while the bare bolt app answered in 2 (docs/benchmarks.md, issue 18).
`RunsThread` gives the runs a thread and event loop of their own, built as a `chatops
worker` process builds its services (its own database engine, Slack and model clients,
presenter), so the intake's loop has nothing to do but the intake. What the two share:

- the SQLite write lock of the file (storage.engine): the intake's writes go first;
- the record of failed Slack calls (the watchdog reads it);
- the runs' presenter: the intake's forwards to it (`Presenter.forward_to`), so one
  presenter shows each run and paces its edits;
- a wake-up: a queued run wakes the workers through their loop (`call_soon_threadsafe`).

The threads take turns at the interpreter; `ACK_SWITCH_INTERVAL` makes a turn short, so
the intake's thread, which wants the interpreter for a moment at a time, gets it soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from bot.services import Services
from storage.engine import URGENT_WAIT_HOOKS, urgent_writer_waiting

log = logging.getLogger(__name__)

ACK_SWITCH_INTERVAL = 0.0001
"""Seconds a thread runs before another that waits for the interpreter gets its turn
(`sys.setswitchinterval`; Python's default is 0.005). Measured in docs/benchmarks.md."""

START_LIMIT = 60.0
"""Seconds the runs' services may take to build (they connect to nothing while building)."""


async def work(services: Services, *, workers: bool, scheduler: bool) -> None:
    """Workers and the scheduler until cancelled; then stop the workers gracefully."""
    from bot import scheduler as scheduling

    if services.runtime.mcp is not None:
        services.runtime.mcp.start()  # in the background: a slow MCP server holds up nothing
    runs = asyncio.create_task(services.worker.run_forever()) if workers else None
    jobs = await scheduling.start(services) if scheduler else None
    services.scheduler_running = jobs is not None
    try:
        if runs is not None:
            await runs
        else:
            await asyncio.Event().wait()  # until cancelled
    finally:
        if runs is not None:
            runs.cancel()
        if workers:
            await services.worker.stop()
        if jobs is not None:
            jobs.shutdown(wait=False)
            services.scheduler_running = False


class RunsThread:
    """`work` on a thread and event loop of its own, with services that `build` makes there."""

    def __init__(self, build: Callable[[], Services], *, workers: bool, scheduler: bool) -> None:
        self._build = build
        self._workers = workers
        self._scheduler = scheduler
        self.services: Services | None = None
        """The runs' services, once started (read them from other threads only as facts:
        whether the workers are alive, how many runs are in flight)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._stop_asked = threading.Event()  # stop() may come while the services are built
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="chatops-runs", daemon=True)

    async def start(self) -> Services:
        """Start the thread; return the runs' services once built (raises what building raised)."""
        self._thread.start()
        ready = await asyncio.to_thread(self._started.wait, START_LIMIT)
        if self.error is not None:
            raise self.error
        if not ready or self.services is None:
            raise RuntimeError(f"the runs' services did not start within {START_LIMIT:g}s")
        return self.services

    def wake(self) -> None:
        """Wake the workers (a run was queued or released); callable from any thread."""
        loop, services = self.loop, self.services
        if loop is None or services is None:
            return
        with contextlib.suppress(RuntimeError):  # its loop has closed: the process is stopping
            loop.call_soon_threadsafe(services.worker.wake)

    async def finished(self) -> None:
        """Wait until the runs stop; raises what stopped them, if it was an error."""
        await asyncio.to_thread(self._thread.join)
        if self.error is not None:
            raise self.error

    async def stop(self) -> None:
        """Stop the runs gracefully (as `work` does) and close their services."""
        self._stop_asked.set()
        loop, stopping = self.loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=runs_loop) as runner:
                runner.run(self._run())
        except BaseException as e:  # broad on purpose: reported to whoever waits for the thread
            self.error = e
            log.exception("the runs' thread stopped")
        finally:
            self._started.set()

    async def _run(self) -> None:
        self._stopping = asyncio.Event()
        services = self._build()
        try:
            self.services = services
            self.loop = asyncio.get_running_loop()
            if self._stop_asked.is_set():  # asked while the services were built
                self._stopping.set()
            running = asyncio.create_task(work(services, workers=self._workers, scheduler=self._scheduler))
            self._started.set()
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not running.done():
                running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running  # raises what stopped the runs, if it was an error
        finally:
            await services.close()


class Turns:
    """The intake first: while the intake's loop has work, the runs' loop waits for it.

    The threads share one interpreter; whichever holds it runs, and the switch interval only
    makes the turns short. Measured, the intake then took twice its own CPU time to answer,
    as the runs' thread took every other turn. So the intake's loop says when it has
    something to do (an event came in, its callbacks are not done) and when it is idle (it
    is about to wait for the network), and the runs' loop, between two rounds of its
    callbacks, waits while the intake is busy, without the interpreter. The wait is bounded
    (`YIELD_LIMIT`), so a flood of deliveries slows the runs but never stops them, and it
    cannot deadlock: an intake that waits for anything (Slack, the network) is idle, and one
    that waits for the write lock lets the runs go on at once (they may hold it).
    """

    def __init__(self) -> None:
        self._idle = threading.Event()
        self._idle.set()

    def busy(self) -> None:
        self._idle.clear()

    def idle(self) -> None:
        self._idle.set()

    def give_way(self) -> None:
        """Wait (up to YIELD_LIMIT) while the intake has work; at once when it has none, or
        when it waits for the write lock (the runs may hold it: they go on and release it)."""
        if not self._idle.is_set() and not urgent_writer_waiting():
            self._idle.wait(YIELD_LIMIT)

    def let_go(self) -> None:
        """An urgent writer waits for the write lock: a waiting round goes on at once."""
        self._idle.set()


YIELD_LIMIT = 0.01
"""Seconds the runs' loop waits at most, per round of its callbacks, for a busy intake."""

TURNS = Turns()
"""The process's: one intake loop and one runs' loop per `chatops serve`."""
URGENT_WAIT_HOOKS.append(TURNS.let_go)


class _Selector(selectors.BaseSelector):
    """The event loop's selector (`selectors.DefaultSelector`), with a word to `Turns`."""

    def __init__(self, turns: Turns) -> None:
        self._inner = selectors.DefaultSelector()
        self.turns = turns

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._inner.select(timeout)


class _IntakeSelector(_Selector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:  # nothing ready to run: the loop waits for the network
            self.turns.idle()
        events = self._inner.select(timeout)
        if events:
            self.turns.busy()
        return events


class _RunsSelector(_Selector):
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(timeout)
        self.turns.give_way()  # before this round of callbacks
        return events


def intake_loop() -> asyncio.AbstractEventLoop:
    """The event loop of `chatops serve`'s intake: it tells the runs' loop when it is busy."""
    return asyncio.SelectorEventLoop(_IntakeSelector(TURNS))


def runs_loop() -> asyncio.AbstractEventLoop:
    """The event loop of the runs' thread: it gives way to a busy intake (see Turns)."""
    return asyncio.SelectorEventLoop(_RunsSelector(TURNS))


def share_the_interpreter() -> None:
    """Short turns between the threads (see ACK_SWITCH_INTERVAL); once per process."""
    if sys.getswitchinterval() > ACK_SWITCH_INTERVAL:
        sys.setswitchinterval(ACK_SWITCH_INTERVAL)
