"""The agent loop on a claimed run: a scripted model, real actions, a real journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent_doubles import (
    LEASE,
    WORKER,
    RecordingReporter,
    ScriptedPlanner,
    act,
    answer,
    call,
    claimed_run,
    config_with,
    make_runtime,
)
from sqlalchemy import update
from sqlmodel import col

from agents.config import Config
from agents.errors import ModelError
from agents.loop import RunLoop
from agents.model import ToolCall, Turn
from agents.offline import OfflinePlanner
from agents.runtime import Runtime
from storage import journal, runs
from storage.controls import set_paused
from storage.engine import Database
from storage.models import Run, RunStatus, Step, StepKind, StepStatus, TicketBase, WaitKind
from storage.tickets import create_ticket, find_tickets, get_ticket


def _config(tmp_path: Path, **agent: Any) -> Config:
    record = {
        "kind": "command",
        "cwd": str(tmp_path),
        "params": {"label": "string"},
        "run": "printf 'do %s\\n' {{ label }} >> log",
        "undo": "printf 'undo %s\\n' {{ label }} >> log",
    }
    return config_with(
        agent=agent,
        actions=[
            {"name": "record", "description": "record a label", **record},
            {"name": "record_idem", "description": "record, safe to repeat", "idempotent": True, **record},
            {
                "name": "breaks",
                "description": "always fails",
                "kind": "command",
                "run": "echo 'broken pipe' >&2; exit 4",
                "undo": "true",  # reversible, so it runs without asking for approval
            },
        ],
    )


def _log(tmp_path: Path) -> str:
    path = tmp_path / "log"
    return path.read_text() if path.exists() else ""


async def _run(db: Database, run_id: int) -> Run:
    async with db.read() as session:
        run = await runs.get_run(session=session, run_id=run_id)
    assert run is not None
    return run


async def _steps(db: Database, run_id: int) -> list[Step]:
    async with db.read() as session:
        return await journal.steps_of(session=session, run_id=run_id)


async def _execute(rt: Runtime, run_id: int) -> Run:
    await RunLoop(rt, run_id).execute()
    return await _run(rt.db, run_id)


async def _ticket_count(db: Database) -> int:
    async with db.read() as session:
        return len(await find_tickets(session=session, limit=50))


async def _journal_model_turn(db: Database, run_id: int, turn: Turn) -> None:
    async with db.write() as session:
        step = await journal.begin_step(
            session=session,
            run_id=run_id,
            worker_id=WORKER,
            lease=LEASE,
            kind=StepKind.model,
            name="scripted",
        )
        assert step.id is not None
        await journal.finish_step(
            session=session, step_id=step.id, status=StepStatus.succeeded, data={"message": turn.message()}
        )


async def _journal_action(db: Database, run_id: int, tool_call: ToolCall, **result: Any) -> None:
    """An action step as a worker leaves it: an intent, completed with `result` unless it is empty."""
    async with db.write() as session:
        step = await journal.begin_step(
            session=session,
            run_id=run_id,
            worker_id=WORKER,
            lease=LEASE,
            kind=StepKind.action,
            name=tool_call.name,
            tool_call_id=tool_call.id,
            arguments=json.loads(tool_call.arguments),
            idempotency_key=f"chatops-{run_id}-{tool_call.id}",
        )
        assert step.id is not None
        if result:
            await journal.finish_step(session=session, step_id=step.id, **result)


def _roles(messages: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in messages]


async def test_success_path(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner([act(call("ticket_create", title="Disk full")), answer("Created it.")])
    reporter = RecordingReporter()
    rt = make_runtime(db, _config(tmp_path), planner, reporter=reporter)
    run_id = await claimed_run(db, text="please file a ticket: disk full")

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.succeeded
    assert run.outcome == "Created it."
    assert run.error is None
    assert run.worker_id is None and run.lease_expires_at is None and run.finished_at is not None
    assert run.planner == "scripted"
    assert (run.prompt_tokens, run.completion_tokens) == (20, 10)
    steps = await _steps(db, run_id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
    assert await _ticket_count(db) == 1

    first_messages, first_tools = planner.calls[0]
    assert _roles(first_messages) == ["system", "user"]
    assert "Requester: <@U1REQ>" in first_messages[0]["content"]
    assert f"Run: #{run_id}." in first_messages[0]["content"]
    assert first_messages[1]["content"] == "please file a ticket: disk full"
    assert {t["function"]["name"] for t in first_tools} == {
        "ticket_create",
        "ticket_find",
        "ticket_comment",
        "record",
        "record_idem",
        "breaks",
    }
    second_messages, _ = planner.calls[1]
    assert _roles(second_messages) == ["system", "user", "assistant", "tool"]
    assert second_messages[-1]["content"].startswith("created ticket #")
    assert reporter.events[0] == ("started", run_id)
    assert reporter.events[-1] == ("finished", run_id)


async def test_a_run_this_worker_does_not_own_is_left_alone(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner([answer("never")])
    rt = make_runtime(db, _config(tmp_path), planner, worker_id="another-worker")
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.running and run.worker_id == WORKER
    assert planner.calls == []
    assert await _steps(db, run_id) == []


async def test_model_error_fails_the_run(db: Database, tmp_path: Path) -> None:
    rt = make_runtime(
        db, _config(tmp_path), ScriptedPlanner([ModelError("the model server answered HTTP 500")])
    )
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.failed
    assert run.error == "the model could not answer: the model server answered HTTP 500"
    [step] = await _steps(db, run_id)
    assert (step.kind, step.status) == (StepKind.model, StepStatus.failed)


async def test_model_error_after_an_action_rolls_it_back(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner([act(call("record", label="one")), ModelError("no answer")])
    rt = make_runtime(db, _config(tmp_path), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.rolled_back
    assert _log(tmp_path) == "do one\nundo one\n"
    assert run.error is not None and run.error.startswith("the model could not answer: no answer")
    assert "Reversed: ran the undo of record." in run.error


async def test_max_steps_fails_the_run(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner([act(call("ticket_find", query="a")), act(call("ticket_find", query="b"))])
    rt = make_runtime(db, _config(tmp_path, max_steps=3), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.failed  # ticket_find is read-only: nothing to roll back
    assert run.error == "stopped after 3 steps (max_steps) without finishing"
    assert len(planner.calls) == 2
    assert [s.kind for s in await _steps(db, run_id)] == [StepKind.model, StepKind.action, StepKind.model]


async def test_failed_action_rolls_back_completed_steps_newest_first(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner(
        [
            act(call("record", label="one"), call("ticket_create", title="Disk full")),
            act(call("record", label="two")),
            act(call("breaks")),
            answer("I could not finish."),
        ]
    )
    rt = make_runtime(db, _config(tmp_path), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.rolled_back
    assert run.outcome == "I could not finish."
    assert run.error is not None
    assert run.error.startswith("an action failed: breaks (step 7): breaks exited with status 4: broken pipe")
    assert "Reversed: ran the undo of record; deleted ticket #1; ran the undo of record." in run.error
    assert _log(tmp_path) == "do one\ndo two\nundo two\nundo one\n"
    assert await _ticket_count(db) == 0
    # The model read the failure as the tool result before it answered.
    assert planner.calls[3][0][-1]["content"].startswith("error: breaks exited with status 4")

    steps = await _steps(db, run_id)
    actions = {s.id: s for s in steps if s.kind == StepKind.action}
    compensations = [s for s in steps if s.kind == StepKind.compensation]
    reversed_steps = [actions[c.compensates] for c in compensations if c.compensates is not None]
    assert [(s.name, s.arguments) for s in reversed_steps] == [
        ("record", {"label": "two"}),
        ("ticket_create", {"title": "Disk full", "description": "", "priority": "normal", "assignee": None}),
        ("record", {"label": "one"}),
    ]
    assert all(c.status == StepStatus.succeeded for c in compensations)
    assert all(s.status == StepStatus.compensated for s in reversed_steps)
    assert next(s for s in steps if s.name == "breaks").status == StepStatus.failed


async def test_keep_policy_reverses_nothing(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner(
        [
            act(call("record", label="one"), call("ticket_create", title="x")),
            act(call("breaks")),
            answer("sorry"),
        ]
    )
    rt = make_runtime(db, _config(tmp_path, on_failure="keep"), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.failed
    assert run.error is not None and run.error.startswith("an action failed: breaks")
    assert "Reversed" not in run.error
    assert _log(tmp_path) == "do one\n"
    assert await _ticket_count(db) == 1
    steps = await _steps(db, run_id)
    assert not [s for s in steps if s.kind == StepKind.compensation]
    assert [s.status for s in steps if s.kind == StepKind.action] == [
        StepStatus.succeeded,
        StepStatus.succeeded,
        StepStatus.failed,
    ]


async def test_a_failure_the_model_recovers_from_does_not_fail_the_run(db: Database, tmp_path: Path) -> None:
    async with db.write() as session:
        ticket = await create_ticket(session=session, ticket=TicketBase(title="real"), run_id=None)
    planner = ScriptedPlanner(
        [
            act(call("ticket_comment", ticket_id=999, text="fixed")),
            act(call("ticket_comment", ticket_id=ticket.id, text="fixed")),
            act(call("no_such_tool")),
            answer("Commented."),
        ]
    )
    rt = make_runtime(db, _config(tmp_path), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.succeeded
    assert planner.calls[1][0][-1]["content"] == "error: there is no ticket #999"
    assert planner.calls[3][0][-1]["content"].startswith("error: there is no tool named 'no_such_tool'")
    statuses = [s.status for s in await _steps(db, run_id) if s.kind == StepKind.action]
    assert statuses == [StepStatus.failed, StepStatus.succeeded, StepStatus.rejected]


async def test_resume_runs_only_the_missing_tool_call(db: Database, tmp_path: Path) -> None:
    run_id = await claimed_run(db)
    first, second = call("record", label="one"), call("record", label="two")
    await _journal_model_turn(db, run_id, act(first, second))
    await _journal_action(
        db,
        run_id,
        first,
        status=StepStatus.succeeded,
        output="exit status 0\n(no output)",
        undo={"params": {"label": "one"}},
    )
    (tmp_path / "log").write_text("do one\n")  # what the first call did before the worker stopped
    planner = ScriptedPlanner([answer("Both recorded.")])
    rt = make_runtime(db, _config(tmp_path), planner)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.succeeded and run.outcome == "Both recorded."
    assert _log(tmp_path) == "do one\ndo two\n"
    steps = await _steps(db, run_id)
    assert [(s.kind, s.tool_call_id, s.status) for s in steps] == [
        (StepKind.model, None, StepStatus.succeeded),
        (StepKind.action, first.id, StepStatus.succeeded),
        (StepKind.action, second.id, StepStatus.succeeded),
        (StepKind.model, None, StepStatus.succeeded),
    ]
    [(messages, _)] = planner.calls
    assert _roles(messages) == ["system", "user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in messages[3:]] == [first.id, second.id]


async def test_interrupted_idempotent_action_is_run_again(db: Database, tmp_path: Path) -> None:
    run_id = await claimed_run(db)
    interrupted = call("record_idem", label="one")
    await _journal_model_turn(db, run_id, act(interrupted))
    await _journal_action(db, run_id, interrupted)  # intent only: the worker died mid-action
    planner = ScriptedPlanner([answer("Recorded.")])
    rt = make_runtime(db, _config(tmp_path), planner)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.succeeded
    assert _log(tmp_path) == "do one\n"
    steps = await _steps(db, run_id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
    [(messages, _)] = planner.calls
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": interrupted.id,
        "content": "exit status 0\n(no output)",
    }


async def test_interrupted_unsafe_action_waits_for_a_human(db: Database, tmp_path: Path) -> None:
    run_id = await claimed_run(db)
    interrupted = call("record", label="one")
    await _journal_model_turn(db, run_id, act(interrupted))
    await _journal_action(db, run_id, interrupted)
    planner = ScriptedPlanner([answer("never asked")])
    reporter = RecordingReporter()
    rt = make_runtime(db, _config(tmp_path), planner, reporter=reporter)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.waiting
    assert run.wait_reason is not None
    assert run.wait_reason.startswith("needs a human: step 2 (record) was interrupted")
    assert run.worker_id is None and run.finished_at is None
    assert planner.calls == []
    assert _log(tmp_path) == ""  # not run again
    assert [s.status for s in await _steps(db, run_id)] == [StepStatus.succeeded, StepStatus.intent]
    assert ("progressed", run_id) in reporter.events


async def test_interrupted_model_turn_is_asked_again(db: Database, tmp_path: Path) -> None:
    run_id = await claimed_run(db)
    async with db.write() as session:
        await journal.begin_step(
            session=session,
            run_id=run_id,
            worker_id=WORKER,
            lease=LEASE,
            kind=StepKind.model,
            name="scripted",
        )
    planner = ScriptedPlanner([answer("Hello.")])
    rt = make_runtime(db, _config(tmp_path), planner)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.succeeded
    assert [s.status for s in await _steps(db, run_id)] == [StepStatus.failed, StepStatus.succeeded]


async def test_pause_stops_the_run_before_its_next_step(db: Database, tmp_path: Path) -> None:
    async def pause_then_act(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        async with db.write() as session:  # someone says "pause" while the model is thinking
            await set_paused(session=session, scope="ops", paused=True, by_user="U9")
        return act(call("ticket_create", title="Disk full"))

    rt = make_runtime(db, _config(tmp_path), ScriptedPlanner([pause_then_act]))
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.waiting
    assert run.wait_reason == "paused (ops)"
    assert run.worker_id is None
    assert await _ticket_count(db) == 0
    assert [s.kind for s in await _steps(db, run_id)] == [StepKind.model]  # no action started

    # Resumed: the pending tool call runs, exactly once.
    async with db.write() as session:
        await set_paused(session=session, scope="ops", paused=False, by_user="U9")
        assert await runs.requeue_waiting(session=session, kind=WaitKind.paused) == [run_id]
        assert await runs.claim_runs(session=session, worker_id=WORKER, limit=5, lease=LEASE) == [run_id]
    planner = ScriptedPlanner([answer("Done.")])
    run = await _execute(make_runtime(db, _config(tmp_path), planner), run_id)
    assert run.status == RunStatus.succeeded
    assert await _ticket_count(db) == 1
    assert planner.calls[0][0][-1]["content"].startswith("created ticket #")


async def test_pause_of_all_agents_stops_the_run_before_the_first_step(db: Database, tmp_path: Path) -> None:
    async with db.write() as session:
        await set_paused(session=session, scope="*", paused=True, by_user="U9")
    planner = ScriptedPlanner([answer("never")])
    rt = make_runtime(db, _config(tmp_path), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.waiting
    assert run.wait_reason is not None and run.wait_reason.startswith("paused")
    assert run.wait_reason == "paused (all agents)"
    assert planner.calls == []
    assert await _steps(db, run_id) == []


async def test_undo_requested_mid_run_reverses_what_was_done(db: Database, tmp_path: Path) -> None:
    async def undo_then_act(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        async with db.write() as session:
            await session.exec(update(Run).where(col(Run.id) == run_id).values(undone_by="U7"))  # type: ignore[call-overload]
        return act(call("record", label="two"))

    planner = ScriptedPlanner([act(call("record", label="one")), undo_then_act])
    rt = make_runtime(db, _config(tmp_path), planner)
    run_id = await claimed_run(db)

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.rolled_back
    assert run.error is not None and run.error.startswith("Undone at the request of <@U7>.")
    assert _log(tmp_path) == "do one\nundo one\n"


async def test_agent_no_longer_configured_fails_the_run(db: Database, tmp_path: Path) -> None:
    rt = make_runtime(db, _config(tmp_path), ScriptedPlanner([]))
    run_id = await claimed_run(db, agent="retired")

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.failed
    assert run.error == "agent 'retired' is no longer configured"


async def test_ticket_created_by_a_run_remembers_it(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner([act(call("ticket_create", title="x")), answer("ok")])
    run_id = await claimed_run(db)
    await _execute(make_runtime(db, _config(tmp_path), planner), run_id)
    async with db.read() as session:
        ticket = await get_ticket(session=session, ticket_id=1)
    assert ticket is not None and ticket.run_id == run_id and ticket.reporter == "U1REQ"


async def test_the_offline_planner_runs_a_request_end_to_end(db: Database, tmp_path: Path) -> None:
    rt = make_runtime(db, _config(tmp_path), OfflinePlanner())
    run_id = await claimed_run(db, text="<@UBOT> create a ticket for Disk full on db1 and assign it to me")

    run = await _execute(rt, run_id)

    assert run.status == RunStatus.succeeded
    assert run.planner == "offline planner"
    assert (
        run.outcome
        == "(offline planner) Done:\ncreated ticket #1 [open, normal, assigned to U1REQ] Disk full on db1"
    )
