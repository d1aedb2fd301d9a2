from __future__ import annotations

from typing import Any

import pytest
from agent_doubles import RecordingReporter, ScriptedPlanner, call, claimed_run, config_with, make_runtime
from pydantic import BaseModel

from agents.actions.base import Action, ActionContext, ActionResult, Requester
from agents.errors import ActionError
from agents.executor import Executor
from agents.model import ToolCall
from agents.runtime import Runtime
from storage import journal
from storage.engine import Database
from storage.models import Step, StepKind, StepStatus
from storage.runs import LeaseLost
from storage.tickets import find_tickets, get_ticket


class NoteArgs(BaseModel):
    note: str


class Probe(Action):
    """Records, while it runs, what the journal says about its own step."""

    name = "probe"
    description = "probe"
    args_model = NoteArgs

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, dict[str, Any] | None]] = []

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, NoteArgs)
        async with ctx.db.read() as session:
            steps = await journal.steps_of(session=session, run_id=ctx.run_id)
        step = steps[-1]
        self.seen.append((step.status, step.idempotency_key, step.arguments))
        return ActionResult(
            output=f"noted {args.note}", summary="noted", undo={"note": args.note}, data={"n": 1}
        )


class Boom(Action):
    name = "boom"
    description = "a bug"
    args_model = NoteArgs

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        raise RuntimeError("secret internals")


class Refuses(Action):
    name = "refuses"
    description = "a business refusal"
    args_model = NoteArgs

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        raise ActionError("the service is in maintenance")


async def _setup(db: Database, *extra: Action) -> tuple[Runtime, Executor, int]:
    config = config_with()
    rt = make_runtime(db, config, ScriptedPlanner([]))
    run_id = await claimed_run(db)
    actions = {**rt.registry.for_agent(config.agents[0]), **{a.name: a for a in extra}}
    executor = Executor(
        rt, run_id=run_id, agent="ops", requester=Requester("T1", "C1", "U1REQ", "1.0"), actions=actions
    )
    return rt, executor, run_id


async def _steps(db: Database, run_id: int) -> list[Step]:
    async with db.read() as session:
        return await journal.steps_of(session=session, run_id=run_id)


async def test_rejected_calls_are_journaled_and_explained(db: Database) -> None:
    _, executor, run_id = await _setup(db)

    unknown = await executor.call(ToolCall(id="c1", name="reboot_world", arguments="{}"))
    bad_json = await executor.call(ToolCall(id="c2", name="ticket_create", arguments='{"title": '))
    not_object = await executor.call(ToolCall(id="c3", name="ticket_create", arguments="[1, 2]"))
    invalid = await executor.call(
        ToolCall(id="c4", name="ticket_create", arguments='{"title": "", "priority": "whenever"}')
    )

    assert unknown.startswith("error: there is no tool named 'reboot_world'; tools: ")
    assert "ticket_create" in unknown
    assert bad_json.startswith("error: the arguments are not valid JSON")
    assert not_object == "error: the arguments must be a JSON object"
    assert invalid.startswith("error: invalid arguments for ticket_create: ")
    assert "title" in invalid and "priority" in invalid

    steps = await _steps(db, run_id)
    assert [(s.seq, s.kind, s.name, s.status, s.tool_call_id) for s in steps] == [
        (1, StepKind.action, "reboot_world", StepStatus.rejected, "c1"),
        (2, StepKind.action, "ticket_create", StepStatus.rejected, "c2"),
        (3, StepKind.action, "ticket_create", StepStatus.rejected, "c3"),
        (4, StepKind.action, "ticket_create", StepStatus.rejected, "c4"),
    ]
    assert steps[1].arguments == {"_raw": '{"title": '}
    assert steps[3].arguments == {"title": "", "priority": "whenever"}
    assert all(s.output == r for s, r in zip(steps, [unknown, bad_json, not_object, invalid], strict=True))
    assert all(s.error and s.finished_at for s in steps)


async def test_missing_arguments_mean_an_empty_object(db: Database) -> None:
    _, executor, run_id = await _setup(db)
    reply = await executor.call(ToolCall(id="c1", name="ticket_find", arguments=""))
    assert reply == "no tickets match"
    assert (await _steps(db, run_id))[0].status == StepStatus.succeeded


async def test_success_journals_intent_then_result_with_undo(db: Database) -> None:
    probe = Probe()
    rt, executor, run_id = await _setup(db, probe)
    assert isinstance(rt.reporter, RecordingReporter)

    reply = await executor.call(ToolCall(id="c1", name="probe", arguments='{"note": "hi"}', turn=3, index=1))

    assert reply == "noted hi"
    # While it ran, its step was already journaled as an intent with a stable idempotency key,
    # made from the call's place in the run (turn 3, second call), not from the model's id.
    assert probe.seen == [(StepStatus.intent, f"chatops-{run_id}-3.1", {"note": "hi"})]
    [step] = await _steps(db, run_id)
    assert step.status == StepStatus.succeeded
    assert step.kind == StepKind.action and step.name == "probe" and step.tool_call_id == "c1"
    assert step.output == "noted hi"
    assert step.undo == {"note": "hi"}
    assert step.data == {"summary": "noted", "n": 1}
    assert step.reversible
    assert step.finished_at is not None
    assert rt.reporter.events.count(("progressed", run_id)) == 2  # once for the intent, once for the result


async def test_builtin_action_step_records_risk_resource_and_result(db: Database) -> None:
    _, executor, run_id = await _setup(db)
    created = await executor.call(call("ticket_create", title="Disk full"))
    assert created.startswith("created ticket #")
    ticket_id = int(created.split("#")[1].split()[0])
    await executor.call(call("ticket_comment", ticket_id=ticket_id, text="on it"))

    first, second = await _steps(db, run_id)
    assert first.undo == {"ticket_id": ticket_id}
    assert first.resource is None and first.risk == "low"
    assert second.resource == f"ticket:{ticket_id}"
    async with db.read() as session:
        assert await get_ticket(session=session, ticket_id=ticket_id) is not None


async def test_action_error_fails_the_step_and_tells_the_model(db: Database) -> None:
    _, executor, run_id = await _setup(db, Refuses())
    reply = await executor.call(ToolCall(id="c1", name="refuses", arguments='{"note": "x"}'))
    assert reply == "error: the service is in maintenance"
    [step] = await _steps(db, run_id)
    assert (step.status, step.error, step.output) == (
        StepStatus.failed,
        "the service is in maintenance",
        reply,
    )


async def test_a_bug_in_an_action_fails_the_step_and_the_run_goes_on(db: Database) -> None:
    _, executor, run_id = await _setup(db, Boom(), Probe())

    reply = await executor.call(ToolCall(id="c1", name="boom", arguments='{"note": "x"}'))
    after = await executor.call(ToolCall(id="c2", name="probe", arguments='{"note": "still here"}'))

    assert reply == "error: internal error in boom"
    assert "secret internals" not in reply  # the traceback is logged, not shown
    assert after == "noted still here"
    failed, ok = await _steps(db, run_id)
    assert failed.status == StepStatus.failed
    assert failed.error == "internal error in boom: RuntimeError"
    assert ok.status == StepStatus.succeeded and ok.seq == failed.seq + 1


async def test_calls_are_fenced_by_the_lease(db: Database) -> None:
    rt, executor, run_id = await _setup(db)
    other = make_runtime(db, rt.config, ScriptedPlanner([]), worker_id="someone-else")
    fenced = Executor(
        other, run_id=run_id, agent="ops", requester=executor.requester, actions=executor.actions
    )
    with pytest.raises(LeaseLost):
        await fenced.call(call("ticket_create", title="x"))
    assert await _steps(db, run_id) == []
    async with db.read() as session:
        assert await find_tickets(session=session) == []
