"""An undo touches only what its own run made: the ticket-id story (create, comment, undo,
create, comment, undo) leaves every newer run's data intact, and the undo report says what it
left in place and why. Through Slack with the offline planner, on the built-in tickets.
"""

from __future__ import annotations

from sqlmodel import col

from scenarios.control_support import ask, reply_saying, say, undone
from storage.models import RunStatus, StepKind, StepStatus, TicketComment


async def _comments(desk) -> list[tuple[int | None, int, int | None, str]]:
    rows = await desk.rows(TicketComment)
    return [(c.id, c.ticket_id, c.run_id, c.text) for c in rows]


async def test_undo_never_removes_what_a_newer_run_made(start_desk) -> None:
    desk = await start_desk()

    # Run 1 creates ticket #1; run 2 (another thread) comments on it.
    first = await ask(desk, "create a ticket for the login bug")
    run1 = await desk.only_run()
    [ticket1] = await desk.tickets()
    second = await ask(desk, f"comment on ticket {ticket1.id}: seen on mobile too")
    run2 = await desk.finished((await desk.runs())[-1].id)
    assert run2.status == RunStatus.succeeded, run2.error

    # Undo run 1: its ticket carries run 2's comment, so the ticket stays and the report says why.
    await say(desk, "undo", thread_ts=first)
    report = await reply_saying(desk, "C1", first, f"Undo of run #{run1.id}")
    await undone(desk, run1.id)
    assert "left in place" in report.text and f"run #{run2.id}" in report.text
    assert [t.id for t in await desk.tickets()] == [ticket1.id]
    assert [text for *_, text in await _comments(desk)] == ["seen on mobile too"]

    # Run 3 creates a new ticket: a new number, never one an earlier ticket had.
    await ask(desk, "create a ticket for the checkout bug")
    run3 = await desk.finished((await desk.runs())[-1].id)
    ticket2 = (await desk.tickets())[-1]
    assert ticket2.id is not None and ticket1.id is not None and ticket2.id > ticket1.id
    assert ticket2.run_id == run3.id
    # Run 4 comments on it.
    await ask(desk, f"comment on ticket {ticket2.id}: customer 1042 affected")
    run4 = await desk.finished((await desk.runs())[-1].id)
    assert run4.status == RunStatus.succeeded, run4.error

    # Undo run 2: only its own comment goes; run 4's comment and both tickets stay.
    await say(desk, "undo", thread_ts=second)
    run2 = await undone(desk, run2.id)
    assert run2.status == RunStatus.rolled_back
    assert [(ticket, run, text) for _, ticket, run, text in await _comments(desk)] == [
        (ticket2.id, run4.id, "customer 1042 affected")
    ]
    assert [t.id for t in await desk.tickets()] == [ticket1.id, ticket2.id]
    # Run 1's creation step is still not compensated: its ticket was left in place, and said so.
    steps = await desk.steps(run1.id)
    [create] = [s for s in steps if s.kind == StepKind.action]
    assert create.status == StepStatus.succeeded
    [compensation] = [s for s in steps if s.kind == StepKind.compensation]
    assert compensation.status == StepStatus.failed and "left in place" in (compensation.output or "")
    assert await desk.rows(TicketComment, col(TicketComment.run_id) == run2.id) == []
