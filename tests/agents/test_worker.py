from __future__ import annotations

import asyncio
from typing import Any

from agent_doubles import ScriptedPlanner, act, answer, call, config_with, make_runtime, queue_run

from agents.model import Turn
from agents.worker import Worker, new_worker_id
from storage import journal, runs
from storage.engine import Database
from storage.models import Run, RunStatus, StepStatus


async def _run(db: Database, run_id: int) -> Run:
    async with db.read() as session:
        run = await runs.get_run(session=session, run_id=run_id)
    assert run is not None
    return run


async def test_run_until_idle_works_several_runs_concurrently(db: Database) -> None:
    together = asyncio.Barrier(3)

    async def meet(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        # Returns only once all three runs are in a model turn at the same time.
        await asyncio.wait_for(together.wait(), timeout=5)
        return answer(f"done: {messages[1]['content']}")

    planner = ScriptedPlanner([meet, meet, meet])
    worker = Worker(make_runtime(db, config_with(), planner, worker_id=new_worker_id()), concurrency=10)
    run_ids = [await queue_run(db, text=f"request {i}") for i in range(3)]

    await worker.run_until_idle(timeout=15)

    finished = [await _run(db, run_id) for run_id in run_ids]
    assert [r.status for r in finished] == [RunStatus.succeeded] * 3
    assert sorted(r.outcome or "" for r in finished) == [
        "done: request 0",
        "done: request 1",
        "done: request 2",
    ]
    assert worker.tasks == {}


async def test_runs_in_one_thread_take_turns(db: Database) -> None:
    active = 0
    overlap = False

    async def one_at_a_time(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        nonlocal active, overlap
        active += 1
        overlap = overlap or active > 1
        await asyncio.sleep(0.05)
        active -= 1
        return answer(messages[-1]["content"])  # the request (the second run reads the first's, too)

    planner = ScriptedPlanner([one_at_a_time, one_at_a_time])
    worker = Worker(make_runtime(db, config_with(), planner), concurrency=10)
    first = await queue_run(db, text="first")
    second = await queue_run(db, text="second", thread_ts=(await _run(db, first)).thread_ts)

    await worker.run_until_idle(timeout=15)

    assert not overlap
    assert [m[-1]["content"] for m, _ in planner.calls] == ["first", "second"]
    # The second run read the thread so far: the first request and what came of it.
    shown = planner.calls[1][0]
    assert [(m["role"], m["content"].splitlines()[0]) for m in shown[1:]] == [
        ("user", "first"),
        ("assistant", f"[run #{first}: done]"),
        ("user", "second"),
    ]
    assert (await _run(db, first)).status == RunStatus.succeeded
    assert (await _run(db, second)).status == RunStatus.succeeded


async def test_concurrency_limits_what_one_worker_claims(db: Database) -> None:
    in_flight = 0
    most = 0

    async def count(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return answer("ok")

    planner = ScriptedPlanner([count] * 5)
    worker = Worker(make_runtime(db, config_with(), planner), concurrency=2)
    run_ids = [await queue_run(db) for _ in range(5)]

    await worker.run_until_idle(timeout=15)

    assert most == 2
    assert [(await _run(db, r)).status for r in run_ids] == [RunStatus.succeeded] * 5


async def test_a_crashed_run_is_tried_again_at_once_and_the_crash_is_counted(db: Database) -> None:
    planner = ScriptedPlanner([RuntimeError("a bug mid-turn"), answer("recovered")])
    worker = Worker(make_runtime(db, config_with(), planner, worker_id="worker-1"))
    run_id = await queue_run(db)

    await worker.run_until_idle(timeout=10)  # the crash is logged and the lease ended at once

    run = await _run(db, run_id)
    assert (run.status, run.outcome, run.attempts, run.crashes) == (RunStatus.succeeded, "recovered", 2, 1)
    async with db.read() as session:
        steps = await journal.steps_of(session=session, run_id=run_id)
    assert [s.status for s in steps] == [StepStatus.failed, StepStatus.succeeded]
    assert steps[0].error == "interrupted before the model answered; asked again"


async def test_a_run_that_keeps_crashing_its_worker_is_failed_and_rolled_back(db: Database) -> None:
    crash = RuntimeError("poisoned")
    planner = ScriptedPlanner(
        [act(call("ticket_create", title="made before the crashes")), crash, crash, crash]
    )
    rt = make_runtime(db, config_with(), planner, worker_id="worker-1")
    assert rt.max_crashes == 3
    worker = Worker(rt)
    run_id = await queue_run(db)

    await worker.run_until_idle(timeout=10)

    run = await _run(db, run_id)
    assert (run.status, run.crashes, run.attempts) == (RunStatus.rolled_back, 3, 4)
    assert "crashed its worker 3 times" in (run.error or "")
    assert "Reversed: deleted ticket" in (run.error or "")
    assert planner.script == []  # asked three times, never a fourth
