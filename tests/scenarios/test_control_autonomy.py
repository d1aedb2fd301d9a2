"""Autonomy per agent: "propose" only says what it would do; "approve" asks a human before
every side effect, but not before a read-only look.
"""

from __future__ import annotations

from scenarios.control_support import actions_of, approval_message, approvals, ask, click, config, lines
from storage.models import ApprovalStatus, RunStatus, StepStatus


async def test_a_propose_only_agent_does_nothing_and_its_outcome_says_what_it_would_do(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes, autonomy="propose"), model=True)
    desk.model.call("append_line", {"line": "rotate the logs"})
    desk.model.call("ticket_create", {"title": "Rotate logs weekly"})
    desk.model.answer("Here is my plan.")  # the model's own words need not repeat the proposals
    ts = await ask(desk, "rotate the logs and file a ticket about it")

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    assert lines(notes) == [] and not notes.exists()
    assert await desk.tickets() == []
    assert await approvals(desk) == []
    actions = await actions_of(desk, run.id)
    assert [(s.name, s.status) for s in actions] == [
        ("append_line", StepStatus.proposed),
        ("ticket_create", StepStatus.proposed),
    ]
    # The model was told nothing was executed.
    assert desk.model.tool_results(1)[0].startswith("not executed")
    # The outcome in the thread says what would have been done, and offers no Undo.
    outcome = desk.slack.messages[run.outcome_ts]
    assert outcome.thread_ts == ts
    assert "append_line" in outcome.shown() and "rotate the logs" in outcome.shown(), outcome.shown()
    assert "ticket_create" in outcome.shown() and "Rotate logs weekly" in outcome.shown(), outcome.shown()
    assert "chatops_undo" not in outcome.action_ids()


async def test_an_approve_agent_asks_before_every_side_effect_but_not_to_look(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes, autonomy="approve"), model=True)
    model = desk.model
    model.call("check_status")  # read-only command
    model.call("ticket_find", {"query": "logs"})  # read-only built-in
    model.call("append_line", {"line": "approved line"})
    model.call("ticket_create", {"title": "Approved ticket"})
    model.answer("Done, with approval.")
    ts = await ask(desk, "look around, then note and file it")

    first = await approval_message(desk, "C1", ts)
    [approval] = await approvals(desk)
    assert approval.action == "append_line" and "approve" in approval.reason
    run = await desk.run(approval.run_id)
    assert run.status == RunStatus.waiting
    looked = await actions_of(desk, run.id)
    assert [(s.name, s.status) for s in looked] == [
        ("check_status", StepStatus.succeeded),
        ("ticket_find", StepStatus.succeeded),
    ]
    assert lines(notes) == []

    await click(desk, "chatops_approve", str(approval.id), message=first)
    second = await approval_message(desk, "C1", ts, after=first)
    assert second.ts != first.ts
    _, pending = await approvals(desk)
    assert pending.action == "ticket_create" and pending.status == ApprovalStatus.pending
    assert lines(notes) == ["approved line"] and await desk.tickets() == []

    await click(desk, "chatops_approve", str(pending.id), message=second)
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded
    assert [t.title for t in await desk.tickets()] == ["Approved ticket"]
    assert [a.action for a in await approvals(desk)] == ["append_line", "ticket_create"]
