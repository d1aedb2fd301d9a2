"""SIGKILL a real `chatops serve` mid-run and start it again: the run finishes, and every side
effect happens exactly once (or, when that cannot be known, a human is asked).

Each test drives the installed `chatops serve` over HTTP with signed Slack deliveries, and
checks from the outside: a file the command actions append to, the fake Slack's thread, the
database. A second process on the same database is what a restart is.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psycopg
from fakes import FakeModel, FakeSlack, wait_until
from fakes import slack_events as ev

from scenarios.faults_support import (
    Outside,
    Processes,
    environment,
    libpq,
    outside,
    quoted,
    sqlite_url,
)
from storage.models import FINAL_STATUSES, ActionReceipt, RunStatus, StepKind, StepStatus, Ticket
from storage.runs import PENDING

STEPS = """
[[agents]]
name = "ops"
default = true
actions = ["step_a", "step_b", "step_c", "ticket_create"]
"""


def _step_actions(effects: Path) -> str:
    """Three runbook steps, each appending one line (its letter and the run) to `effects`."""
    return "".join(
        f"""
[[actions]]
name = "step_{letter.lower()}"
description = "Step {letter} of the runbook"
kind = "command"
run = '''echo "{letter} $CHATOPS_RUN_ID" >> {quoted(effects)}'''
undo = '''echo "undo {letter} $CHATOPS_RUN_ID" >> {quoted(effects)}'''
timeout = 10
"""
        for letter in "ABC"
    )


def _gated_action(name: str, log: Path, gate: Path, *, idempotent: bool) -> str:
    """A job that logs its start (with its process group), runs while `gate` exists, logs its end."""
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["{name}"]

[[actions]]
name = "{name}"
description = "A job that takes a while"
kind = "command"
run = '''
echo "start $$" >> {quoted(log)}
while [ -e {quoted(gate)} ]; do sleep 0.05; done
echo "end $$" >> {quoted(log)}
'''
undo = "true"
idempotent = {"true" if idempotent else "false"}
timeout = 30
"""


async def _mention(proc, text: str) -> str:
    """Deliver one signed mention to the process; returns its ts (the thread)."""
    mention = ev.app_mention(f"<@UBOT> {text}")
    sender = proc.sender()
    try:
        delivery = await sender.event(mention)
    finally:
        await sender.close()
    assert delivery.status == 200, delivery.text
    return str(mention["event"]["ts"])


async def _only_run_id(seen: Outside) -> int:
    runs = await wait_until(seen.runs, 10, message="the request's run")
    assert len(runs) == 1, runs
    assert runs[0].id is not None
    return runs[0].id


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_serve_killed_between_steps_resumes_and_runs_each_step_once(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path
):
    effects = tmp_path / "effects.log"
    config = tmp_path / "chatops.toml"
    config.write_text(STEPS + _step_actions(effects))
    url = sqlite_url(tmp_path / "chatops.db")
    env = environment(
        slack=fake_slack, model=fake_model, database_url=url, config=config, CHATOPS_LEASE_SECONDS=2
    )
    model = fake_model
    model.call("step_a")
    model.answer("never delivered: the process is killed while the model thinks", held=True)
    model.call("step_b")
    model.call("step_c")
    model.answer("Ran steps A, B and C.")

    first = await processes.serve(env)
    ts = await _mention(first, "run the three-step runbook")
    async with outside(url) as seen:
        run_id = await _only_run_id(seen)
        # Step A is done and the model is thinking about step B: kill the process there.
        await wait_until(lambda: len(model.requests) == 2, 15, message="the model turn after step A")
        assert _lines(effects) == [f"A {run_id}"]
        status_ts = (await seen.run(run_id)).status_ts
        first.kill()
        model.release()  # the held answer goes to a dead socket

        second = await processes.serve(env)  # same database: the restart
        run = await seen.finished(run_id, timeout=20)

        assert run.status == RunStatus.succeeded, run.error
        assert run.attempts == 2
        assert _lines(effects) == [f"A {run_id}", f"B {run_id}", f"C {run_id}"]  # each once, in order
        steps = await seen.steps(run_id)
        assert [(s.kind, s.name if s.kind == StepKind.action else "", s.status) for s in steps] == [
            (StepKind.model, "", StepStatus.succeeded),
            (StepKind.action, "step_a", StepStatus.succeeded),
            (StepKind.model, "", StepStatus.failed),  # cut off by the kill, asked again
            (StepKind.model, "", StepStatus.succeeded),
            (StepKind.action, "step_b", StepStatus.succeeded),
            (StepKind.model, "", StepStatus.succeeded),
            (StepKind.action, "step_c", StepStatus.succeeded),
            (StepKind.model, "", StepStatus.succeeded),
        ]
        assert "interrupted" in (steps[2].error or "")
    assert model.remaining == 0 and model.overrun == 0
    # One status message (posted by the first process, edited by the second), one outcome.
    status, outcome = fake_slack.thread("C1", ts)
    assert status.ts == status_ts == run.status_ts
    assert "finished" in status.text
    assert outcome.ts == run.outcome_ts and "Ran steps A, B and C." in outcome.text
    assert second.stop() == 0


async def _kill_during_the_job(
    processes: Processes, env: dict[str, str], seen: Outside, log: Path
) -> tuple[int, str, int]:
    """Start serve, request the job, SIGKILL serve while the job runs (and the job with it).
    Returns the run, its thread and the job's process group."""
    first = await processes.serve(env)
    ts = await _mention(first, "run the job")
    run_id = await _only_run_id(seen)
    await wait_until(lambda: _lines(log), 15, message="the job to start")
    [start] = _lines(log)
    group = int(start.split()[1])  # the job's shell leads its own process group
    processes.groups.append(group)
    first.kill()
    os.killpg(group, signal.SIGKILL)  # the machine went down: the job died with the process
    return run_id, ts, group


async def test_a_non_idempotent_action_cut_off_by_a_kill_is_not_repeated_it_waits_for_a_human(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path
):
    log, gate = tmp_path / "job.log", tmp_path / "job.gate"
    gate.touch()
    config = tmp_path / "chatops.toml"
    config.write_text(_gated_action("migrate_db", log, gate, idempotent=False))
    url = sqlite_url(tmp_path / "chatops.db")
    env = environment(
        slack=fake_slack, model=fake_model, database_url=url, config=config, CHATOPS_LEASE_SECONDS=2
    )
    fake_model.call("migrate_db")
    fake_model.answer("The migration's result is unknown: please check the database by hand.")

    async with outside(url) as seen:
        run_id, ts, group = await _kill_during_the_job(processes, env, seen, log)
        gate.unlink()  # a repeat would now run straight through: it must not happen
        second = await processes.serve(env)
        run = await seen.run_where(
            run_id, lambda r: r.status == RunStatus.waiting, 15, "the run to stop for a human"
        )
        assert (run.wait_reason or "").startswith("needs a human"), run.wait_reason
        assert "migrate_db" in (run.wait_reason or "")
        assert _lines(log) == [f"start {group}"]  # cut off, and not started again
        [action] = [s for s in await seen.steps(run_id) if s.kind == StepKind.action]
        assert action.status == StepStatus.intent  # its result is unknown, and the journal says so
        assert len(fake_model.requests) == 1  # the model was not asked to go on by itself
        status = fake_slack.thread("C1", ts)[0]
        await wait_until(
            lambda: "waiting" in status.text and "needs a human" in status.text,
            10,
            message=lambda: f"the status message to say so: {status.text!r}",
        )

        # A person checks, then says `resume` in the thread: the run goes on without the job.
        sender = second.sender()
        try:
            reply = ev.thread_reply("resume", thread_ts=ts)
            assert (await sender.event(reply)).status == 200
        finally:
            await sender.close()
        run = await seen.finished(run_id, timeout=15)
        assert run.status in FINAL_STATUSES
        assert _lines(log) == [f"start {group}"]
        [result] = fake_model.tool_results(1)
        assert "result unknown" in result


async def test_an_idempotent_action_cut_off_by_a_kill_is_repeated_and_the_run_finishes(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path
):
    log, gate = tmp_path / "job.log", tmp_path / "job.gate"
    gate.touch()
    config = tmp_path / "chatops.toml"
    config.write_text(_gated_action("warm_cache", log, gate, idempotent=True))
    url = sqlite_url(tmp_path / "chatops.db")
    env = environment(
        slack=fake_slack, model=fake_model, database_url=url, config=config, CHATOPS_LEASE_SECONDS=2
    )
    fake_model.call("warm_cache")
    fake_model.answer("The cache is warm.")

    async with outside(url) as seen:
        run_id, ts, group = await _kill_during_the_job(processes, env, seen, log)
        gate.unlink()  # the repeat runs straight through
        await processes.serve(env)
        run = await seen.finished(run_id, timeout=20)

        assert run.status == RunStatus.succeeded, run.error
        assert run.attempts == 2
        first, second, end = _lines(log)
        assert first == f"start {group}" and second.startswith("start ") and second != first
        assert end == "end " + second.split()[1]  # the repeat ran to its end, once
        [action] = [s for s in await seen.steps(run_id) if s.kind == StepKind.action]
        assert action.status == StepStatus.succeeded  # the same journal step, now settled
        assert len(fake_model.requests) == 2 and fake_model.remaining == 0
        assert fake_model.tool_results(1)[0].startswith("exit status 0")
        status, outcome = fake_slack.thread("C1", ts)
        assert outcome.ts == run.outcome_ts and "The cache is warm." in outcome.text
        assert status.ts == run.status_ts and "finished" in status.text


HOLD_FINISH = """
CREATE FUNCTION chatops_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The journal write that follows a ticket's transaction waits for the test's lock.
    IF NEW.name = 'ticket_create' AND OLD.status = 'intent' AND NEW.status <> 'intent' THEN
        PERFORM pg_advisory_xact_lock(4242);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chatops_test_hold BEFORE UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION chatops_test_hold();
"""


async def test_a_ticket_made_just_before_a_kill_is_not_made_again_its_receipt_answers(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path, pg_database: str
):
    """The worst moment: the ticket and its receipt are committed, the journal still says
    "intent". A trigger holds the journal write right there; the test kills the process."""
    url = pg_database
    seen = Outside(url)
    await seen.db.migrate()
    control = await psycopg.AsyncConnection.connect(libpq(url), autocommit=True)
    try:
        await control.execute(HOLD_FINISH)
        await control.execute("SELECT pg_advisory_lock(4242)")
        env = environment(slack=fake_slack, model=fake_model, database_url=url, CHATOPS_LEASE_SECONDS=2)
        fake_model.call("ticket_create", {"title": "Exactly once"})
        fake_model.answer("Created the ticket.")

        first = await processes.serve(env)
        ts = await _mention(first, "open a ticket, exactly once")
        run_id = await _only_run_id(seen)

        async def held() -> bool:
            cur = await control.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
            row = await cur.fetchone()
            return bool(row and row[0])

        await wait_until(held, 15, message="the journal write to be held after the ticket's commit")
        assert len(await seen.rows(Ticket)) == 1
        assert len(await seen.rows(ActionReceipt)) == 1
        [action] = [s for s in await seen.steps(run_id) if s.kind == StepKind.action]
        assert action.status == StepStatus.intent

        first.kill()
        # The killed process's held transaction never commits; end it, and the hold.
        await control.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await control.execute("DROP TRIGGER chatops_test_hold ON steps")
        await control.execute("SELECT pg_advisory_unlock(4242)")

        await processes.serve(env)
        run = await seen.finished(run_id, timeout=20)
        assert run.status == RunStatus.succeeded, run.error
        [ticket] = await seen.rows(Ticket)
        assert ticket.title == "Exactly once" and ticket.run_id == run_id
        assert len(await seen.rows(ActionReceipt)) == 1
        [action] = [s for s in await seen.steps(run_id) if s.kind == StepKind.action]
        assert action.status == StepStatus.succeeded
        assert re.match(rf"created ticket #{ticket.id}\b", action.output or ""), action.output
        assert fake_model.tool_results(1) == [action.output]  # the receipt's answer, not a new ticket
        outcome = fake_slack.thread("C1", ts)[-1]
        assert outcome.ts == run.outcome_ts and outcome.ts != PENDING
    finally:
        await control.close()
        await seen.close()
