"""Benchmark 5: growth: summary generation and the hot lookups with 100k runs stored.

A SQLite database (the default) is filled in bulk with 30 days of history: 100k requests,
100k runs (3 agents, 50 channels; mostly finished, a few hundred still active), 4 journal
steps per run, 100k processed deliveries, tickets, approvals and audit events. Then the
daily summary (`bot.summary.Summaries.report` + `render`) and the lookups that intake,
undo, status, the worker, the presenter and the watchdog make are timed through the
real storage functions, and each statement they send is explained with
`EXPLAIN QUERY PLAN`: a `SCAN <table>` line on a table that grows with history is a full
scan (of the table, or of a whole index). No ANALYZE is run: chatops never runs it, so
the plans are those a real database gets.

Target: summary <= 1 s; every lookup indexed (no full scans).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
import patches
from _common import banner, emit, median, ms, save_json, table
from sqlalchemy import create_engine, event

from agents.config import parse_config
from bot.summary import Summaries
from bot.watchdog import SlackHealth, Watchdog
from storage import approvals, controls, journal, requests, runs
from storage.engine import Database
from storage.models import (
    Approval,
    AuditEvent,
    ProcessedEvent,
    Request,
    RequestBase,
    Run,
    Step,
    Ticket,
)

AGENTS = ["ops", "support", "billing"]
GROWING = {
    "runs",
    "requests",
    "steps",
    "processed_events",
    "approvals",
    "audit_events",
    "tickets",
    "ticket_comments",
    "action_receipts",
    "alerts",
    "summary_posts",
}
"""Tables that grow with history; a scan of the others (controls, meta) stays small."""
CHANNELS = [f"C{i:04d}" for i in range(50)]
DAYS = 30
CONFIG = {
    "summary": {"channel": "CSUMMARY"},
    "agents": [{"name": a, "default": a == "ops"} for a in AGENTS],
}


def fill(path: Path, n_runs: int, seed: int = 7) -> dict[str, int]:
    """Bulk-insert the history with SQLAlchemy Core executemany (Python-side defaults applied)."""
    rng = random.Random(seed)
    engine = create_engine(f"sqlite:///{path}")
    now = datetime.now(UTC)
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=DAYS)
    span = (end - start).total_seconds()
    counts = {"requests": 0, "runs": 0, "steps": 0, "processed_events": 0}
    batch = 5000
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    for first in range(0, n_runs, batch):
        reqs, rs, steps, events = [], [], [], []
        for i in range(first, min(first + batch, n_runs)):
            active = i >= n_runs - 300  # the newest few hundred are still in flight (a few minutes old)
            created = (
                now - timedelta(seconds=n_runs - i)
                if active
                else start + timedelta(seconds=span * i / n_runs)
            )
            ts = f"{int(created.timestamp())}.{i % 1_000_000:06d}"
            agent = AGENTS[i % len(AGENTS)]
            channel = CHANNELS[rng.randrange(len(CHANNELS))]
            roll = rng.random()
            if active:
                status = ("queued", "running", "waiting")[i % 3]
            elif roll < 0.90:
                status = "succeeded"
            elif roll < 0.95:
                status = "failed"
            elif roll < 0.98:
                status = "rolled_back"
            else:
                status = "cancelled"
            reqs.append(
                {
                    "id": i + 1,
                    "kind": "mention",
                    "team_id": "T1",
                    "channel_id": channel,
                    "user_id": f"U{i % 200:04d}",
                    "ts": ts,
                    "thread_ts": ts,
                    "event_id": f"Ev{i:09d}",
                    "text": f"request {i}",
                    "agent": agent,
                    "created_at": created,
                }
            )
            finished = None if active else created + timedelta(seconds=20)
            rs.append(
                {
                    "id": i + 1,
                    "request_id": i + 1,
                    "agent": agent,
                    "status": status,
                    "team_id": "T1",
                    "channel_id": channel,
                    "thread_ts": ts,
                    "wait_reason": ("needs a human: step 2 was interrupted" if i % 2 else "paused (ops)")
                    if status == "waiting"
                    else None,
                    "worker_id": "host:1:abc" if status == "running" else None,
                    "lease_expires_at": created + timedelta(seconds=30) if status == "running" else None,
                    "planner": "gpt-4o-mini",
                    "prompt_tokens": 1200,
                    "completion_tokens": 80,
                    "outcome": "done" if not active else None,
                    "error": "an action failed" if status in ("failed", "rolled_back") else None,
                    "undone_by": "U0001" if status == "rolled_back" and i % 2 else None,
                    "status_ts": f"{ts}1",
                    "outcome_ts": None if active else f"{ts}2",
                    "undo_ts": f"{ts}3" if status == "rolled_back" and i % 2 else None,
                    "created_at": created,
                    "started_at": created,
                    "finished_at": finished,
                    "updated_at": finished or created,
                }
            )
            for seq, kind in enumerate(("model", "action", "model", "action"), start=1):
                steps.append(
                    {
                        "run_id": i + 1,
                        "seq": seq,
                        "kind": kind,
                        "name": "gpt-4o-mini" if kind == "model" else "ticket_create",
                        "tool_call_id": f"call-{i}-{seq}",
                        "status": "succeeded",
                        "output": "ok",
                        "data": {"summary": "created ticket"},
                        "undo": {"ticket_id": i} if kind == "action" else None,
                        "started_at": created,
                        "finished_at": created + timedelta(seconds=seq),
                    }
                )
            events.append({"key": f"Ev{i:09d}", "kind": "mention", "received_at": created})
        with engine.begin() as conn:
            conn.execute(Request.__table__.insert(), reqs)  # type: ignore[attr-defined]
            conn.execute(Run.__table__.insert(), rs)  # type: ignore[attr-defined]
            conn.execute(Step.__table__.insert(), steps)  # type: ignore[attr-defined]
            conn.execute(ProcessedEvent.__table__.insert(), events)  # type: ignore[attr-defined]
        counts["requests"] += len(reqs)
        counts["runs"] += len(rs)
        counts["steps"] += len(steps)
        counts["processed_events"] += len(events)
    with engine.begin() as conn:
        conn.execute(
            Ticket.__table__.insert(),  # type: ignore[attr-defined]
            [{"title": f"ticket {i}", "run_id": i + 1} for i in range(0, n_runs, 5)],
        )
        conn.execute(
            Approval.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "run_id": n_runs - i,
                    "tool_call_id": f"call-a{i}",
                    "action": "restart_service",
                    "reason": "risk high",
                    "status": "pending" if i < 20 else "approved",
                    "expires_at": end + timedelta(days=1),
                    "channel_id": CHANNELS[0],
                    "message_ts": f"1.{i}",
                }
                for i in range(500)
            ],
        )
        conn.execute(
            AuditEvent.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "actor": "U0001",
                    "action": ("pause", "resume", "undo")[i % 3],
                    "target": "agent:ops",
                    "at": start + timedelta(seconds=span * i / 3000),
                }
                for i in range(3000)
            ],
        )
    engine.dispose()
    return counts


class Recorder:
    """The statements a lookup sends, for EXPLAIN QUERY PLAN."""

    def __init__(self, db: Database) -> None:
        self.on = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if self.on and not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            self.statements.append((statement, parameters))


def explain(path: Path, statements: list[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """(plan lines, full-scan findings) for the statements.

    `SCAN t` reads the whole table; `SCAN t USING [COVERING] INDEX i` reads the whole index
    (as slow, or slower with the table lookups), unless `i` is a partial index.
    """
    con = sqlite3.connect(path)
    lines: list[str] = []
    scans: list[str] = []
    try:
        partial = {
            name
            for name, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
            if sql and " WHERE " in sql.upper()
        }
        for sql, params in statements:
            try:
                plan = con.execute("EXPLAIN QUERY PLAN " + sql, params or ()).fetchall()
            except sqlite3.Error as e:
                lines.append(f"(could not explain: {e})")
                continue
            for row in plan:
                detail = str(row[-1])
                lines.append(detail)
                m = re.match(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", detail)
                if not m or m.group(1) not in GROWING or m.group(2) in partial:
                    continue
                scans.append(f"SCAN {m.group(1)}" + (f" (all of {m.group(2)})" if m.group(2) else ""))
    finally:
        con.close()
    return lines, sorted(set(scans))


async def timed(fn: Callable[[int], Awaitable[Any]], repeat: int) -> list[float]:
    out = []
    for i in range(repeat):
        t = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_GROWTH_RUNS", "100000")))
    parser.add_argument("--repeat", type=int, default=30, help="timings per lookup")
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    args = parser.parse_args()
    applied = patches.apply(args.patch)
    banner(f"5. Growth: summary and lookups with {args.runs:,} runs stored (SQLite)")
    path = Path(tempfile.mkdtemp(prefix="chatops-bench-growth-")) / "chatops.db"
    db = Database(f"sqlite:///{path}")
    await db.migrate()
    await db.dispose()
    t = time.perf_counter()
    counts = fill(path, args.runs)
    fill_seconds = time.perf_counter() - t
    emit(f"  filled in {fill_seconds:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))

    db = Database(f"sqlite:///{path}")
    config = parse_config(CONFIG)
    rec = Recorder(db)
    summaries = Summaries(db, config, surface=None)  # type: ignore[arg-type]
    watchdog = Watchdog(db, config, surface=None, slack_health=SlackHealth())  # type: ignore[arg-type]
    rng = random.Random(11)
    n = args.runs
    day = (datetime.now(UTC) - timedelta(days=DAYS // 2)).date()

    def some_run() -> int:
        return rng.randrange(1, n + 1)

    async def read(fn: Callable[..., Awaitable[Any]], **kw: Any) -> Any:
        async with db.read() as session:
            return await fn(session=session, **kw)

    async def run_row(i: int) -> Run:
        async with db.read() as session:
            run = await runs.get_run(session=session, run_id=i)
        assert run is not None
        return run

    async def summary(_: int) -> None:
        report = await summaries.report(day)
        summaries.render(report, day)

    async def accept(i: int) -> None:
        ts = f"1800000000.{i:06d}"
        async with db.write() as session:
            await requests.record_delivery(session=session, key=f"EvNew{i}", kind="mention")
            await requests.create_request(
                session=session,
                request=RequestBase(
                    kind="mention",
                    team_id="T1",
                    channel_id=CHANNELS[i % 50],
                    user_id="U1",
                    ts=ts,
                    thread_ts=ts,
                    text="new",
                    agent="ops",
                ),
            )

    async def find_request(_: int) -> None:
        r = await run_row(some_run())
        await read(requests.find_request, team_id="T1", channel_id=r.channel_id, ts=r.thread_ts)

    async def thread_has_runs(_: int) -> None:
        r = await run_row(some_run())
        await read(requests.thread_has_runs, team_id="T1", channel_id=r.channel_id, thread_ts=r.thread_ts)

    async def latest_in_thread(_: int) -> None:
        r = await run_row(some_run())
        await read(runs.latest_run, team_id="T1", channel_id=r.channel_id, thread_ts=r.thread_ts)

    async def latest_in_channel(i: int) -> None:
        await read(runs.latest_run, team_id="T1", channel_id=CHANNELS[i % 50])

    async def steps_of(_: int) -> None:
        await read(journal.steps_of, run_id=some_run())

    async def claim(_: int) -> None:
        async with db.write() as session:
            await runs.claim_runs(
                session=session, worker_id="bench", limit=0 + 50, lease=timedelta(seconds=30)
            )
            await session.rollback()  # leave the queue as it was

    async def run_ahead(_: int) -> None:
        await read(runs.run_ahead, run=await run_row(n - 299))

    lookups: list[tuple[str, str, Callable[[int], Awaitable[Any]]]] = [
        ("summary", "report + render of one day", summary),
        ("intake", "accept: record_delivery + create_request", accept),
        ("intake", "requests.find_request", find_request),
        ("intake", "requests.thread_has_runs (follow-up in a thread)", thread_has_runs),
        ("undo", "runs.latest_run in a thread", latest_in_thread),
        ("undo", "runs.latest_run in a channel", latest_in_channel),
        ("undo", "runs.get_run", lambda _: run_row(some_run())),
        ("undo", "journal.steps_of", steps_of),
        ("status", "controls.all_controls", lambda _: read(controls.all_controls)),
        ("status", "runs.runs_in_flight", lambda _: read(runs.runs_in_flight)),
        ("status", "approvals.pending_approvals", lambda _: read(approvals.pending_approvals)),
        ("worker", "runs.claim_runs (100 queued)", claim),
        ("worker", "runs.lease_holders (start-up)", lambda _: read(runs.lease_holders)),
        ("presenter", "runs.run_ahead", run_ahead),
        ("housekeeping", "runs.finished_without_outcome", lambda _: read(runs.finished_without_outcome)),
        ("housekeeping", "approvals.unposted_approvals", lambda _: read(approvals.unposted_approvals)),
        ("/metrics", "runs.count_active", lambda _: read(runs.count_active)),
        ("watchdog", "Watchdog.conditions (every minute)", lambda _: watchdog.conditions()),
    ]
    rows = []
    results: list[dict[str, Any]] = []
    try:
        for who, what, fn in lookups:
            await fn(10**5)  # warm the statement cache and the page cache
            rec.statements.clear()
            rec.on = True
            await fn(10**5 + 1)
            rec.on = False
            statements = list(rec.statements)
            repeat = 5 if who in ("summary", "watchdog") else args.repeat
            times = await timed(fn, repeat)
            plan, scans = explain(path, statements)
            rows.append(
                [who, what, ms(median(times)), ms(max(times)), len(statements), ", ".join(scans) or "none"]
            )
            results.append(
                {
                    "who": who,
                    "what": what,
                    "median": median(times),
                    "max": max(times),
                    "statements": [s for s, _ in statements],
                    "plan": plan,
                    "scans": scans,
                }
            )
    finally:
        await db.dispose()
    label = f"; patches: {','.join(applied)}" if applied else ""
    emit(
        table(
            f"With {counts['runs']:,} runs, {counts['steps']:,} steps stored "
            f"({args.repeat} timings per lookup{label})",
            ["used by", "lookup", "median ms", "max ms", "statements", "full scans"],
            rows,
        )
    )
    summary_s = float(results[0]["median"])
    scanning = [r for r in results if r["scans"]]
    emit(
        table(
            "Targets",
            ["target", "measured", "status"],
            [
                ["summary <= 1 s", f"{summary_s * 1000:.0f} ms", "met" if summary_s <= 1 else "NOT met"],
                [
                    "lookups indexed (no full scans)",
                    "; ".join(f"{r['what']}: {', '.join(r['scans'])}" for r in scanning) or "no full scans",
                    "met" if not scanning else "NOT met",
                ],
            ],
        )
    )
    save_json(
        "growth",
        {
            "patches": applied,
            "counts": counts,
            "fill_seconds": fill_seconds,
            "day": str(day),
            "results": results,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
