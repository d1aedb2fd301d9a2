"""Approvals, autonomy levels, customer-safe actions and resource locks, through the loop."""

from __future__ import annotations

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
    queue_run,
)
from sqlalchemy import update
from sqlmodel import col

from agents.actions.base import Requester
from agents.actions.registry import Registry
from agents.config import Config
from agents.executor import Executor
from agents.loop import RunLoop
from agents.model import Turn
from storage import approvals, journal, locks, runs
from storage.engine import Database
from storage.models import ApprovalStatus, Run, RunStatus, Step, StepKind, StepStatus, TicketBase, WaitKind
from storage.tickets import comments_of, create_ticket


def _config(tmp_path: Path, **agent: Any) -> Config:
    return config_with(
        agent=agent,
        actions=[
            {
                "name": "deploy",
                "description": "deploy a version",
                "kind": "command",
                "cwd": str(tmp_path),
                "params": {"version": "string"},
                "run": "printf 'deploy %s\\n' {{ version }} >> log",
                "undo": "printf 'rollback %s\\n' {{ version }} >> log",
                "risk": "high",
            }
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


async def _decide_and_requeue(db: Database, run_id: int, status: ApprovalStatus) -> None:
    async with db.write() as session:
        [pending] = await approvals.pending_approvals(session=session)
        assert pending.id is not None
        assert await approvals.decide(session=session, approval_id=pending.id, status=status, by_user="U2")
        assert await runs.requeue(session=session, run_id=run_id)
        assert await runs.claim_runs(session=session, worker_id=WORKER, limit=5, lease=LEASE) == [run_id]


async def test_a_high_risk_action_waits_for_approval_then_runs(db: Database, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    rt = make_runtime(
        db, _config(tmp_path), ScriptedPlanner([act(call("deploy", version="1.2"))]), reporter=reporter
    )
    run_id = await claimed_run(db)

    await RunLoop(rt, run_id).execute()

    run = await _run(db, run_id)
    assert run.status == RunStatus.waiting
    assert run.wait_reason == "approval: deploy waits for a human's Approve or Deny"
    assert _log(tmp_path) == ""
    async with db.read() as session:
        [approval] = await approvals.pending_approvals(session=session)
    assert (approval.action, approval.arguments, approval.reason) == (
        "deploy",
        {"version": "1.2"},
        "its risk is high",
    )
    assert ("approval", approval.id) in reporter.events

    await _decide_and_requeue(db, run_id, ApprovalStatus.approved)
    planner = ScriptedPlanner([answer("Deployed 1.2.")])
    await RunLoop(make_runtime(db, _config(tmp_path), planner), run_id).execute()

    run = await _run(db, run_id)
    assert (run.status, run.outcome) == (RunStatus.succeeded, "Deployed 1.2.")
    assert _log(tmp_path) == "deploy 1.2\n"
    assert planner.calls[0][0][-1]["content"] == "exit status 0\n(no output)"


async def test_a_denied_action_fails_the_run_without_running(db: Database, tmp_path: Path) -> None:
    rt = make_runtime(db, _config(tmp_path), ScriptedPlanner([act(call("deploy", version="1.2"))]))
    run_id = await claimed_run(db)
    await RunLoop(rt, run_id).execute()

    await _decide_and_requeue(db, run_id, ApprovalStatus.denied)
    planner = ScriptedPlanner([])
    await RunLoop(make_runtime(db, _config(tmp_path), planner), run_id).execute()

    run = await _run(db, run_id)
    assert run.status == RunStatus.failed
    assert run.error == "deploy was not approved: denied by <@U2>"
    assert _log(tmp_path) == ""
    assert planner.calls == []
    assert [(s.kind, s.status) for s in await _steps(db, run_id)] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.rejected),
    ]


async def test_propose_autonomy_only_describes(db: Database, tmp_path: Path) -> None:
    planner = ScriptedPlanner(
        [act(call("ticket_create", title="Disk full"), call("ticket_find")), answer("I would file a ticket.")]
    )
    rt = make_runtime(db, _config(tmp_path, autonomy="propose"), planner)
    run_id = await claimed_run(db)

    await RunLoop(rt, run_id).execute()

    run = await _run(db, run_id)
    assert run.status == RunStatus.succeeded
    proposed, found = [s for s in await _steps(db, run_id) if s.kind == StepKind.action]
    assert proposed.status == StepStatus.proposed
    assert proposed.output is not None and proposed.output.startswith(
        "not executed: this agent only proposes"
    )
    assert found.status == StepStatus.succeeded  # read-only actions still run
    assert found.output == "no tickets match"  # nothing was created


def test_autonomy_levels(db: Database, tmp_path: Path) -> None:
    def level(config: Config, name: str) -> tuple[str, str]:
        rt = make_runtime(db, config, ScriptedPlanner([]))
        executor = Executor(
            rt, run_id=1, agent="ops", requester=Requester("T1", "C1", "U1", "1.0"), actions={}
        )
        action = rt.registry.get(name)
        assert action is not None
        return executor.autonomy(action)

    plain = _config(tmp_path)
    assert level(plain, "ticket_create") == ("auto", "agent ops is set to auto")
    assert level(plain, "deploy") == ("approve", "its risk is high")
    assert level(plain, "ticket_find") == ("auto", "read-only")
    careful = _config(tmp_path, autonomy="approve")
    assert level(careful, "ticket_create") == ("approve", "agent ops is set to approve")
    assert level(careful, "ticket_find") == ("auto", "read-only")
    per_action = _config(tmp_path, action_autonomy={"ticket_comment": "propose"})
    assert level(per_action, "ticket_comment") == ("propose", "ticket_comment is set to propose")
    assert level(per_action, "ticket_create")[0] == "auto"


def test_customers_reach_only_customer_safe_actions(tmp_path: Path) -> None:
    config = _config(tmp_path)
    registry = Registry(config)
    agent = config.agents[0]
    assert set(registry.for_agent(agent)) == {"ticket_create", "ticket_find", "ticket_comment", "deploy"}
    assert set(registry.for_agent(agent, customer=True)) == {"ticket_create"}
    chosen = _config(tmp_path, customer_actions=["ticket_find"])
    assert set(Registry(chosen).for_agent(chosen.agents[0], customer=True)) == {"ticket_find"}


async def test_a_run_waits_for_a_resource_another_run_holds(db: Database, tmp_path: Path) -> None:
    async with db.write() as session:
        ticket = await create_ticket(session=session, ticket=TicketBase(title="shared"), run_id=None)
    assert ticket.id is not None
    config = _config(tmp_path)
    second_id: int | None = None

    async def meanwhile_another_run(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        nonlocal second_id
        second_id = await claimed_run(db)
        other = ScriptedPlanner([act(call("ticket_comment", ticket_id=ticket.id, text="second"))])
        await RunLoop(make_runtime(db, config, other), second_id).execute()
        return answer("first done")

    first_planner = ScriptedPlanner(
        [act(call("ticket_comment", ticket_id=ticket.id, text="first")), meanwhile_another_run]
    )
    first_id = await claimed_run(db)
    await RunLoop(make_runtime(db, config, first_planner), first_id).execute()

    assert second_id is not None
    assert (await _run(db, first_id)).status == RunStatus.succeeded
    second = await _run(db, second_id)
    # The first run finished and freed the ticket: the waiting run was put back in the queue.
    assert second.status == RunStatus.queued
    assert [s.kind for s in await _steps(db, second_id)] == [StepKind.model]  # the comment did not start
    async with db.read() as session:
        assert await locks.held_by(session=session, run_id=first_id) == []
        assert [c.text for c in await comments_of(session=session, ticket_id=ticket.id)] == ["first"]

    async with db.write() as session:
        assert await runs.claim_runs(session=session, worker_id=WORKER, limit=5, lease=LEASE) == [second_id]
    await RunLoop(make_runtime(db, config, ScriptedPlanner([answer("second done")])), second_id).execute()

    assert (await _run(db, second_id)).status == RunStatus.succeeded
    async with db.read() as session:
        assert [c.text for c in await comments_of(session=session, ticket_id=ticket.id)] == [
            "first",
            "second",
        ]
        assert await locks.held_by(session=session, run_id=second_id) == []


async def test_waiting_reason_names_the_resource_and_its_holder(db: Database, tmp_path: Path) -> None:
    holder = await queue_run(db)
    async with db.write() as session:
        assert await locks.acquire(session=session, resource="ticket:7", run_id=holder) is None
    run_id = await claimed_run(db)
    planner = ScriptedPlanner([act(call("ticket_comment", ticket_id=7, text="x"))])

    await RunLoop(make_runtime(db, _config(tmp_path), planner), run_id).execute()

    run = await _run(db, run_id)
    assert run.status == RunStatus.waiting
    assert run.wait_reason == f"resource: ticket:7 (held by run #{holder})"
    assert run.worker_id is None


async def test_a_deadlock_fails_the_run_and_frees_what_it_held(db: Database, tmp_path: Path) -> None:
    waiting = await queue_run(db)
    run_id = await claimed_run(db)
    async with db.write() as session:
        await locks.acquire(session=session, resource="ticket:1", run_id=waiting)
        await locks.acquire(session=session, resource="ticket:2", run_id=run_id)
        await session.exec(  # type: ignore[call-overload]
            update(Run)
            .where(col(Run.id) == waiting)
            .values(
                status=RunStatus.waiting,
                wait_kind=WaitKind.resource,
                wait_on="ticket:2",
                wait_reason=locks.wait_reason("ticket:2", run_id),
                worker_id=None,
            )
        )
    planner = ScriptedPlanner([act(call("ticket_comment", ticket_id=1, text="x"))])

    await RunLoop(make_runtime(db, _config(tmp_path), planner), run_id).execute()

    run = await _run(db, run_id)
    assert run.status == RunStatus.failed
    assert run.error is not None
    assert f"run #{waiting} waits for what this run holds (deadlock)" in run.error
    assert "not approved" not in run.error, "a deadlock is reported as a refused approval"
    assert (await _run(db, waiting)).status == RunStatus.queued  # ticket:2 is free again
    async with db.read() as session:
        assert await locks.held_by(session=session, run_id=run_id) == []


async def test_a_model_reusing_tool_call_ids_cannot_reuse_an_approval(db: Database, tmp_path: Path) -> None:
    """Some OpenAI-compatible servers number tool calls per turn ("call_0" every time).
    An approval given to one call must not let a later, different call with the same id through."""
    run_id = await claimed_run(db)
    first = Turn(content=None, tool_calls=[call("deploy", version="1.0")])
    second = Turn(content=None, tool_calls=[call("deploy", version="2.0")])
    second.tool_calls[0].id = first.tool_calls[0].id  # the server reused the id
    planner = ScriptedPlanner([first, second, answer("done")])
    rt = make_runtime(db, _config(tmp_path), planner)

    await RunLoop(rt, run_id).execute()
    assert (await _run(db, run_id)).status == RunStatus.waiting
    await _decide_and_requeue(db, run_id, ApprovalStatus.approved)
    await RunLoop(rt, run_id).execute()

    assert _log(tmp_path) == "deploy 1.0\n"  # 2.0 was not covered by the approval of 1.0
    run = await _run(db, run_id)
    assert run.status == RunStatus.waiting and "approval" in (run.wait_reason or "")
    async with db.read() as session:
        [pending] = await approvals.pending_approvals(session=session)
    assert pending.arguments == {"version": "2.0"}
