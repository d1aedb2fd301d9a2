"""The built-in ticket tracker: one per workspace (`team_id`; "" for every workspace, as a
single-token install keeps them). A ticket of another workspace is not there for a lookup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import Ticket, TicketBase, TicketComment

TICKET_FIELDS = ("title", "description", "status", "priority", "assignee")


async def create_ticket(
    *, session: AsyncSession, ticket: TicketBase, run_id: int | None, team_id: str = ""
) -> Ticket:
    row = Ticket(**ticket.model_dump(), run_id=run_id, team_id=team_id)
    session.add(row)
    await session.flush()
    return row


async def get_ticket(*, session: AsyncSession, ticket_id: int, team_id: str | None = None) -> Ticket | None:
    """The ticket; with `team_id`, only if it is in that workspace's tracker."""
    ticket = await session.get(Ticket, ticket_id, populate_existing=True)
    if ticket is None or (team_id is not None and ticket.team_id != team_id):
        return None
    return ticket


async def update_ticket(
    *, session: AsyncSession, ticket_id: int, changes: dict[str, Any], team_id: str | None = None
) -> dict[str, Any] | None:
    """Apply changes; returns the previous values of the changed fields, None if no ticket
    (in that workspace's tracker, with `team_id`)."""
    ticket = await get_ticket(session=session, ticket_id=ticket_id, team_id=team_id)
    if ticket is None:
        return None
    before = {}
    for name, value in changes.items():
        if name not in TICKET_FIELDS:
            raise ValueError(f"not a ticket field: {name}")
        before[name] = getattr(ticket, name)
        setattr(ticket, name, value)
    ticket.updated_at = now()
    session.add(ticket)
    return before


@dataclass
class Removal:
    """What removing a row a run made came to."""

    status: Literal["deleted", "gone", "not_ours", "kept"]
    """deleted; gone (nothing to remove); not_ours (the row is not the one this run made);
    kept (it carries what others added since: `others`)."""
    others: list[TicketComment] = field(default_factory=list)


async def delete_ticket(*, session: AsyncSession, ticket_id: int, run_id: int | None = None) -> Removal:
    """Delete a ticket and its comments, if `run_id` made it (None: whoever made it).

    A ticket that has comments no step of `run_id` wrote (another run's, or a person's) is
    kept, with them: an undo removes only what its own run made.
    """
    ticket = await get_ticket(session=session, ticket_id=ticket_id)
    if ticket is None:
        return Removal("gone")
    if run_id is not None and ticket.run_id != run_id:
        return Removal("not_ours")
    others = [
        c
        for c in await comments_of(session=session, ticket_id=ticket_id)
        if run_id is not None and c.run_id != run_id
    ]
    if others:
        return Removal("kept", others)
    await session.exec(delete(TicketComment).where(col(TicketComment.ticket_id) == ticket_id))
    await session.exec(delete(Ticket).where(col(Ticket.id) == ticket_id))
    return Removal("deleted")


async def add_comment(
    *, session: AsyncSession, ticket_id: int, author: str | None, text: str, run_id: int | None = None
) -> TicketComment:
    comment = TicketComment(ticket_id=ticket_id, author=author, text=text, run_id=run_id)
    session.add(comment)
    await session.flush()
    return comment


async def delete_comment(
    *, session: AsyncSession, comment_id: int, ticket_id: int | None = None, run_id: int | None = None
) -> Removal:
    """Delete a comment, if it is the one `run_id` wrote on `ticket_id` (None: any)."""
    comment = await session.get(TicketComment, comment_id, populate_existing=True)
    if comment is None:
        return Removal("gone")
    if (run_id is not None and comment.run_id != run_id) or (
        ticket_id is not None and comment.ticket_id != ticket_id
    ):
        return Removal("not_ours")
    await session.exec(delete(TicketComment).where(col(TicketComment.id) == comment_id))
    return Removal("deleted")


async def find_tickets(
    *,
    session: AsyncSession,
    query: str | None = None,
    status: str | None = None,
    assignee: str | None = None,
    limit: int = 20,
    team_id: str | None = None,
) -> list[Ticket]:
    stmt = select(Ticket)
    if team_id is not None:
        stmt = stmt.where(col(Ticket.team_id) == team_id)
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(
            or_(
                col(Ticket.title).ilike(like),
                col(Ticket.description).ilike(like),
            )
        )
    if status:
        stmt = stmt.where(Ticket.status == status)
    if assignee:
        stmt = stmt.where(Ticket.assignee == assignee)
    stmt = stmt.order_by(col(Ticket.id).desc()).limit(limit)
    return list((await session.exec(stmt)).all())


async def comments_of(*, session: AsyncSession, ticket_id: int) -> list[TicketComment]:
    stmt = select(TicketComment).where(TicketComment.ticket_id == ticket_id).order_by(col(TicketComment.id))
    return list((await session.exec(stmt)).all())
