"""Benchmark 2: orchestration overhead per step, outside the model and the action.

The real runtime (`agents.loop.RunLoop` with `agents.runtime.Runtime`, the journal, leases,
pause checks) on a real database, with a zero-latency scripted model and a no-op action:
each run takes `rounds` model turns that call `noop` and a final answer, so it has
2 * rounds + 1 steps. Runs are worked one at a time (no contention); the time inside the
model and the action is measured and subtracted, and the rest is divided by the steps.
The reporter is a no-op (presenting is coalesced and asynchronous; benchmark 4 covers Slack).

Target: <= 5 ms median per step on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import patches
from _common import banner, emit, median, ms, percentile, save_json, table
from pydantic import BaseModel
from sqlalchemy import event

from agents.actions.base import Action, ActionContext, ActionResult
from agents.actions.registry import Registry
from agents.config import parse_config
from agents.loop import RunLoop
from agents.model import ToolCall, Turn
from agents.runtime import Runtime
from storage import runs
from storage.engine import Database
from storage.models import RequestBase, Run, RunStatus
from storage.requests import create_request

WORKER = "bench-worker"
LEASE = timedelta(seconds=60)


class NoArgs(BaseModel):
    pass


class Noop(Action):
    """Does nothing, instantly; times itself."""

    name = "noop"
    description = "Does nothing."
    args_model = NoArgs
    read_only = True
    idempotent = True

    def __init__(self) -> None:
        self.seconds = 0.0

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        t = time.perf_counter()
        result = ActionResult(output="ok", summary="did nothing")
        self.seconds += time.perf_counter() - t
        return result


class ZeroLatencyModel:
    """A scripted model that answers at once: `rounds` turns calling noop, then an answer."""

    label = "scripted"
    offline = False

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.seconds = 0.0
        self._n = 0

    async def next_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, context: Any = None
    ) -> Turn:
        t = time.perf_counter()
        request = max(i for i, m in enumerate(messages) if m["role"] == "user")  # after the history
        done = sum(1 for m in messages[request:] if m["role"] == "assistant")
        self._n += 1
        if done < self.rounds:
            turn = Turn(
                content=None, tool_calls=[ToolCall(f"call-{self._n}", "noop", "{}")], prompt_tokens=10
            )
        else:
            turn = Turn(content="done", prompt_tokens=10, completion_tokens=1)
        self.seconds += time.perf_counter() - t
        return turn


class NullReporter:
    async def run_started(self, run_id: int) -> None: ...
    async def run_progressed(self, run_id: int) -> None: ...
    async def step_started(self, run_id: int, *, action: str | None = None) -> None: ...
    async def approval_requested(self, approval_id: int) -> None: ...
    async def run_finished(self, run_id: int) -> None: ...


class NullChat:
    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        return "1.0"

    async def delete_message(self, *, channel: str, ts: str) -> None: ...


def runtime(db: Database, model: ZeroLatencyModel, noop: Noop) -> Runtime:
    config = parse_config(
        {
            "agents": [{"name": "ops", "default": True, "actions": ["noop"], "max_steps": 200}],
            # Declared so the agent may name it; replaced below by the in-process no-op.
            "actions": [
                {"name": "noop", "description": "x", "kind": "command", "run": "true", "read_only": True}
            ],
        }
    )
    registry = Registry(config)
    registry._actions["noop"] = noop
    return Runtime(
        db=db,
        config=config,
        registry=registry,
        planner_for=lambda _agent: model,
        chat=NullChat(),
        reporter=NullReporter(),
        worker_id=WORKER,
        lease=LEASE,
    )


class Counter:
    """SQL statements and write transactions sent to the database."""

    def __init__(self, db: Database) -> None:
        self.statements = 0
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._statement)

    def _statement(self, *_: Any) -> None:
        self.statements += 1


async def one_run(db: Database, rt: Runtime, n: int, thread: int | None = None) -> int:
    request = RequestBase(
        kind="mention",
        team_id="T1",
        channel_id="C1",
        user_id="U1",
        ts=f"1700000000.{n:06d}",
        thread_ts=f"1700000000.{(thread if thread is not None else n):06d}",
        text="do nothing, several times",
        agent="ops",
    )
    async with db.write() as session:
        created = await create_request(session=session, request=request)
    assert created is not None and created[1].id is not None
    run_id = created[1].id
    async with db.write() as session:
        claimed = await runs.claim_runs(session=session, worker_id=WORKER, limit=1, lease=LEASE)
    assert claimed == [run_id], claimed
    return run_id


async def measure(
    db: Database,
    rounds: int,
    n_runs: int,
    first: int,
    profile: cProfile.Profile | None,
    history: int = 0,
) -> dict[str, Any]:
    """`history`: each measured run is the next request of a thread that already had this many
    runs (of one round each), so its model input carries that much conversation."""
    model, noop = ZeroLatencyModel(rounds), Noop()
    rt = runtime(db, model, noop)
    counter = Counter(db)
    per_step: list[float] = []
    per_run: list[float] = []
    statements: list[float] = []
    steps = 2 * rounds + 1
    for i in range(n_runs):
        thread = None
        if history:
            thread = first + i * (history + 1)
            seed = ZeroLatencyModel(1)
            seeding = runtime(db, seed, Noop())
            for k in range(history):
                await RunLoop(seeding, await one_run(db, seeding, thread + k, thread)).execute()
            run_id = await one_run(db, rt, thread + history, thread)
        else:
            run_id = await one_run(db, rt, first + i)
        model.seconds = noop.seconds = 0.0
        counter.statements = 0
        if profile:
            profile.enable()
        t = time.perf_counter()
        await RunLoop(rt, run_id).execute()
        wall = time.perf_counter() - t
        if profile:
            profile.disable()
        async with db.read() as session:
            run = await session.get(Run, run_id)
        assert run is not None and run.status == RunStatus.succeeded, run
        outside = wall - model.seconds - noop.seconds
        per_run.append(outside)
        per_step.append(outside / steps)
        statements.append(counter.statements / steps)
    return {
        "rounds": rounds,
        "history": history,
        "steps": steps,
        "per_step": per_step,
        "per_run": per_run,
        "statements": statements,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_ORCH_RUNS", "40")))
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--profile", action="store_true", help="print where the time goes (cProfile)")
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    args = parser.parse_args()
    applied = patches.apply(args.patch)
    banner("2. Orchestration overhead per step (zero-latency model, no-op action)")
    url = (
        args.database_url
        or f"sqlite:///{Path(tempfile.mkdtemp(prefix='chatops-bench-orch-')) / 'chatops.db'}"
    )
    db = Database(url)
    await db.migrate()
    profile = cProfile.Profile() if args.profile else None
    try:
        await measure(db, 2, 5, 900_000, None)  # warm-up: imports, compiled statement cache
        results = [
            await measure(db, rounds, args.runs, 1000 * rounds, profile if rounds == 10 else None)
            for rounds in (1, 10)
        ]
        threaded = await measure(db, 10, args.runs, 100_000, None, history=20)
    finally:
        await db.dispose()
    rows = []
    for r in results:
        rows.append(
            [
                "sqlite" if url.startswith("sqlite") else "postgresql",
                r["steps"],
                len(r["per_step"]),
                ms(median(r["per_step"])),
                ms(percentile(r["per_step"], 90)),
                ms(median(r["per_run"])),
                f"{median(r['statements']):.1f}",
            ]
        )
    short, long_ = results
    slope = (median(long_["per_run"]) - median(short["per_run"])) / (long_["steps"] - short["steps"])
    fixed = median(short["per_run"]) - slope * short["steps"]
    label = f"; patches: {','.join(applied)}" if applied else ""
    emit(
        table(
            f"Time per step outside the model and the action ({args.runs} runs each, one at a time{label})",
            [
                "database",
                "steps per run",
                "runs",
                "median ms/step",
                "p90 ms/step",
                "median ms/run",
                "SQL statements/step",
            ],
            rows,
        )
    )
    verdict = "met" if median(long_["per_step"]) <= 0.005 else "NOT met"
    emit(
        table(
            "Marginal cost (fit over the two run lengths) and target",
            ["ms per extra step", "fixed ms per run", "target", "measured (21-step runs)", "status"],
            [[ms(slope), ms(fixed), "<= 5 ms median per step", ms(median(long_["per_step"])), verdict]],
        )
    )
    plain, remembered = median(long_["per_step"]), median(threaded["per_step"])
    emit(
        table(
            "Thread memory: the same 21-step runs as the next request of a thread of 20 runs",
            ["median ms/step, no history", "median ms/step, 20 runs of history", "cost", "target", "status"],
            [
                [
                    ms(plain),
                    ms(remembered),
                    f"{(remembered / plain - 1) * 100:+.0f}%",
                    "<= +20%",
                    "met" if remembered <= plain * 1.2 else "NOT met",
                ]
            ],
        )
    )
    save_json(
        "orchestration",
        {"url": url.split("@")[-1], "patches": applied, "results": [*results, threaded]},
    )
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        emit(out.getvalue())


if __name__ == "__main__":
    asyncio.run(main())
