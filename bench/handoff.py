"""Benchmark 7: 100 cases at once in one process, each a chain of three agents (A -> B -> C).

One process with chatops's real services (`bot.services.build_services`: worker, runtime,
presenter on the Slack Web API, the OpenAI client), as in benchmark 3. Three agents are
configured with `handoffs`: `a` may hand to `b`, `b` to `c`; `b` and `c` report in channels of
their own (a new thread each, linked to the origin). The model (bench/model_server.py
--handoffs, 0.2 s per turn) makes every request one case: `a` calls `transfer_to_b` and waits,
`b` calls `transfer_to_c` and waits, `c` calls a no-op action and answers, then `b` and `a`
each read the outcome handed back and answer. A case is 3 runs, 9 steps, 6 model turns one
after the other (the ideal wall time is 6 x the latency) and 5 attempts (`a` and `b` are
worked twice: before and after their wait). All requests are queued first, then the worker
starts; the wall time runs until every run has finished and posted its outcome.

A case counts as succeeded only if the database shows exactly that: three runs linked as a
chain (one case id, each run the parent of the next), each succeeded with its outcome posted
in a thread of its own, each with the steps above, every step succeeded, each handoff step
naming the run it started.

No target of its own (issue 18 asks for the benchmark); the per-run figures compare with
benchmark 3's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import (
    BOT_TOKEN,
    FakeSlackProcess,
    ModelProcess,
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
from concurrency import queue_runs
from orchestration import Noop
from sqlalchemy import event
from sqlmodel import col, select

from agents.config import parse_config
from bot.runner import settle_memory
from bot.services import build_services
from bot.surface import SlackSurface, make_client
from storage.models import Run, RunStatus, Step, StepKind, StepStatus

CHAIN = ("a", "b", "c")
CHANNELS = {"b": "CB", "c": "CC"}
RUNS_PER_CASE = len(CHAIN)
TURNS_PER_CASE = 6  # a, b, c, c, b, a: one after the other
NOOP = {"name": "noop", "description": "Does nothing.", "kind": "command", "run": "true", "read_only": True}
CONFIG = {
    "agents": [
        {"name": "a", "default": True, "actions": ["noop"], "handoffs": ["b"]},
        {"name": "b", "channels": [CHANNELS["b"]], "actions": ["noop"], "handoffs": ["c"]},
        {"name": "c", "channels": [CHANNELS["c"]], "actions": ["noop"]},
    ],
    "actions": [NOOP],
}
EXPECTED_STEPS = {  # each run's steps in order: a model turn, or the action called
    "a": ["model", "transfer_to_b", "model"],
    "b": ["model", "transfer_to_c", "model"],
    "c": ["model", "noop", "model"],
}


def check_case(first: Run, runs_by_parent: dict[int, Run], steps: dict[int, list[Step]]) -> list[str]:
    """What is wrong with the case started by `first` (nothing: it went as it should)."""
    problems: list[str] = []
    chain = [first]
    while len(chain) < RUNS_PER_CASE and (child := runs_by_parent.get(chain[-1].id or 0)) is not None:
        chain.append(child)
    if [r.agent for r in chain] != list(CHAIN):
        return [f"case #{first.id}: agents {[r.agent for r in chain]}"]
    if runs_by_parent.get(chain[-1].id or 0) is not None:
        problems.append(f"case #{first.id}: a fourth run")
    for run in chain:
        where = f"case #{first.id}, run #{run.id} ({run.agent})"
        if run.case != first.id:
            problems.append(f"{where}: in case {run.case}")
        if run.status != RunStatus.succeeded:
            problems.append(f"{where}: {run.status} ({run.error})")
        if not run.outcome_ts:
            problems.append(f"{where}: no outcome posted")
        if run.agent in CHANNELS and (
            run.channel_id != CHANNELS[run.agent] or run.thread_ts.startswith("handoff")
        ):
            problems.append(f"{where}: reports in {run.channel_id} {run.thread_ts}, not a thread of its own")
        got = steps.get(run.id or 0, [])
        shape = [s.name if s.kind == StepKind.action else str(s.kind) for s in got]
        if shape != EXPECTED_STEPS[run.agent]:
            problems.append(f"{where}: steps {shape}")
        if any(s.status != StepStatus.succeeded for s in got):
            problems.append(f"{where}: a step not succeeded")
    for parent, child in itertools.pairwise(chain):
        handed = [s for s in steps.get(parent.id or 0, []) if s.name.startswith("transfer_to_")]
        if child.parent_id != parent.id or [(s.data or {}).get("child_run_id") for s in handed] != [child.id]:
            problems.append(f"case #{first.id}: run #{parent.id} does not name run #{child.id}")
    return problems


async def verify(services: Any, n: int) -> dict[str, Any]:
    """Every case, from the database."""
    async with services.db.read() as session:
        every = list((await session.exec(select(Run))).all())
        all_steps = list((await session.exec(select(Step).order_by(col(Step.run_id), col(Step.seq)))).all())
    steps: dict[int, list[Step]] = {}
    for step in all_steps:
        steps.setdefault(step.run_id, []).append(step)
    by_parent = {r.parent_id: r for r in every if r.parent_id is not None}
    firsts = [r for r in every if r.parent_id is None]
    problems: list[str] = []
    succeeded = 0
    for first in firsts:
        wrong = check_case(first, by_parent, steps)
        problems += wrong
        succeeded += not wrong
    per_case = Counter(r.case for r in every)
    return {
        "cases": len(firsts),
        "cases_succeeded": succeeded,
        "runs": len(every),
        "runs_per_case": sorted(set(per_case.values())),
        "steps": len(all_steps),
        "attempts": sum(r.attempts for r in every),
        "problems": problems[:20],
        "statuses": dict(Counter(r.status for r in every)),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    n = args.cases
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='chatops-bench-handoff-')) / 'db'}"
    with children() as started:
        slack = FakeSlackProcess()
        started.append(slack)
        model = ModelProcess(delay=args.delay, turns=2, handoffs=True)
        started.append(model)
        s = settings(
            slack_api_url=slack.url,
            database_url=url,
            openai_api_key="sk-bench",
            openai_base_url=model.url,
            chatops_model="bench-model",
            chatops_workers=max(n, 1),  # a case has one run working at a time
            chatops_model_timeout=60.0,
        )
        services = build_services(
            s, SlackSurface(make_client(BOT_TOKEN, slack.url)), config=parse_config(CONFIG)
        )
        services.runtime.registry._actions["noop"] = Noop()
        await services.db.migrate()
        await queue_runs(services, n, text="hand this down the chain", agent="a")
        statements = [0]

        def seen(*_: object) -> None:
            statements[0] += 1

        event.listen(services.db.engine.sync_engine, "before_cursor_execute", seen)
        settle_memory()  # as `chatops serve` and `chatops worker` do once started
        slack.reset()
        before = rss_mb()
        cpu0 = cpu_seconds()
        stats0 = model.stats()
        start = time.perf_counter()
        await services.worker.run_until_idle(timeout=args.timeout)
        worked = time.perf_counter() - start  # every run final
        await services.presenter.drain()
        wall = time.perf_counter() - start  # and every outcome posted
        cpu = cpu_seconds() - cpu0
        counted = statements[0]
        stats1 = model.stats()
        calls = slack.log()
        checked = await verify(services, n)
        await services.close()
    runs = checked["runs"] or 1
    methods = Counter(c["method"] for c in calls)
    agent_of = {channel: agent for agent, channel in CHANNELS.items()}
    channels = [c.get("channel") or c.get("channel_id") or "" for c in calls]  # setStatus: channel_id
    agents = [agent_of.get(channel, "a" if channel else "-") for channel in channels]
    by_agent = Counter(agents)
    by_agent_method = Counter(f"{agent} {c['method']}" for agent, c in zip(agents, calls, strict=True))
    return {
        "url": url.split("@")[-1],
        "cases": n,
        "delay": args.delay,
        "worked": worked,
        "wall": wall,
        "ideal": TURNS_PER_CASE * args.delay,
        **checked,
        "cpu_ms_per_case": cpu / n * 1000,
        "cpu_ms_per_run": cpu / runs * 1000,
        "statements_per_run": counted / runs,
        "slack_calls": len(calls),
        "slack_calls_per_case": len(calls) / n,
        "slack_errors": sum(1 for c in calls if c.get("error")),
        "slack_methods": dict(methods.most_common()),
        "slack_calls_by_agent": dict(sorted(by_agent.items())),
        "slack_calls_by_agent_method": dict(sorted(by_agent_method.items())),
        "model_requests": stats1["requests"] - stats0["requests"],
        "model_max_in_flight": stats1["max_in_flight"],
        "rss_before": before,
        "peak_rss": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=int(os.environ.get("BENCH_HANDOFF_CASES", "100")))
    parser.add_argument("--delay", type=float, default=0.2, help="simulated model latency per turn")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the worker may take")
    args = parser.parse_args()
    banner(
        f"7. Handoffs: {args.cases} cases at once, each agents a -> b -> c "
        f"(3 runs, 6 model turns of {args.delay:g} s), one process"
    )
    r = asyncio.run(measure(args))
    emit(
        table(
            f"{r['cases']} cases of three agents at once, one process",
            [
                "database",
                "cases",
                "succeeded",
                "runs per case",
                "runs final s",
                "outcomes posted s",
                "ideal s",
                "x ideal",
                "CPU ms per case",
                "CPU ms per run",
                "SQL statements per run",
                "Slack calls per case",
                "model requests",
                "RSS before MB",
                "peak RSS MB",
            ],
            [
                [
                    "sqlite" if r["url"].startswith("sqlite") else "postgresql",
                    r["cases"],
                    f"{r['cases_succeeded']}/{r['cases']}",
                    ",".join(str(k) for k in r["runs_per_case"]),
                    f"{r['worked']:.2f}",
                    f"{r['wall']:.2f}",
                    f"{r['ideal']:g}",
                    f"{r['wall'] / r['ideal']:.2f}" if r["ideal"] else "-",
                    f"{r['cpu_ms_per_case']:.0f}",
                    f"{r['cpu_ms_per_run']:.1f}",
                    f"{r['statements_per_run']:.0f}",
                    f"{r['slack_calls_per_case']:.1f}",
                    r["model_requests"],
                    f"{r['rss_before']:.0f}",
                    f"{r['peak_rss']:.0f}",
                ]
            ],
        )
    )
    emit(
        table(
            "Slack Web API calls per case, by method",
            ["method", "calls per case"],
            [[m, f"{c / r['cases']:.2f}"] for m, c in r["slack_methods"].items()],
        )
    )
    steps = {agent: len(expected) for agent, expected in EXPECTED_STEPS.items()}
    emit(
        table(
            "Slack Web API calls per run, by agent (from the channel each call names)",
            ["agent", "steps per run", "calls per run", "steps + 4"],
            [
                [
                    agent,
                    steps.get(agent, "-"),
                    f"{n / r['cases']:.2f}",
                    steps[agent] + 4 if agent in steps else "-",
                ]
                for agent, n in r["slack_calls_by_agent"].items()
            ],
        )
    )
    for problem in r["problems"]:
        emit(f"- {problem}")
    save_json("handoff", r)
    if r["cases_succeeded"] != r["cases"] or r["model_requests"] != TURNS_PER_CASE * r["cases"]:
        raise SystemExit(f"{r['cases'] - r['cases_succeeded']} cases did not go as they should")


if __name__ == "__main__":
    main()
