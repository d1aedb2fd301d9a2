"""Profile: where a run's CPU time goes (not part of `make bench`; see docs/benchmarks.md).

The run of benchmark 3 (3 model turns, 2 no-op actions: 5 steps), with zero model latency,
worked by the real services on SQLite, in four variants that remove one part at a time:
the presenter (status message, edits, outcome, reactions through the Slack Web API) and
the OpenAI client (HTTP to the loopback model). The differences say what each part costs.
Also: the cost of one database statement through the async stack against the sqlite3
module, which is what most of the runtime's time is.
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
import patches
from _common import BOT_TOKEN, FakeSlackProcess, ModelProcess, banner, children, emit, settings, table
from concurrency import CONFIG, queue_runs
from orchestration import Noop, NullReporter, ZeroLatencyModel
from sqlalchemy import create_engine, text
from sqlmodel import Session

from agents.config import parse_config
from bot.services import build_services
from bot.surface import SlackSurface, make_client
from storage.engine import Database
from storage.models import Request, Run


def cpu() -> float:
    return time.process_time()


async def variant(
    slack: FakeSlackProcess, model: ModelProcess, *, presenter: bool, client: bool, n: int, concurrency: int
) -> tuple[float, float]:
    """(wall ms per run, CPU ms per run)."""
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-cost-"))
    s = settings(
        slack_api_url=slack.url,
        database_url=f"sqlite:///{tmp / 'chatops.db'}",
        openai_api_key="sk-bench",
        openai_base_url=model.url,
        chatops_model="bench-model",
        chatops_workers=concurrency,
    )
    services = build_services(s, SlackSurface(make_client(BOT_TOKEN, slack.url)), config=parse_config(CONFIG))
    services.runtime.registry._actions["noop"] = Noop()
    if not presenter:
        services.runtime.reporter = NullReporter()
    if not client:
        scripted = ZeroLatencyModel(2)
        services.runtime.planner_for = lambda _agent: scripted
    await services.db.migrate()
    await queue_runs(services, n)
    c, t = cpu(), time.perf_counter()
    await services.worker.run_until_idle(timeout=300)
    await services.presenter.drain()
    wall, used = time.perf_counter() - t, cpu() - c
    await services.close()
    return wall / n * 1000, used / n * 1000


async def statement_costs(repeat: int = 2000) -> list[list[str]]:
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-cost-"))
    db = Database(f"sqlite:///{tmp / 'chatops.db'}")
    await db.migrate()
    async with db.write() as session:
        session.add(
            Request(kind="mention", channel_id="C", user_id="U", ts="1", thread_ts="1", text="x", agent="ops")
        )
    async with db.write() as session:
        session.add(Run(request_id=1, agent="ops", channel_id="C", thread_ts="1"))
    rows: list[list[str]] = []

    async def timed_async(label: str, fn: Any) -> None:
        async with db.read() as session:
            await fn(session)
            c, t = cpu(), time.perf_counter()
            for _ in range(repeat):
                await fn(session)
            rows.append(
                [
                    "async (SQLAlchemy + aiosqlite)",
                    label,
                    f"{(time.perf_counter() - t) / repeat * 1e6:.0f}",
                    f"{(cpu() - c) / repeat * 1e6:.0f}",
                ]
            )

    await timed_async("SELECT 1", lambda s: s.exec(text("SELECT 1")))
    await timed_async("session.get(Run)", lambda s: s.get(Run, 1, populate_existing=True))
    c, t = cpu(), time.perf_counter()
    for _ in range(repeat // 4):
        async with db.write():
            pass
    rows.append(
        [
            "async (SQLAlchemy + aiosqlite)",
            "empty write transaction",
            f"{(time.perf_counter() - t) / (repeat // 4) * 1e6:.0f}",
            f"{(cpu() - c) / (repeat // 4) * 1e6:.0f}",
        ]
    )
    await db.dispose()
    engine = create_engine(f"sqlite:///{tmp / 'chatops.db'}")
    with Session(engine) as sync_session:
        for label, fn in (
            ("SELECT 1", lambda: sync_session.exec(text("SELECT 1"))),  # type: ignore[call-overload]
            ("session.get(Run)", lambda: sync_session.get(Run, 1, populate_existing=True)),
        ):
            fn()
            c, t = cpu(), time.perf_counter()
            for _ in range(repeat):
                fn()
            rows.append(
                [
                    "sync (SQLAlchemy + sqlite3)",
                    label,
                    f"{(time.perf_counter() - t) / repeat * 1e6:.0f}",
                    f"{(cpu() - c) / repeat * 1e6:.0f}",
                ]
            )
    engine.dispose()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    args = parser.parse_args()
    applied = patches.apply(args.patch)
    banner("Profile: CPU per run by part, and the cost of one database statement")
    rows = []
    with children() as started:
        slack = FakeSlackProcess()
        started.append(slack)
        model = ModelProcess(delay=0, turns=3)
        started.append(model)
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for presenter, client, label in (
                (False, False, "runtime only (in-process model, no presenter)"),
                (False, True, "+ OpenAI client (loopback model)"),
                (True, False, "+ presenter (Slack Web API), in-process model"),
                (True, True, "everything"),
            ):
                wall, used = await variant(
                    slack, model, presenter=presenter, client=client, n=args.runs, concurrency=concurrency
                )
                rows.append([concurrency, label, f"{wall:.1f}", f"{used:.1f}"])
    label = f"; patches: {','.join(applied)}" if applied else ""
    emit(
        table(
            f"A 5-step run ({args.runs} runs per line, SQLite{label})",
            ["runs at once", "what runs", "wall ms per run", "CPU ms per run"],
            rows,
        )
    )
    emit(
        table(
            "One statement",
            ["stack", "statement", "wall µs", "CPU µs"],
            await statement_costs(),
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
