"""Benchmark 6: scale-out on PostgreSQL: throughput with 1, 2 and 4 `chatops worker` processes.

The project's throwaway PostgreSQL cluster (scripts/postgres.sh; started here if it is
not running, and then stopped again) holds a fresh database of ours. For each number of
processes, that many real `chatops worker` processes are started (CHATOPS_WORKERS=50
each, the offline planner, Slack = the loopback fake in its own process); once they are
connected, N runs are queued in one transaction ("create a ticket for ...": 2 model
turns and one ticket action, with the status message, edits, outcome and reactions in
Slack). Throughput is N over the time from the first run started to the last finished
(both from the journal). Every run must have been claimed once and made one ticket.
The process counts are measured in interleaved rounds (1, 2, 4, 1, 2, 4) and the median
round is shown, with every round's figure beside it: a shared machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import (
    BOT_TOKEN,
    PYTHON,
    REPO,
    USERS,
    Child,
    FakeSlackProcess,
    Postgres,
    banner,
    children,
    cpu_seconds,
    emit,
    postgres_cpu_seconds,
    save_json,
    table,
)
from sqlmodel import col, func, select

from storage.engine import Database
from storage.models import FINAL_STATUSES, RequestBase, Run, Ticket
from storage.requests import create_request


async def reset(db: Database) -> None:
    async with db.engine.begin() as conn:
        from sqlmodel import SQLModel

        await conn.run_sync(SQLModel.metadata.drop_all)
    await db.migrate()


async def queue(db: Database, n: int, tag: str) -> None:
    async with db.write() as session:
        for i in range(n):
            ts = f"1700000000.{i:06d}"
            request = RequestBase(
                kind="mention",
                team_id="T1",
                channel_id=f"C{i % 50:03d}",
                user_id=USERS[i % len(USERS)],
                ts=ts,
                thread_ts=ts,
                text=f"create a ticket for load test {tag} {i}",
                agent="ops",
            )
            assert await create_request(session=session, request=request) is not None


async def finished(db: Database) -> int:
    async with db.read() as session:
        return int(
            (await session.exec(select(func.count()).where(col(Run.status).in_(FINAL_STATUSES)))).one()
        )


async def one(
    db: Database, pg: Postgres, slack: FakeSlackProcess, processes: int, n: int, limit: float, patch: str
) -> dict[str, object]:
    await reset(db)
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-scale-"))
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": slack.url,
        "DATABASE_URL": pg.url,
        "CHATOPS_WORKERS": "50",
    }
    command = [str(Path(PYTHON).parent / "chatops")]
    if patch:  # the same entry point, with bench/patches.py changes applied first
        command = [PYTHON, str(REPO / "bench" / "chatops_patched.py")]
        env["BENCH_PATCHES"] = patch
    with children() as started:
        for i in range(processes):
            started.append(Child(f"worker{i}", [*command, "worker"], env=env, cwd=tmp))
        deadline = time.monotonic() + 60
        while pg.connections() < processes and time.monotonic() < deadline:  # noqa: ASYNC110 (polling another process)
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # every worker past its first poll
        cpu0 = sum(cpu_seconds(c.pid) for c in started)
        pg0, slack0 = postgres_cpu_seconds(pg.database), cpu_seconds(slack.pid)
        t0 = time.monotonic()
        await queue(db, n, f"{processes}p")
        while await finished(db) < n and time.monotonic() - t0 < limit:  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.25)
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(c.pid) for c in started) - cpu0
        pg_cpu, slack_cpu = postgres_cpu_seconds(pg.database) - pg0, cpu_seconds(slack.pid) - slack0
    async with db.read() as session:
        first = (await session.exec(select(func.min(Run.started_at)))).one()
        last = (await session.exec(select(func.max(Run.finished_at)))).one()
        done = (await session.exec(select(func.count()).where(col(Run.status) == "succeeded"))).one()
        twice = (await session.exec(select(func.count()).where(col(Run.attempts) > 1))).one()
        tickets = (await session.exec(select(func.count()).select_from(Ticket))).one()
    busy = (last - first).total_seconds() if first and last else float("nan")
    return {
        "processes": processes,
        "runs": n,
        "succeeded": int(done),
        "seconds": busy,
        "wall": wall,
        "throughput": n / busy if busy == busy and busy > 0 else float("nan"),
        "claimed_twice": int(twice),
        "tickets": int(tickets),
        "cpu_seconds": cpu,
        "postgres_cpu_seconds": pg_cpu,
        "slack_cpu_seconds": slack_cpu,
    }


def used(r: dict[str, Any]) -> float:
    """The share of the machine's CPUs that the workers, PostgreSQL and the fake Slack used."""
    busy = r["cpu_seconds"] + r["postgres_cpu_seconds"] + r["slack_cpu_seconds"]
    return float(busy / r["wall"] / (os.cpu_count() or 1))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_SCALE_RUNS", "600")))
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds over the process counts; the median round is shown"
    )
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--limit", type=float, default=240.0, help="seconds allowed per configuration")
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    args = parser.parse_args()
    banner("6. Scale-out on PostgreSQL: chatops worker processes draining queued runs")
    pg = Postgres("chatops_bench_scale")
    results: list[dict[str, Any]] = []
    rounds: dict[int, list[dict[str, Any]]] = {}
    try:
        db = Database(pg.url)
        with children() as started:
            slack = FakeSlackProcess()
            started.append(slack)
            counts = [int(p) for p in args.processes.split(",")]
            for round_ in range(args.repeat):  # interleaved, so a busy moment hits every count alike
                for k in counts:
                    r = await one(db, pg, slack, k, args.runs, args.limit, args.patch)
                    emit(f"  round {round_ + 1}, {k} process(es): {r['throughput']:.1f} runs/s")
                    rounds.setdefault(k, []).append(r)
        await db.dispose()
    finally:
        pg.close()
    for measured in rounds.values():
        ordered = sorted(measured, key=lambda r: r["throughput"])
        chosen = dict(ordered[(len(ordered) - 1) // 2])  # the median (the lower one of two)
        chosen["all"] = ", ".join(f"{r['throughput']:.1f}" for r in measured)
        results.append(chosen)
    base = results[0]["throughput"] if results else float("nan")
    rows = [
        [
            r["processes"],
            r["runs"],
            f"{r['succeeded']}",
            f"{r['seconds']:.1f}",
            f"{r['throughput']:.1f}",
            r["all"],
            f"{r['throughput'] / base:.2f}",
            f"{r['cpu_seconds'] / r['runs'] * 1000:.1f}",
            f"{r['postgres_cpu_seconds'] / r['runs'] * 1000:.1f}",
            f"{r['slack_cpu_seconds'] / r['runs'] * 1000:.1f}",
            f"{used(r):.0%}",
            r["claimed_twice"],
            r["tickets"],
        ]
        for r in results
    ]
    emit(
        table(
            f"Throughput on PostgreSQL ({args.runs} queued runs, 3 steps each; median of {args.repeat} "
            f"rounds; {os.cpu_count()} CPUs shared "
            "by the workers, PostgreSQL and the fake Slack"
            + (f"; patches: {args.patch})" if args.patch else ")"),
            [
                "worker processes",
                "runs",
                "succeeded",
                "seconds",
                "runs/s",
                "runs/s in each round",
                "speed-up",
                "worker CPU ms/run",
                "PostgreSQL CPU ms/run",
                "fake Slack CPU ms/run",
                "machine CPU used",
                "runs claimed twice",
                "tickets made",
            ],
            rows,
        )
    )
    save_json("scale_out", {"patches": args.patch, "rounds": {str(k): v for k, v in rounds.items()}})


if __name__ == "__main__":
    asyncio.run(main())
