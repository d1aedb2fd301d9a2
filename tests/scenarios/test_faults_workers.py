"""`chatops worker` processes on PostgreSQL: two of them racing for 200 queued runs take each run
once and lose none; a worker SIGKILLed mid-run is replaced by the other once its lease runs out.

Runs are queued straight into the database (as `chatops serve --no-workers` would), and every
run's command action appends its run id to a file: the file, the fake Slack's threads and the
database are checked from the outside.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fakes import FakeModel, FakeSlack, wait_until
from sqlmodel import col, func, select

from scenarios.faults_support import (
    START_LIMIT,
    Outside,
    Processes,
    environment,
    outside,
    quoted,
)
from storage.models import FINAL_STATUSES, RequestBase, Run, RunStatus, StepKind, StepStatus
from storage.requests import create_request
from storage.runs import PENDING

RUNS = 200


def _append_config(effects: Path, gate: Path) -> str:
    """One action: wait while `gate` exists, then append the run's id and the worker's pid."""
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["append_id"]

[[actions]]
name = "append_id"
description = "Append this run's id (and the worker's pid) to the effects file"
kind = "command"
run = '''
while [ -e {quoted(gate)} ]; do sleep 0.02; done
echo "$CHATOPS_RUN_ID $PPID" >> {quoted(effects)}
'''
undo = '''echo "undo $CHATOPS_RUN_ID" >> {quoted(effects)}'''
timeout = 20
"""


async def _queue(seen: Outside, texts: list[str]) -> list[int]:
    """Queue one request (and its run) per text, each a top-level message in C1: its own thread."""
    ids = []
    async with seen.db.write() as session:
        for i, text in enumerate(texts):
            ts = f"1710000000.{i + 1:06d}"
            request = RequestBase(
                kind="mention",
                team_id="T1",
                channel_id="C1",
                user_id="U1",
                ts=ts,
                thread_ts=ts,
                event_id=f"EvRace{i + 1:06d}",
                text=text,
                agent="ops",
            )
            created = await create_request(session=session, request=request)
            assert created is not None and created[1].id is not None
            ids.append(created[1].id)
    return ids


async def test_two_worker_processes_racing_for_200_runs_do_each_exactly_once(
    processes: Processes, fake_slack: FakeSlack, tmp_path: Path, pg_database: str
):
    effects, gate = tmp_path / "effects.log", tmp_path / "start.gate"
    gate.touch()
    config = tmp_path / "chatops.toml"
    config.write_text(_append_config(effects, gate))
    async with outside(pg_database) as seen:
        await seen.db.migrate()
        run_ids = await _queue(seen, ["append_id"] * RUNS)  # the offline planner's explicit form
        env = environment(
            slack=fake_slack,
            database_url=pg_database,
            config=config,
            CHATOPS_WORKERS=8,
            CHATOPS_EDIT_INTERVAL=10,  # fewer status edits: the final one is made all the same
        )
        workers = [processes.start("worker", env=env, name=f"worker-{n}") for n in (1, 2)]

        async def both_claiming() -> bool:
            """Both workers hold runs (their first actions wait at the gate): the race is on."""
            for w in workers:
                assert w.alive, f"worker {w.pid} died:\n{w.log_tail()}"
            running = await seen.rows(Run, col(Run.status) == RunStatus.running)
            return len({r.worker_id for r in running}) == 2

        await wait_until(both_claiming, START_LIMIT, interval=0.05, message="both workers to claim runs")
        gate.unlink()

        async def all_done() -> bool:
            for w in workers:
                assert w.alive, f"worker {w.pid} died:\n{w.log_tail()}"
            async with seen.db.read() as session:
                done = await session.exec(
                    select(func.count())
                    .select_from(Run)
                    .where(col(Run.status).in_(FINAL_STATUSES), col(Run.outcome_ts).is_not(None))
                    .where(col(Run.outcome_ts) != PENDING)
                )
                return done.one() == RUNS

        # 25-35 s on two busy cores: the bound is for a failure, not a guess at the time it takes.
        await wait_until(all_done, 120, interval=0.1, message="every run to finish and report")
        assert [w.stop() for w in workers] == [0, 0]  # SIGTERM: both stop cleanly

        lines = [line.split() for line in effects.read_text().splitlines()]
        done = Counter(int(run_id) for run_id, _ in lines)
        assert [run_id for run_id, n in done.items() if n > 1] == [], "a run's action ran twice"
        assert sorted(done) == sorted(run_ids), "a run's action never ran"
        by_worker = Counter(int(pid) for _, pid in lines)
        assert set(by_worker) == {w.pid for w in workers}, f"the workers did not both work: {by_worker}"

        runs = await seen.runs()
        assert {(r.status, r.attempts) for r in runs} == {(RunStatus.succeeded, 1)}
        assert all(r.worker_id is None and r.lease_expires_at is None for r in runs)
    # Each run's thread: one status message and one outcome, whichever process posted them.
    for run in runs:
        thread = fake_slack.thread("C1", run.thread_ts)
        assert [m.ts for m in thread] == [run.status_ts, run.outcome_ts], run.id
    assert len(fake_slack.posts()) == 2 * RUNS


def _steps_config(effects: Path) -> str:
    actions = "".join(
        f"""
[[actions]]
name = "step_{letter.lower()}"
description = "Step {letter} of the runbook"
kind = "command"
run = '''echo "{letter} $CHATOPS_RUN_ID $PPID" >> {quoted(effects)}'''
undo = "true"
timeout = 10
"""
        for letter in "ABC"
    )
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["step_a", "step_b", "step_c"]
{actions}"""


async def test_a_worker_killed_mid_run_is_replaced_by_the_other_once_its_lease_runs_out(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path, pg_database: str
):

    effects = tmp_path / "effects.log"
    config = tmp_path / "chatops.toml"
    config.write_text(_steps_config(effects))
    model = fake_model
    model.call("step_a")
    model.answer("never delivered: this worker is killed while the model thinks", held=True)
    model.call("step_b")
    model.call("step_c")
    model.answer("Ran steps A, B and C.")
    async with outside(pg_database) as seen:
        await seen.db.migrate()
        env = environment(
            slack=fake_slack, model=model, database_url=pg_database, config=config, CHATOPS_LEASE_SECONDS=2
        )
        workers = {w.pid: w for w in (processes.start("worker", env=env, name=f"worker-{n}") for n in (1, 2))}
        [run_id] = await _queue(seen, ["run the three-step runbook"])
        await wait_until(lambda: len(model.requests) == 2, START_LIMIT, message="the model turn after step A")
        run = await seen.run(run_id)
        assert run.worker_id is not None
        holder = workers.pop(int(run.worker_id.split(":")[1]))
        [survivor] = workers.values()
        assert effects.read_text().split() == ["A", str(run_id), str(holder.pid)]
        holder.kill()
        model.release()

        run = await seen.finished(run_id, timeout=20)  # the survivor takes over after the lease
        assert run.status == RunStatus.succeeded, run.error
        assert run.attempts == 2
        assert [line.split() for line in effects.read_text().splitlines()] == [
            ["A", str(run_id), str(holder.pid)],
            ["B", str(run_id), str(survivor.pid)],
            ["C", str(run_id), str(survivor.pid)],
        ]
        actions = [s for s in await seen.steps(run_id) if s.kind == StepKind.action]
        assert [(s.name, s.status) for s in actions] == [
            ("step_a", StepStatus.succeeded),
            ("step_b", StepStatus.succeeded),
            ("step_c", StepStatus.succeeded),
        ]
        assert survivor.stop() == 0
    status, outcome = fake_slack.thread("C1", run.thread_ts)
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "finished" in status.text and "Ran steps A, B and C." in outcome.text
    assert model.remaining == 0 and model.overrun == 0
