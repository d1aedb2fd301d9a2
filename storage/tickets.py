"""The built-in ticket tracker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.models import Ticket, TicketBase, TicketComment

TICKET_FIELDS = ("title", "description", "status", "priority", "assignee")


async def create_ticket(*, session: AsyncSession, ticket: TicketBase, run_id: int | None) -> Ticket:
    row = Ticket(**ticket.model_dump(), run_id=run_id)
    session.add(row)
    await session.flush()
    return row


async def get_ticket(*, session: AsyncSession, ticket_id: int) -> Ticket | None:
    return await session.get(Ticket, ticket_id, populate_existing=True)


async def update_ticket(
    *, session: AsyncSession, ticket_id: int, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """Apply changes; returns the previous values of the changed fields, None if no ticket."""
    ticket = await get_ticket(session=session, ticket_id=ticket_id)
    if ticket is None:
        return None
    before = {}
    for field, value in changes.items():
        if field not in TICKET_FIELDS:
            raise ValueError(f"not a ticket field: {field}")
        before[field] = getattr(ticket, field)
        setattr(ticket, field, value)
    ticket.updated_at = now()
    session.add(ticket)
    return before


async def delete_ticket(*, session: AsyncSession, ticket_id: int) -> bool:
    await session.exec(delete(TicketComment).where(col(TicketComment.ticket_id) == ticket_id))
    result = await session.exec(delete(Ticket).where(col(Ticket.id) == ticket_id))
    return bool(result.rowcount)


async def add_comment(
    *, session: AsyncSession, ticket_id: int, author: str | None, text: str
) -> TicketComment:
    comment = TicketComment(ticket_id=ticket_id, author=author, text=text)
    session.add(comment)
    await session.flush()
    return comment


async def delete_comment(*, session: AsyncSession, comment_id: int) -> bool:
    result = await session.exec(delete(TicketComment).where(col(TicketComment.id) == comment_id))
    return bool(result.rowcount)


async def find_tickets(
    *,
    session: AsyncSession,
    query: str | None = None,
    status: str | None = None,
    assignee: str | None = None,
    limit: int = 20,
) -> list[Ticket]:
    stmt = select(Ticket)
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
