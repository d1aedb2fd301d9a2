"""Built-in ticket actions, stored in the database: create, update, comment, close, find.

Each change is made together with its receipt in one transaction, so the actions
are idempotent by their key: a run resumed after a crash repeats none of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from agents.actions.base import Action, ActionContext, ActionResult
from agents.errors import ActionError
from storage import receipts, tickets
from storage.models import Ticket, TicketBase

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "in_progress", "closed"]


async def _once(
    ctx: ActionContext, effect: Callable[[AsyncSession], Awaitable[ActionResult]]
) -> ActionResult:
    """Make the effect and its receipt in one transaction; a repeat returns the receipt."""
    async with ctx.db.write() as session:
        saved = await receipts.get_receipt(session=session, key=ctx.idempotency_key)
        if saved is not None:
            return ActionResult(**saved)
        result = await effect(session)
        await receipts.put_receipt(session=session, key=ctx.idempotency_key, result=asdict(result))
        return result


def _line(t: Ticket) -> str:
    who = f", assigned to {t.assignee}" if t.assignee else ""
    return f"#{t.id} [{t.status}, {t.priority}{who}] {t.title}"


class CreateArgs(BaseModel):
    title: str = Field(min_length=1, max_length=255, description="Short summary of the ticket")
    description: str = Field(default="", max_length=20000, description="Details")
    priority: Priority = "normal"
    assignee: str | None = Field(default=None, description="Slack user id of the assignee, e.g. U012AB3CD")


class TicketCreate(Action):
    name = "ticket_create"
    description = "Create a ticket in the team's tracker."
    args_model = CreateArgs
    customers = True
    idempotent = True

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        return None  # a new ticket touches nothing that exists

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, CreateArgs)

        async def effect(session: AsyncSession) -> ActionResult:
            ticket = await tickets.create_ticket(
                session=session,
                ticket=TicketBase(**args.model_dump(), reporter=ctx.requester.user_id),
                run_id=ctx.run_id,
            )
            return ActionResult(
                output=f"created ticket {_line(ticket)}",
                summary=f"created ticket #{ticket.id} “{ticket.title}”",
                undo={"ticket_id": ticket.id},
                data={"ticket_id": ticket.id},
            )

        return await _once(ctx, effect)

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        async with ctx.db.write() as session:
            existed = await tickets.delete_ticket(session=session, ticket_id=undo["ticket_id"])
        return (
            f"deleted ticket #{undo['ticket_id']}"
            if existed
            else f"ticket #{undo['ticket_id']} was already gone"
        )


class TicketRef(BaseModel):
    ticket_id: int = Field(ge=1, description="The ticket number")


class UpdateArgs(TicketRef):
    title: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=20000)
    priority: Priority | None = None
    status: Literal["open", "in_progress"] | None = None
    assignee: str | None = Field(default=None, description="Slack user id, or 'none' to unassign")


class _Restorable(Action):
    """Ticket field changes: the undo restores the previous values."""

    idempotent = True

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        return f"ticket:{args.ticket_id}"  # type: ignore[attr-defined]

    async def _change(self, session: AsyncSession, ticket_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        before = await tickets.update_ticket(session=session, ticket_id=ticket_id, changes=changes)
        if before is None:
            raise ActionError(f"there is no ticket #{ticket_id}")
        return before

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        async with ctx.db.write() as session:
            restored = await tickets.update_ticket(
                session=session, ticket_id=undo["ticket_id"], changes=undo["before"]
            )
        if restored is None:
            return f"ticket #{undo['ticket_id']} no longer exists; nothing to restore"
        fields = ", ".join(sorted(undo["before"]))
        return f"restored {fields} of ticket #{undo['ticket_id']}"


class TicketUpdate(_Restorable):
    name = "ticket_update"
    description = "Change fields of an existing ticket (title, description, priority, status, assignee)."
    args_model = UpdateArgs

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, UpdateArgs)
        changes = args.model_dump(exclude={"ticket_id"}, exclude_none=True)
        if changes.get("assignee") == "none":
            changes["assignee"] = None
        if not changes:
            raise ActionError("nothing to change: give at least one field")
        fields = ", ".join(f"{k} → {v}" for k, v in changes.items())

        async def effect(session: AsyncSession) -> ActionResult:
            before = await self._change(session, args.ticket_id, changes)
            return ActionResult(
                output=f"updated ticket #{args.ticket_id}: {fields}",
                summary=f"updated ticket #{args.ticket_id} ({fields})",
                undo={"ticket_id": args.ticket_id, "before": before},
            )

        return await _once(ctx, effect)


class CloseArgs(TicketRef):
    resolution: str = Field(default="", max_length=2000, description="Why it is closed")


class TicketClose(_Restorable):
    name = "ticket_close"
    description = "Close a ticket, with an optional resolution note."
    args_model = CloseArgs

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, CloseArgs)

        async def effect(session: AsyncSession) -> ActionResult:
            before = await self._change(session, args.ticket_id, {"status": "closed"})
            if before["status"] == "closed":
                raise ActionError(f"ticket #{args.ticket_id} is already closed")
            undo: dict[str, Any] = {"ticket_id": args.ticket_id, "before": before}
            if args.resolution:
                comment = await tickets.add_comment(
                    session=session,
                    ticket_id=args.ticket_id,
                    author=ctx.requester.user_id,
                    text=f"Resolution: {args.resolution}",
                )
                undo["comment_id"] = comment.id
            return ActionResult(
                output=f"closed ticket #{args.ticket_id}",
                summary=f"closed ticket #{args.ticket_id}",
                undo=undo,
            )

        return await _once(ctx, effect)

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        if undo.get("comment_id"):
            async with ctx.db.write() as session:
                await tickets.delete_comment(session=session, comment_id=undo["comment_id"])
        return await super().compensate(ctx, undo)


class CommentArgs(TicketRef):
    text: str = Field(min_length=1, max_length=20000)


class TicketComment(Action):
    name = "ticket_comment"
    description = "Add a comment to a ticket."
    args_model = CommentArgs
    idempotent = True

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        return f"ticket:{args.ticket_id}"  # type: ignore[attr-defined]

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, CommentArgs)

        async def effect(session: AsyncSession) -> ActionResult:
            if await tickets.get_ticket(session=session, ticket_id=args.ticket_id) is None:
                raise ActionError(f"there is no ticket #{args.ticket_id}")
            comment = await tickets.add_comment(
                session=session, ticket_id=args.ticket_id, author=ctx.requester.user_id, text=args.text
            )
            return ActionResult(
                output=f"commented on ticket #{args.ticket_id}",
                summary=f"commented on ticket #{args.ticket_id}",
                undo={"comment_id": comment.id, "ticket_id": args.ticket_id},
            )

        return await _once(ctx, effect)

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        async with ctx.db.write() as session:
            await tickets.delete_comment(session=session, comment_id=undo["comment_id"])
        return f"removed the comment on ticket #{undo['ticket_id']}"


class FindArgs(BaseModel):
    query: str | None = Field(default=None, description="Words to look for in title or description")
    status: Status | None = None
    assignee: str | None = Field(default=None, description="Slack user id")
    limit: int = Field(default=10, ge=1, le=50)


class TicketFind(Action):
    name = "ticket_find"
    description = "Search tickets by words, status or assignee."
    args_model = FindArgs
    read_only = True
    idempotent = True

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, FindArgs)
        async with ctx.db.read() as session:
            found = await tickets.find_tickets(
                session=session,
                query=args.query,
                status=args.status,
                assignee=args.assignee,
                limit=args.limit,
            )
        lines = "\n".join(_line(t) for t in found) or "no tickets match"
        return ActionResult(
            output=lines,
            summary=f"found {len(found)} ticket{'s' if len(found) != 1 else ''}",
            data={"ticket_ids": [t.id for t in found]},
        )


TICKET_ACTIONS: list[type[Action]] = [TicketCreate, TicketUpdate, TicketComment, TicketClose, TicketFind]
