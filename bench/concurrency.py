"""Benchmark 3: 500 runs at once in one process, each 3 model turns of 1 s simulated latency.

One process with chatops's real services (`bot.services.build_services`: worker, runtime,
presenter on the Slack Web API, the OpenAI client) with CHATOPS_WORKERS = the number of
runs. The model is an OpenAI-compatible server on loopback (bench/model_server.py) that
answers each request after 1 s: two turns that call a no-op action, then an answer, so
a run has 5 steps and at least 3 s of model time. Slack is the loopback fake in its own
process. All runs are queued first, then the worker starts; the wall time from its start
until every run has finished and posted its outcome is compared with the ideal 3 s.

Targets: wall time <= 2x the ideal; peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path)
import patches
from _common import (
    BOT_TOKEN,
    PYTHON,
    USERS,
    FakeSlackProcess,
    ModelProcess,
    Postgres,
    banner,
    children,
    cpu_seconds,
    emit,
    peak_rss_mb,
    rss_mb,
    save_json,
    settings,
    table,
)
from orchestration import Noop
from sqlalchemy import event
from sqlmodel import col, func, select

from agents.config import parse_config
from bot.runner import settle_memory
from bot.services import build_services
from bot.surface import SlackSurface, make_client
from storage.models import FINAL_STATUSES, RequestBase, Run
from storage.requests import create_request

CONFIG = {
    "agents": [{"name": "ops", "default": True, "actions": ["noop"]}],
    "actions": [
        {"name": "noop", "description": "Does nothing.", "kind": "command", "run": "true", "read_only": True}
    ],
}


async def queue_runs(
    services: object, n: int, *, text: str = "do nothing, twice", agent: str = "ops"
) -> None:
    """`n` requests of `agent`, each a mention in one of 20 channels, queued at once."""
    db = services.db  # type: ignore[attr-defined]
    async with db.write() as session:
        for i in range(n):
            ts = f"1700000000.{i:06d}"
            request = RequestBase(
                kind="mention",
                team_id="T1",
                channel_id=f"C{i % 20:03d}",
                user_id=USERS[i % len(USERS)],
                ts=ts,
                thread_ts=ts,
                text=text,
                agent=agent,
            )
            assert await create_request(session=session, request=request) is not None


async def one_config(
    url: str, label: str, slack: FakeSlackProcess, model: ModelProcess, n: int
) -> dict[str, object]:
    s = settings(
        slack_api_url=slack.url,
        database_url=url,
        openai_api_key="sk-bench",
        openai_base_url=model.url,
        chatops_model="bench-model",
        chatops_workers=max(n, 1),
        chatops_model_timeout=60.0,
    )
    client = make_client(BOT_TOKEN, slack.url)
    services = build_services(s, SlackSurface(client), config=parse_config(CONFIG))
    services.runtime.registry._actions["noop"] = Noop()
    await services.db.migrate()
    await queue_runs(services, n)
    statements = [0]

    def seen(*_: object) -> None:
        statements[0] += 1

    event.listen(services.db.engine.sync_engine, "before_cursor_execute", seen)
    settle_memory()  # as `chatops serve` and `chatops worker` do once started
    before = rss_mb()
    cpu0 = cpu_seconds()
    stats0 = model.stats()
    start = time.perf_counter()
    await services.worker.run_until_idle(timeout=300)
    await services.presenter.drain()
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    stats1 = model.stats()
    async with services.db.read() as session:
        done = (await session.exec(select(func.count()).where(col(Run.status).in_(FINAL_STATUSES)))).one()
        ok = (await session.exec(select(func.count()).where(col(Run.status) == "succeeded"))).one()
        reported = (await session.exec(select(func.count()).where(col(Run.outcome_ts).is_not(None)))).one()
    await services.close()
    return {
        "database": label,
        "runs": n,
        "wall": wall,
        "finished": int(done),
        "succeeded": int(ok),
        "reported": int(reported),
        "rss_before": before,
        "cpu_ms_per_run": cpu / n * 1000,
        "statements_per_run": statements[0] / n,
        "model_requests": stats1["requests"] - stats0["requests"],
        "model_max_in_flight": stats1["max_in_flight"],
    }


async def measure_one(args: argparse.Namespace) -> dict[str, object]:
    """One database, in this process (so the peak RSS is this configuration's alone)."""
    patches.apply(args.patch)
    with children() as started:
        slack = FakeSlackProcess()
        started.append(slack)
        model = ModelProcess(delay=args.delay, turns=3)
        started.append(model)
        label = "sqlite" if args.one.startswith("sqlite") else "postgresql"
        result = await one_config(args.one, label, slack, model, args.runs)
        result["peak_rss"] = peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_CONC_RUNS", "500")))
    parser.add_argument("--delay", type=float, default=1.0, help="simulated model latency per turn")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="which to measure, each in its own process"
    )
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: measure this URL here
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = asyncio.run(measure_one(args))
        Path(args.out).write_text(json.dumps(result))
        return
    banner(f"3. Concurrency: {args.runs} runs at once, 3 model turns of {args.delay:g} s each, one process")
    ideal = 3 * args.delay
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-conc-"))
    for name in args.databases.split(","):
        pg = Postgres("chatops_bench_concurrency") if name == "postgresql" else None
        url = pg.url if pg else f"sqlite:///{tmp / 'chatops.db'}"
        out = tmp / f"{name}.json"
        try:
            subprocess.run(
                [
                    PYTHON,
                    __file__,
                    "--one",
                    url,
                    "--out",
                    str(out),
                    f"--runs={args.runs}",
                    f"--delay={args.delay}",
                    f"--patch={args.patch}",
                ],
                check=True,
                timeout=600,
            )
        finally:
            if pg:
                pg.close()
        results.append(json.loads(out.read_text()))
    rows = [
        [
            r["database"],
            r["runs"],
            f"{r['wall']:.2f}",
            f"{ideal:g}",
            f"{r['wall'] / ideal:.2f}",
            f"{r['succeeded']}/{r['runs']}",
            r["reported"],
            r["model_requests"],
            r["model_max_in_flight"],
            f"{r['cpu_ms_per_run']:.1f}",
            f"{r['statements_per_run']:.0f}",
            f"{r['rss_before']:.0f}",
            f"{r['peak_rss']:.0f}",
        ]
        for r in results
    ]
    label = f"; patches: {args.patch}" if args.patch else ""
    emit(
        table(
            f"{args.runs} concurrent runs in one process{label}",
            [
                "database",
                "runs",
                "wall s",
                "ideal s",
                "x ideal",
                "succeeded",
                "outcomes posted",
                "model requests",
                "max model requests in flight",
                "CPU ms per run",
                "SQL statements per run",
                "RSS before MB",
                "peak RSS MB",
            ],
            rows,
        )
    )
    verdicts = []
    for r in results:
        verdicts.append(
            [
                f"wall <= 2x ideal ({r['database']})",
                f"{r['wall'] / ideal:.2f}x",
                "met" if r["wall"] <= 2 * ideal else "NOT met",
            ]
        )
        verdicts.append(
            [
                f"peak RSS <= 300 MB ({r['database']})",
                f"{r['peak_rss']:.0f} MB",
                "met" if r["peak_rss"] <= 300 else "NOT met",
            ]
        )
    emit(table("Targets", ["target", "measured", "status"], verdicts))
    save_json("concurrency", {"patches": args.patch, "results": results})


if __name__ == "__main__":
    main()
