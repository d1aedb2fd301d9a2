"""Monkeypatches for measuring: `BENCH_PATCHES=a,b` (or `--patch a,b` on the scripts) turns them on;
`make bench` measures the source as it is.

The source changes the first profiles pointed to were measured here as patches before they
became source (docs/benchmarks.md, "What changed"). What remains is diagnostic: `ack_trace`
records where an ack's time goes, and changes nothing chatops does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

PATCHES: dict[str, Callable[[], None]] = {}


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    PATCHES[fn.__name__] = fn
    return fn


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
    async def write(self: Database, **options: Any) -> AsyncIterator[Any]:
        trace = in_ack.get()
        if trace is None:
            async with original_write(self, **options) as session:
                yield session
            return
        t0 = time.perf_counter()
        trace["before_write"] = t0 - trace["start"]
        async with original_write(self, **options) as session:
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

        def _checkout(*_: Any) -> None:
            trace = in_ack.get()
            if trace is not None and "checkout" not in trace:
                trace["checkout"] = time.perf_counter() - trace["start"]

        for engine in (self.engine, getattr(self, "_urgent_engine", None)):
            if engine is not None:  # the intake's writes have an engine of their own on SQLite
                event.listen(engine.sync_engine, "checkout", _checkout)

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


@patch
def one_loop() -> None:
    """The design before issue 18: the runs on the intake's event loop (for before/after)."""
    from bot import runner

    original = runner.Server.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["runs_thread"] = False
        original(self, *args, **kwargs)

    runner.Server.__init__ = init  # type: ignore[method-assign]


@patch
def switch_interval() -> None:
    """The runs' thread's switch interval from $BENCH_SWITCH_INTERVAL (seconds), to choose it."""
    from bot import background

    background.ACK_SWITCH_INTERVAL = float(os.environ["BENCH_SWITCH_INTERVAL"])


@patch
def no_turns() -> None:
    """The runs' loop never gives way to a busy intake (bot.background.Turns), for before/after."""
    from bot import background

    background.Turns.give_way = lambda self: None  # type: ignore[method-assign]


@patch
def yield_limit() -> None:
    """The runs' loop's longest wait for a busy intake from $BENCH_YIELD_LIMIT (seconds), to choose it."""
    from bot import background

    background.YIELD_LIMIT = float(os.environ["BENCH_YIELD_LIMIT"])


@patch
def gc_pauses() -> None:
    """Diagnostics, not a fix: the garbage collector's pauses (count, total, longest, per
    generation), written to $BENCH_GC at exit."""
    import atexit
    import gc
    import json
    import time

    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)

    def write() -> None:
        summary = {
            str(g): {"count": len(p), "total_ms": sum(p) * 1000, "max_ms": max(p, default=0) * 1000}
            for g, p in pauses.items()
        }
        with open(os.environ["BENCH_GC"], "w", encoding="utf-8") as f:
            json.dump(summary, f)

    atexit.register(write)


@patch
def gc_threshold() -> None:
    """The collector's thresholds from $BENCH_GC_THRESHOLD ("700,10,10" is Python's), to choose them."""
    import gc

    gc.set_threshold(*(int(t) for t in os.environ["BENCH_GC_THRESHOLD"].split(",")))


@patch
def turns_per_callback() -> None:
    """Experiment: the runs' loop gives way to a busy intake before each callback, not only
    before each round of them (its ready queue's popleft asks `Turns`)."""
    import asyncio
    import collections

    from bot import background

    class GivingWay(collections.deque[object]):
        def popleft(self) -> object:
            background.TURNS.give_way()
            return super().popleft()

    def runs_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.SelectorEventLoop(background._RunsSelector(background.TURNS))
        loop._ready = GivingWay()  # type: ignore[attr-defined]
        return loop

    background.runs_loop = runs_loop


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
