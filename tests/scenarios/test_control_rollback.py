"""A run whose action fails for good rolls itself back (on_failure = "rollback", the default):
its completed steps are reversed and the thread says what failed and what was rolled back.
With on_failure = "keep", what was done stays done.
"""

from __future__ import annotations

from agents import loop
from scenarios.control_support import actions_of, ask, compensations_of, config, lines, say, undone
from storage.models import RunStatus, StepStatus


def _script(model) -> None:
    model.call("append_line", {"line": "migration started"})
    model.call("ticket_create", {"title": "Database migration"})
    model.call("slack_reply", {"text": "Migrating the database now."})
    model.call("break_things", {"target": "db"})  # exits 3: fails for good
    model.answer("The migration failed.")


async def test_a_failed_run_rolls_back_what_it_did_and_says_so(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    slack = desk.slack
    _script(desk.model)
    ts = await ask(desk, "migrate the database")

    run = await desk.only_run()
    assert run.status == RunStatus.rolled_back
    # Nothing is left behind: the line, the ticket and the reply are gone.
    assert lines(notes) == []
    assert await desk.tickets() == []
    [reply] = [m for m in slack.thread("C1", ts) if m.text == "Migrating the database now."]
    assert reply.deleted
    assert [c.params["ts"] for c in slack.calls_to("chat.delete")] == [reply.ts]
    actions = await actions_of(desk, run.id)
    assert [(s.name, s.status) for s in actions] == [
        ("append_line", StepStatus.compensated),
        ("ticket_create", StepStatus.compensated),
        ("slack_reply", StepStatus.compensated),
        ("break_things", StepStatus.failed),  # it did not complete: nothing of it to reverse
    ]
    compensations = await compensations_of(desk, run.id)
    assert [c.compensates for c in compensations] == [a.id for a in reversed(actions[:3])]  # newest first
    # The thread says what failed and what was rolled back.
    outcome = slack.messages[run.outcome_ts]
    assert outcome.thread_ts == ts
    assert "rolled back" in outcome.shown()
    assert "break_things" in outcome.shown() and "status 3" in outcome.shown()
    assert "Reversed:" in outcome.shown()
    assert "deleted ticket #1" in outcome.shown() and "deleted the reply" in outcome.shown()
    assert "append_line" in outcome.shown().split("Reversed:", 1)[1]
    assert "chatops_undo" not in outcome.action_ids()


async def test_with_on_failure_keep_nothing_is_reversed(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes, on_failure="keep"), model=True)
    _script(desk.model)
    ts = await ask(desk, "migrate the database")

    run = await desk.only_run()
    assert run.status == RunStatus.failed
    assert lines(notes) == ["migration started"]
    assert [t.title for t in await desk.tickets()] == ["Database migration"]
    [reply] = [m for m in desk.slack.thread("C1", ts) if m.text == "Migrating the database now."]
    assert not reply.deleted
    assert desk.slack.calls_to("chat.delete") == []
    assert await compensations_of(desk, run.id) == []
    assert [s.status for s in await actions_of(desk, run.id)] == [
        StepStatus.succeeded,
        StepStatus.succeeded,
        StepStatus.succeeded,
        StepStatus.failed,
    ]
    outcome = desk.slack.messages[run.outcome_ts]
    assert "failed" in outcome.shown() and "break_things" in outcome.shown()
    assert "Reversed:" not in outcome.shown()

    # What was kept can still be taken back by a human.
    await say(desk, "undo", thread_ts=ts)
    run = await undone(desk, run.id)
    assert run.status == RunStatus.rolled_back
    assert lines(notes) == [] and await desk.tickets() == [] and reply.deleted


async def test_a_run_the_model_server_gives_up_on_is_rolled_back(start_desk, tmp_path, monkeypatch):
    # The run tries the failing model again after a pause (5 s first): not what this test is about.
    monkeypatch.setattr(loop, "MODEL_RETRY_FIRST", 0.05)
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True, chatops_model_retries=0)
    desk.model.call("append_line", {"line": "half of the work"})
    desk.model.call("ticket_create", {"title": "Half done"})
    desk.model.fail(500)
    await ask(desk, "do the work")

    run = await desk.only_run()
    assert run.status == RunStatus.rolled_back
    assert "model" in (run.error or "")
    assert lines(notes) == [] and await desk.tickets() == []
    assert [s.status for s in await actions_of(desk, run.id)] == [StepStatus.compensated] * 2
