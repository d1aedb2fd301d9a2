"""Compensation: reverse a run's completed steps newest first, each one journaled."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from agent_doubles import LEASE, WORKER, ScriptedPlanner, call, claimed_run, config_with, make_runtime

from agents.actions.base import Requester
from agents.config import Config
from agents.executor import Executor
from agents.model import ToolCall
from agents.rollback import reverse
from agents.runtime import Runtime
from storage import approvals, journal
from storage.clock import now
from storage.engine import Database
from storage.models import ApprovalStatus, Step, StepKind, StepStatus
from storage.tickets import find_tickets

REQUESTER = Requester("T1", "C1", "U1REQ", "1.0")


def _config(tmp_path: Path) -> Config:
    common: dict[str, Any] = {"kind": "command", "cwd": str(tmp_path)}
    return config_with(
        actions=[
            {
                "name": "record",
                "description": "record a label",
                "params": {"label": "string"},
                "run": "printf 'do %s\\n' {{ label }} >> log",
                "undo": "printf 'undo %s\\n' {{ label }} >> log",
                **common,
            },
            {"name": "oneway", "description": "cannot be undone", "run": "echo sent >> log", **common},
            {"name": "badundo", "description": "its undo fails", "run": "true", "undo": "exit 7", **common},
        ]
    )


async def _setup(db: Database, tmp_path: Path) -> tuple[Runtime, Executor, int]:
    config = _config(tmp_path)
    rt = make_runtime(db, config, ScriptedPlanner([]))
    run_id = await claimed_run(db)
    executor = Executor(
        rt, run_id=run_id, agent="ops", requester=REQUESTER, actions=rt.registry.for_agent(config.agents[0])
    )
    return rt, executor, run_id


async def _approve(db: Database, run_id: int, tool_call: ToolCall) -> None:
    """A human pressed Approve for this call (irreversible actions ask first)."""
    async with db.write() as session:
        approval = await approvals.request_approval(
            session=session,
            run_id=run_id,
            tool_call_id=tool_call.key,
            action=tool_call.name,
            arguments={},
            reason="it cannot be undone",
            channel_id="C1",
            expires_at=now() + timedelta(hours=1),
        )
        assert approval.id is not None
        assert await approvals.decide(
            session=session, approval_id=approval.id, status=ApprovalStatus.approved, by_user="U2"
        )


async def _steps(db: Database, run_id: int) -> list[Step]:
    async with db.read() as session:
        return await journal.steps_of(session=session, run_id=run_id)


def _log(tmp_path: Path) -> str:
    path = tmp_path / "log"
    return path.read_text() if path.exists() else ""


async def test_reverse_newest_first_reporting_what_could_not_be_reversed(
    db: Database, tmp_path: Path
) -> None:
    rt, executor, run_id = await _setup(db, tmp_path)
    await executor.call(call("record", label="one"))
    created = await executor.call(call("ticket_create", title="Disk full"))
    await executor.call(call("ticket_find", query="disk"))
    oneway = call("oneway")
    await _approve(db, run_id, oneway)
    assert await executor.call(oneway) == "exit status 0\n(no output)"
    await executor.call(call("badundo"))
    await executor.call(call("record", label="two"))
    assert created.startswith("created ticket #1 ")

    reversals = await reverse(rt, run_id=run_id)

    assert [(r.step, r.action, r.reversed) for r in reversals] == [
        (6, "record", True),
        (5, "badundo", False),
        (4, "oneway", False),
        (2, "ticket_create", True),
        (1, "record", True),
    ]  # ticket_find (step 3) is read-only: nothing to reverse, nothing to report
    assert reversals[0].text == "ran the undo of record"
    assert reversals[1].text == "ran badundo: the undo failed: badundo exited with status 7: (no output)"
    assert reversals[2].text == "ran oneway: it cannot be reversed"
    assert reversals[3].text == "deleted ticket #1"
    assert _log(tmp_path) == "do one\nsent\ndo two\nundo two\nundo one\n"
    async with db.read() as session:
        assert await find_tickets(session=session) == []

    steps = await _steps(db, run_id)
    by_id = {s.id: s for s in steps}
    compensations = [s for s in steps if s.kind == StepKind.compensation]
    assert [(by_id[c.compensates].seq, c.status) for c in compensations if c.compensates] == [
        (6, StepStatus.succeeded),
        (5, StepStatus.failed),
        (2, StepStatus.succeeded),
        (1, StepStatus.succeeded),
    ]
    assert all(c.idempotency_key == f"{by_id[c.compensates].idempotency_key}-undo" for c in compensations)
    statuses = {s.seq: s.status for s in steps if s.kind == StepKind.action}
    assert statuses == {
        1: StepStatus.compensated,
        2: StepStatus.compensated,
        3: StepStatus.succeeded,
        4: StepStatus.succeeded,
        5: StepStatus.succeeded,  # its undo failed: still in effect
        6: StepStatus.compensated,
    }


async def test_a_second_reversal_reverses_nothing(db: Database, tmp_path: Path) -> None:
    rt, executor, run_id = await _setup(db, tmp_path)
    await executor.call(call("record", label="one"))
    await executor.call(call("ticket_create", title="x"))

    first = await reverse(rt, run_id=run_id)
    second = await reverse(rt, run_id=run_id)

    assert [r.reversed for r in first] == [True, True]
    assert second == []
    assert _log(tmp_path) == "do one\nundo one\n"
    assert len([s for s in await _steps(db, run_id) if s.kind == StepKind.compensation]) == 2


async def test_a_failed_compensation_is_tried_again_next_time(db: Database, tmp_path: Path) -> None:
    rt, executor, run_id = await _setup(db, tmp_path)
    await executor.call(call("badundo"))

    first = await reverse(rt, run_id=run_id)
    second = await reverse(rt, run_id=run_id)

    assert [r.reversed for r in first] == [False]
    assert [r.reversed for r in second] == [False]
    assert "the undo failed" in second[0].text


async def test_nothing_to_reverse(db: Database, tmp_path: Path) -> None:
    rt, executor, run_id = await _setup(db, tmp_path)
    await executor.call(call("ticket_find"))
    await executor.call(call("no_such_tool"))
    assert await reverse(rt, run_id=run_id) == []


async def test_a_step_whose_action_no_longer_exists_is_reported(db: Database, tmp_path: Path) -> None:
    rt, _, run_id = await _setup(db, tmp_path)
    async with db.write() as session:
        step = await journal.begin_step(
            session=session, run_id=run_id, worker_id=WORKER, lease=LEASE, kind=StepKind.action, name="ghost"
        )
        assert step.id is not None
        await journal.finish_step(
            session=session,
            step_id=step.id,
            status=StepStatus.succeeded,
            undo={"x": 1},
            data={"summary": "boo"},
        )

    [reversal] = await reverse(rt, run_id=run_id)

    assert (reversal.reversed, reversal.text) == (False, "boo: its action no longer exists")


async def test_a_compensation_interrupted_by_a_crash_is_run_again(db: Database, tmp_path: Path) -> None:
    rt, executor, run_id = await _setup(db, tmp_path)
    await executor.call(call("record", label="one"))
    [action_step] = await _steps(db, run_id)
    async with db.write() as session:  # the worker died after journaling the compensation's intent
        await journal.begin_step(
            session=session,
            run_id=run_id,
            worker_id=WORKER,
            lease=LEASE,
            kind=StepKind.compensation,
            name="record",
            compensates=action_step.id,
        )

    [reversal] = await reverse(rt, run_id=run_id)

    assert reversal.reversed
    steps = await _steps(db, run_id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.action, StepStatus.compensated),
        (StepKind.compensation, StepStatus.failed),
        (StepKind.compensation, StepStatus.succeeded),
    ]
    assert steps[1].error == "interrupted by a restart; retried"
    assert _log(tmp_path) == "do one\nundo one\n"
