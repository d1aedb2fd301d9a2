"""Benchmark 2: orchestration overhead per step, outside the model and the action.

The real runtime (`agents.loop.RunLoop` with `agents.runtime.Runtime`, the journal, leases,
pause checks) on a real database, with a zero-latency scripted model and a no-op action:
each run takes `rounds` model turns that call `noop` and a final answer, so it has
2 * rounds + 1 steps. Runs are worked one at a time (no contention); the time inside the
model and the action is measured and subtracted, and the rest is divided by the steps.
The reporter is a no-op (presenting is coalesced and asynchronous; benchmark 4 covers Slack).

Target: <= 5 ms median per step on SQLite.

Feature costs (issue 18: each at most +10% of a step's orchestration time): 21-step runs as
above, with one feature on at a time, measured the same way, interleaved with baseline runs
(the order rotates every round, so a busy moment of a shared machine falls on all alike):
- thread memory: the run is the next request of a thread of 20 earlier runs (a tool call and
  an answer each), which it reads from the journal when it starts;
- the loading status: bot.loading driven as bot.presenter drives it, on a surface that records
  `set_status` (so the status's own bookkeeping is measured, not Slack's client); the same
  through the real SlackSurface to the fake Slack on loopback is shown for information;
- a handoff wait: the run's first tool call is `transfer_to_helper`; it waits, the helper's
  run is worked outside the measurement, and the run resumes with its outcome. Both of its
  attempts are measured, the helper's run is not;
- tracing on: agents.tracing configured with the OpenTelemetry SDK's batch processor and
  in-memory exporter (spans are checked to arrive), against tracing off (the baseline).
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
from _common import (
    BOT_TOKEN,
    FakeSlackProcess,
    banner,
    children,
    emit,
    median,
    ms,
    percentile,
    save_json,
    table,
)
from pydantic import BaseModel
from sqlalchemy import event

from agents import tracing
from agents.actions.base import Action, ActionContext, ActionResult
from agents.actions.registry import Registry
from agents.config import parse_config
from agents.loop import RunLoop
from agents.model import ToolCall, Turn
from agents.runtime import Runtime
from bot.loading import LoadingStatus
from bot.run_view import loading_status
from bot.surface import SlackSurface, make_client
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

    def __init__(self, rounds: int, *, first: tuple[str, str] | None = None) -> None:
        self.rounds = rounds
        self.first = first
        """(tool, raw arguments) the first turn calls instead of noop (a handoff)."""
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
            name, args = self.first if self.first is not None and done == 0 else ("noop", "{}")
            turn = Turn(content=None, tool_calls=[ToolCall(f"call-{self._n}", name, args)], prompt_tokens=10)
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


def runtime(
    db: Database,
    model: ZeroLatencyModel,
    noop: Noop,
    *,
    reporter: Any = None,
    helper: ZeroLatencyModel | None = None,
) -> Runtime:
    """`helper`: ops may hand work to an agent `helper` (`transfer_to_helper`), whose model it is."""
    agents: list[dict[str, Any]] = [{"name": "ops", "default": True, "actions": ["noop"], "max_steps": 200}]
    if helper is not None:
        agents[0]["handoffs"] = ["helper"]
        agents.append({"name": "helper", "actions": ["noop"]})
    config = parse_config(
        {
            "agents": agents,
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
        planner_for=lambda agent: helper if helper is not None and agent.name == "helper" else model,
        chat=NullChat(),
        reporter=reporter or NullReporter(),
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
) -> dict[str, Any]:
    model, noop = ZeroLatencyModel(rounds), Noop()
    rt = runtime(db, model, noop)
    counter = Counter(db)
    per_step: list[float] = []
    per_run: list[float] = []
    statements: list[float] = []
    steps = 2 * rounds + 1
    for i in range(n_runs):
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
        "steps": steps,
        "per_step": per_step,
        "per_run": per_run,
        "statements": statements,
    }


# Feature costs (issue 18: each at most 10% of a step's orchestration time) ------------------

FEATURES = {
    "baseline": "none of the below (tracing off)",
    "memory": "thread memory: the run is the next request of a thread of 20 runs",
    "loading": "loading status: bot.loading on a surface that records set_status",
    "loading_slack": "the same through SlackSurface to the fake Slack (loopback HTTP, not the target)",
    "handoff": "handoff wait: the run hands off, waits, and resumes with the outcome",
    "tracing": "tracing on: the OpenTelemetry SDK, batch processor, in-memory exporter",
}
INFORMATIVE = ("baseline", "loading_slack")
"""Rows without a target: the baseline, and the Slack client's share of the loading status."""
FEATURE_ROUNDS = 10  # 21-step runs, as the long line of the first table
HISTORY = 20


class RecordingSurface:
    """Slack's side of the loading status: records each call (no network: benchmark 4 has Slack)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def set_status(
        self, *, channel: str, thread_ts: str, status: str, loading_messages: list[str] | None = None
    ) -> None:
        self.calls.append((channel, thread_ts, status))


class LoadingReporter(NullReporter):
    """The loading status as bot.presenter drives it: each step's status through bot.loading
    (the run's thread loaded from the database once, as Presenter._thread_of does); the outcome
    lets a status on its way land first, then the run is forgotten. Awaited in the run's time."""

    def __init__(self, db: Database, surface: Any = None) -> None:
        self.db = db
        self.surface = surface or RecordingSurface()
        self.loading = LoadingStatus(self.surface, self._thread_of)

    async def _thread_of(self, run_id: int) -> tuple[str, str] | None:
        async with self.db.read() as session:
            run = await runs.get_run(session=session, run_id=run_id)
        return (run.channel_id, run.thread_ts) if run is not None else None

    async def step_started(self, run_id: int, *, action: str | None = None) -> None:
        self.loading.show(run_id, loading_status(action, customer=False))

    async def run_finished(self, run_id: int) -> None:
        await self.loading.replied(run_id)
        self.loading.forget(run_id)


async def _timed(rt: Runtime, run_id: int, profile: cProfile.Profile | None) -> tuple[float, float]:
    """Seconds the run's attempt took: (wall, this thread's CPU)."""
    if profile:
        profile.enable()
    t, c = time.perf_counter(), time.thread_time()
    await RunLoop(rt, run_id).execute()
    wall, cpu = time.perf_counter() - t, time.thread_time() - c
    if profile:
        profile.disable()
    return wall, cpu


async def _status(db: Database, run_id: int) -> str:
    async with db.read() as session:
        run = await session.get(Run, run_id, populate_existing=True)
    assert run is not None
    return str(run.status)


async def _claim(db: Database) -> list[int]:
    async with db.write() as session:
        return await runs.claim_runs(session=session, worker_id=WORKER, limit=1, lease=LEASE)


async def one_feature(
    db: Database,
    feature: str,
    number: int,
    counter: Counter,
    profile: cProfile.Profile | None,
    slack: Any,
) -> tuple[float, float, int, int]:
    """One 21-step run with `feature` on: (seconds outside the model and the action, the same
    in CPU time of this thread, SQL statements, request numbers used). `slack`: a SlackSurface
    on the fake Slack."""
    model, noop = ZeroLatencyModel(FEATURE_ROUNDS), Noop()
    reporter: Any = None
    helper = None
    if feature in ("loading", "loading_slack"):
        reporter = LoadingReporter(db, slack if feature == "loading_slack" else None)
    if feature == "handoff":
        helper = ZeroLatencyModel(0)
        model = ZeroLatencyModel(FEATURE_ROUNDS, first=("transfer_to_helper", '{"brief": "do nothing"}'))
    rt = runtime(db, model, noop, reporter=reporter, helper=helper)
    used = 1
    if feature == "memory":
        seeding = runtime(db, ZeroLatencyModel(1), Noop())
        for k in range(HISTORY):
            await RunLoop(seeding, await one_run(db, seeding, number + k, number)).execute()
        run_id = await one_run(db, rt, number + HISTORY, number)
        used = HISTORY + 1
    else:
        run_id = await one_run(db, rt, number)
    exporter = None
    if feature == "tracing":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        tracing.configure(redactor=rt.redactor, exporter=exporter, batch=True)
    counter.statements = 0
    try:
        wall, cpu = await _timed(rt, run_id, profile)
        statements = counter.statements
        if feature == "handoff":  # the helper's run is worked outside the measurement
            assert await _status(db, run_id) == RunStatus.waiting
            helped = await _claim(db)
            assert len(helped) == 1 and helped[0] != run_id, helped
            await RunLoop(rt, helped[0]).execute()
            assert await _status(db, helped[0]) == RunStatus.succeeded
            assert await _claim(db) == [run_id]  # the helper's end requeued it
            counter.statements = 0
            again = await _timed(rt, run_id, profile)
            wall, cpu = wall + again[0], cpu + again[1]
            statements += counter.statements
    finally:
        if exporter is not None:
            tracing.shutdown()  # exports what is buffered, outside the measurement
    assert await _status(db, run_id) == RunStatus.succeeded
    if isinstance(reporter, LoadingReporter) and isinstance(reporter.surface, RecordingSurface):
        # Paced (bot.loading: at most one change a second), so a quick run shows its first step's.
        assert reporter.surface.calls, "no loading status shown"
    if exporter is not None:
        assert len(exporter.get_finished_spans()) >= 2 * FEATURE_ROUNDS + 2, "no spans exported"
    inside = model.seconds + noop.seconds
    return wall - inside, cpu - inside, statements, used


async def feature_costs(
    db: Database, n_runs: int, first: int, profile_feature: str | None
) -> dict[str, dict[str, Any]]:
    """`n_runs` 21-step runs of each feature, interleaved (the order rotates each round), so a
    busy moment of the shared machine falls on every feature alike."""
    counter = Counter(db)
    profile = cProfile.Profile() if profile_feature else None
    steps = 2 * FEATURE_ROUNDS + 1
    results: dict[str, dict[str, Any]] = {f: {"per_step": [], "cpu": [], "statements": []} for f in FEATURES}
    names = list(FEATURES)
    number = first
    with children() as started:
        fake = FakeSlackProcess()
        started.append(fake)
        slack = SlackSurface(make_client(BOT_TOKEN, fake.url))
        try:
            for i in range(n_runs):
                for feature in names[i % len(names) :] + names[: i % len(names)]:
                    outside, cpu, statements, used = await one_feature(
                        db, feature, number, counter, profile if feature == profile_feature else None, slack
                    )
                    number += used
                    results[feature]["per_step"].append(outside / steps)
                    results[feature]["cpu"].append(cpu / steps)
                    results[feature]["statements"].append(statements / steps)
        finally:
            await slack.close()
        calls = [c for c in fake.log() if c["method"] == "assistant.threads.setStatus"]
    assert calls and not any(c.get("error") for c in calls), calls[:3]
    results["loading_slack"]["set_status_calls"] = len(calls)
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(60)
        results[profile_feature or ""]["profile"] = out.getvalue()
    return results


def feature_table(results: dict[str, dict[str, Any]], n_runs: int) -> str:
    base = median(results["baseline"]["per_step"])
    base_cpu = median(results["baseline"]["cpu"])
    rows = []
    for feature, what in FEATURES.items():
        step, cpu = median(results[feature]["per_step"]), median(results[feature]["cpu"])
        cost = step / base - 1
        rows.append(
            [
                what,
                ms(step),
                ms(percentile(results[feature]["per_step"], 90)),
                ms(cpu),
                f"{median(results[feature]['statements']):.1f}",
                "-" if feature == "baseline" else f"{cost * 100:+.0f}%",
                "-" if feature == "baseline" else f"{(cpu / base_cpu - 1) * 100:+.0f}%",
                "-" if feature in INFORMATIVE else ("met" if cost <= 0.10 else "NOT met"),
            ]
        )
    return table(
        f"Feature costs: 21-step runs, {n_runs} of each, interleaved; target: each <= +10% per step",
        [
            "feature",
            "median ms/step",
            "p90 ms/step",
            "CPU ms/step",
            "SQL statements/step",
            "over baseline",
            "CPU over baseline",
            "status",
        ],
        rows,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_ORCH_RUNS", "40")))
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--profile", action="store_true", help="print where the time goes (cProfile)")
    parser.add_argument(
        "--profile-feature", choices=list(FEATURES), help="print where that feature's runs spend their time"
    )
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
        features = await feature_costs(db, args.runs, 100_000, args.profile_feature)
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
    emit(feature_table(features, args.runs))
    save_json(
        "orchestration",
        {"url": url.split("@")[-1], "patches": applied, "results": results, "features": features},
    )
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        emit(out.getvalue())
    if args.profile_feature:
        emit(features[args.profile_feature]["profile"])


if __name__ == "__main__":
    asyncio.run(main())
