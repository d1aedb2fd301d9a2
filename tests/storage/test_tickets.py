from __future__ import annotations

import pytest

from storage import tickets
from storage.engine import Database
from storage.models import TicketBase


async def _new(db: Database, title: str, **fields: str) -> int:
    async with db.write() as session:
        ticket = await tickets.create_ticket(
            session=session, ticket=TicketBase(title=title, **fields), run_id=3
        )
    assert ticket.id is not None
    return ticket.id


async def test_update_returns_the_previous_values(db: Database) -> None:
    ticket_id = await _new(db, "Login bug", priority="high")
    async with db.write() as session:
        before = await tickets.update_ticket(
            session=session, ticket_id=ticket_id, changes={"priority": "low", "assignee": "U2"}
        )
    assert before == {"priority": "high", "assignee": None}
    async with db.read() as session:
        ticket = await tickets.get_ticket(session=session, ticket_id=ticket_id)
    assert ticket is not None and (ticket.priority, ticket.assignee, ticket.run_id) == ("low", "U2", 3)

    async with db.write() as session:
        assert await tickets.update_ticket(session=session, ticket_id=999, changes={"title": "x"}) is None
        with pytest.raises(ValueError, match="not a ticket field"):
            await tickets.update_ticket(session=session, ticket_id=ticket_id, changes={"run_id": 1})


async def test_delete_takes_the_comments_too(db: Database) -> None:
    ticket_id = await _new(db, "x")
    async with db.write() as session:
        comment = await tickets.add_comment(session=session, ticket_id=ticket_id, author="U1", text="hi")
        assert comment.id is not None
    async with db.write() as session:
        assert (await tickets.delete_ticket(session=session, ticket_id=ticket_id)).status == "deleted"
        assert (await tickets.delete_ticket(session=session, ticket_id=ticket_id)).status == "gone"
        assert (await tickets.delete_comment(session=session, comment_id=comment.id)).status == "gone"
    async with db.read() as session:
        assert await tickets.comments_of(session=session, ticket_id=ticket_id) == []


async def test_a_run_deletes_only_the_ticket_it_made_and_keeps_others_comments(db: Database) -> None:
    ticket_id = await _new(db, "x")  # made by run 3 (see _new)
    async with db.write() as session:
        own = await tickets.add_comment(session=session, ticket_id=ticket_id, author="U1", text="a", run_id=3)
        other = await tickets.add_comment(
            session=session, ticket_id=ticket_id, author="U2", text="b", run_id=7
        )
        person = await tickets.add_comment(session=session, ticket_id=ticket_id, author="U2", text="c")
    async with db.write() as session:
        assert (
            await tickets.delete_ticket(session=session, ticket_id=ticket_id, run_id=4)
        ).status == "not_ours"
        kept = await tickets.delete_ticket(session=session, ticket_id=ticket_id, run_id=3)
    assert kept.status == "kept" and [c.id for c in kept.others] == [other.id, person.id]
    async with db.write() as session:
        # A comment is removed only by the run that wrote it, on the ticket it wrote it on.
        assert (await tickets.delete_comment(session=session, comment_id=other.id or 0, run_id=3)).status == (
            "not_ours"
        )
        assert (
            await tickets.delete_comment(session=session, comment_id=own.id or 0, ticket_id=999, run_id=3)
        ).status == "not_ours"
        assert (await tickets.delete_comment(session=session, comment_id=own.id or 0, run_id=3)).status == (
            "deleted"
        )
    async with db.read() as session:
        assert [c.id for c in await tickets.comments_of(session=session, ticket_id=ticket_id)] == [
            other.id,
            person.id,
        ]


async def test_find_tickets_filters_newest_first(db: Database) -> None:
    a = await _new(db, "Login bug", assignee="U1")
    b = await _new(db, "Disk full", description="the LOGIN server disk")
    c = await _new(db, "Other", status="closed", assignee="U1")
    async with db.read() as session:
        assert [t.id for t in await tickets.find_tickets(session=session, query="login")] == [b, a]
        assert [t.id for t in await tickets.find_tickets(session=session, assignee="U1")] == [c, a]
        assert [t.id for t in await tickets.find_tickets(session=session, status="closed")] == [c]
        assert [t.id for t in await tickets.find_tickets(session=session, limit=1)] == [c]


async def test_a_ticket_is_found_only_in_its_own_workspaces_tracker(db: Database) -> None:
    async with db.write() as session:
        mine = await tickets.create_ticket(
            session=session, ticket=TicketBase(title="vpn"), run_id=1, team_id="T1"
        )
    assert mine.id is not None
    async with db.write() as session:
        assert await tickets.get_ticket(session=session, ticket_id=mine.id, team_id="T2") is None
        assert (
            await tickets.update_ticket(
                session=session, ticket_id=mine.id, changes={"status": "closed"}, team_id="T2"
            )
            is None
        )
        assert await tickets.find_tickets(session=session, query="vpn", team_id="T2") == []
        assert [t.id for t in await tickets.find_tickets(session=session, query="vpn", team_id="T1")] == [
            mine.id
        ]
        found = await tickets.get_ticket(session=session, ticket_id=mine.id, team_id="T1")
        assert found is not None and found.status == "open"
