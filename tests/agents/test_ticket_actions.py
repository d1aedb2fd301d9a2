"""Built-in ticket and Slack actions, and their compensations, on a real database."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from agent_doubles import RecordingChat

from agents.actions.base import Action, ActionContext, Requester
from agents.actions.chat import SlackPost, SlackReply
from agents.actions.tickets import TicketClose, TicketComment, TicketCreate, TicketFind, TicketUpdate
from agents.errors import ActionError, LeftInPlace
from storage import tickets
from storage.engine import Database
from storage.models import Ticket

_calls = itertools.count(1)


def _ctx(
    db: Database, chat: RecordingChat | None = None, key: str | None = None, run_id: int = 5
) -> ActionContext:
    """Each call is its own step, with its own idempotency key (unless `key` repeats one)."""
    return ActionContext(
        run_id=run_id,
        agent="ops",
        requester=Requester("T1", "C1", "UREQ", "1690000000.000001"),
        db=db,
        chat=chat or RecordingChat(),
        idempotency_key=key or f"chatops-5-call-{next(_calls)}",
    )


async def _run(action: Action, db: Database, run_id: int = 5, **arguments: Any) -> Any:
    return await action.run(_ctx(db, run_id=run_id), action.args_model.model_validate(arguments))


async def _ticket(db: Database, ticket_id: int) -> Ticket | None:
    async with db.read() as session:
        return await tickets.get_ticket(session=session, ticket_id=ticket_id)


async def _comments(db: Database, ticket_id: int) -> list[str]:
    async with db.read() as session:
        return [c.text for c in await tickets.comments_of(session=session, ticket_id=ticket_id)]


async def test_create_then_compensate_deletes(db: Database) -> None:
    result = await _run(TicketCreate(), db, title="Login bug", priority="high", assignee="U2")
    ticket_id = result.undo["ticket_id"]
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None
    assert (ticket.title, ticket.priority, ticket.assignee, ticket.reporter, ticket.run_id) == (
        "Login bug",
        "high",
        "U2",
        "UREQ",
        5,
    )
    assert result.output == f"created ticket #{ticket_id} [open, high, assigned to U2] Login bug"

    assert await TicketCreate().compensate(_ctx(db), result.undo) == f"deleted ticket #{ticket_id}"
    assert await _ticket(db, ticket_id) is None
    # Idempotent: a second compensation finds nothing to do and says so.
    assert "already gone" in await TicketCreate().compensate(_ctx(db), result.undo)


async def test_update_then_compensate_restores(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="Slow page", assignee="U2")
    ticket_id = created.undo["ticket_id"]

    result = await _run(TicketUpdate(), db, ticket_id=ticket_id, priority="urgent", assignee="none")
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and (ticket.priority, ticket.assignee) == ("urgent", None)
    assert result.undo == {
        "ticket_id": ticket_id,
        "before": {"priority": "normal", "assignee": "U2"},
        "after": {"priority": "urgent", "assignee": None},
    }

    text = await TicketUpdate().compensate(_ctx(db), result.undo)
    assert text == f"restored assignee, priority of ticket #{ticket_id}"
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and (ticket.priority, ticket.assignee, ticket.title) == (
        "normal",
        "U2",
        "Slow page",
    )


async def test_undoing_an_update_leaves_fields_another_run_changed_since(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="Slow page")
    ticket_id = created.undo["ticket_id"]
    mine = await _run(TicketUpdate(), db, ticket_id=ticket_id, priority="high", assignee="U2")
    await _run(TicketUpdate(), db, run_id=9, ticket_id=ticket_id, priority="urgent")  # another run

    text = await TicketUpdate().compensate(_ctx(db), mine.undo)
    assert (
        text == f"restored assignee of ticket #{ticket_id} (priority changed again since: left as they are)"
    )
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and (ticket.priority, ticket.assignee) == ("urgent", None)
    # Nothing of its own left to restore: it says so, and changes nothing.
    await _run(TicketUpdate(), db, run_id=9, ticket_id=ticket_id, assignee="U3")
    with pytest.raises(LeftInPlace, match=r"assignee, priority of ticket #.* changed again since"):
        await TicketUpdate().compensate(_ctx(db), mine.undo)
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and (ticket.priority, ticket.assignee) == ("urgent", "U3")


async def test_undoing_a_creation_keeps_the_ticket_when_another_run_commented(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="Login bug")
    ticket_id = created.undo["ticket_id"]
    await _run(TicketComment(), db, ticket_id=ticket_id, text="mine")
    await _run(TicketComment(), db, run_id=9, ticket_id=ticket_id, text="another run's")

    with pytest.raises(LeftInPlace, match=r"left in place: 1 comment added since by run #9"):
        await TicketCreate().compensate(_ctx(db), created.undo)
    assert await _ticket(db, ticket_id) is not None
    assert await _comments(db, ticket_id) == ["mine", "another run's"]
    # Another run's undo of the creation is refused too: the ticket is not its own.
    with pytest.raises(LeftInPlace, match="not the ticket this run created"):
        await TicketCreate().compensate(_ctx(db, run_id=9), created.undo)


async def test_a_comment_is_removed_only_by_the_run_that_wrote_it(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="x")
    ticket_id = created.undo["ticket_id"]
    result = await _run(TicketComment(), db, ticket_id=ticket_id, text="looked at it")
    with pytest.raises(LeftInPlace, match="not the comment this run wrote"):
        await TicketComment().compensate(_ctx(db, run_id=9), result.undo)
    assert await _comments(db, ticket_id) == ["looked at it"]
    assert "removed the comment" in await TicketComment().compensate(_ctx(db), result.undo)
    assert "already gone" in await TicketComment().compensate(_ctx(db), result.undo)


async def test_update_errors(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="x")
    with pytest.raises(ActionError, match="nothing to change"):
        await _run(TicketUpdate(), db, ticket_id=created.undo["ticket_id"])
    with pytest.raises(ActionError, match="there is no ticket #999"):
        await _run(TicketUpdate(), db, ticket_id=999, title="y")
    with pytest.raises(ValueError):  # closing is ticket_close's job
        TicketUpdate.args_model.model_validate({"ticket_id": 1, "status": "closed"})


async def test_comment_then_compensate_deletes_the_comment(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="x")
    ticket_id = created.undo["ticket_id"]
    result = await _run(TicketComment(), db, ticket_id=ticket_id, text="looked at it")
    assert await _comments(db, ticket_id) == ["looked at it"]

    assert "removed the comment" in await TicketComment().compensate(_ctx(db), result.undo)
    assert await _comments(db, ticket_id) == []
    with pytest.raises(ActionError, match="there is no ticket #4242"):
        await _run(TicketComment(), db, ticket_id=4242, text="hi")


async def test_close_then_compensate_reopens_and_removes_the_resolution(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="x")
    ticket_id = created.undo["ticket_id"]
    await _run(TicketUpdate(), db, ticket_id=ticket_id, status="in_progress")
    await _run(TicketComment(), db, ticket_id=ticket_id, text="earlier note")

    result = await _run(TicketClose(), db, ticket_id=ticket_id, resolution="fixed in 1.2")
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and ticket.status == "closed"
    assert await _comments(db, ticket_id) == ["earlier note", "Resolution: fixed in 1.2"]
    assert result.undo["before"] == {"status": "in_progress"}

    await TicketClose().compensate(_ctx(db), result.undo)
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and ticket.status == "in_progress"
    assert await _comments(db, ticket_id) == ["earlier note"]


async def test_close_without_resolution_and_closing_twice(db: Database) -> None:
    created = await _run(TicketCreate(), db, title="x")
    ticket_id = created.undo["ticket_id"]
    result = await _run(TicketClose(), db, ticket_id=ticket_id)
    assert "comment_id" not in result.undo
    with pytest.raises(ActionError, match="already closed"):
        await _run(TicketClose(), db, ticket_id=ticket_id)
    await TicketClose().compensate(_ctx(db), result.undo)
    ticket = await _ticket(db, ticket_id)
    assert ticket is not None and ticket.status == "open"


async def test_find_is_read_only(db: Database) -> None:
    for title in ("Login bug", "Disk full on db1", "login page slow"):
        await _run(TicketCreate(), db, title=title)
    async with db.read() as session:
        before = [t.model_dump() for t in await tickets.find_tickets(session=session, limit=50)]

    result = await _run(TicketFind(), db, query="LOGIN")

    assert result.undo is None
    assert result.summary == "found 2 tickets"
    assert "Login bug" in result.output and "login page slow" in result.output
    assert "Disk full" not in result.output
    async with db.read() as session:
        after = [t.model_dump() for t in await tickets.find_tickets(session=session, limit=50)]
    assert after == before
    assert TicketFind.read_only and TicketFind.idempotent
    assert (await _run(TicketFind(), db, query="nothing like it")).output == "no tickets match"


async def test_find_by_status_and_assignee(db: Database) -> None:
    a = (await _run(TicketCreate(), db, title="a", assignee="U7")).undo["ticket_id"]
    await _run(TicketCreate(), db, title="b")
    await _run(TicketClose(), db, ticket_id=a)
    result = await _run(TicketFind(), db, status="closed", assignee="U7")
    assert result.data == {"ticket_ids": [a]}


def test_ticket_resources_name_the_ticket(db: Database) -> None:
    args = TicketUpdate.args_model.model_validate({"ticket_id": 12, "title": "t"})
    assert TicketUpdate().resource(args, _ctx(db)) == "ticket:12"
    assert TicketCreate().resource(TicketCreate.args_model.model_validate({"title": "t"}), _ctx(db)) is None


async def test_slack_reply_and_post_are_deleted_by_their_compensation(db: Database) -> None:
    chat = RecordingChat()
    ctx = _ctx(db, chat)
    reply = await SlackReply().run(ctx, SlackReply.args_model.model_validate({"text": "on it"}))
    post = await SlackPost().run(
        ctx, SlackPost.args_model.model_validate({"channel": "<#C9|ops>", "text": "fyi"})
    )
    assert chat.posts[0] == {
        "channel": "C1",
        "text": "on it",
        "thread_ts": "1690000000.000001",
        "ts": reply.undo["ts"],
    }
    assert chat.posts[1]["channel"] == "C9" and chat.posts[1]["thread_ts"] is None

    await SlackPost().compensate(ctx, post.undo)
    await SlackReply().compensate(ctx, reply.undo)
    assert chat.deleted == [("C9", post.undo["ts"]), ("C1", reply.undo["ts"])]


async def test_a_repeated_key_returns_the_receipt_instead_of_acting_again(db: Database) -> None:
    """A run resumed after a crash repeats its interrupted step with the same key: exactly once."""
    action = TicketCreate()
    args = action.args_model.model_validate({"title": "once"})
    first = await action.run(_ctx(db, key="chatops-9-call-1"), args)
    again = await action.run(_ctx(db, key="chatops-9-call-1"), args)
    assert again == first
    async with db.read() as session:
        assert [t.title for t in await tickets.find_tickets(session=session)] == ["once"]


async def test_a_failed_change_leaves_no_receipt(db: Database) -> None:
    action = TicketUpdate()
    args = action.args_model.model_validate({"ticket_id": 99, "priority": "high"})
    for _ in range(2):  # fails both times: nothing was recorded as done
        with pytest.raises(ActionError, match="no ticket #99"):
            await action.run(_ctx(db, key="chatops-9-call-2"), args)
