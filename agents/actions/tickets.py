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
from agents.errors import ActionError, LeftInPlace
from storage import receipts, tickets
from storage.models import Ticket, TicketBase
from storage.models import TicketComment as TicketCommentRow

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
                team_id=ctx.workspace,
            )
            return ActionResult(
                output=f"created ticket {_line(ticket)}",
                summary=f"created ticket #{ticket.id} “{ticket.title}”",
                undo={"ticket_id": ticket.id},
                data={"ticket_id": ticket.id},
            )

        return await _once(ctx, effect)

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        ticket_id = undo["ticket_id"]
        async with ctx.db.write() as session:
            removal = await tickets.delete_ticket(session=session, ticket_id=ticket_id, run_id=ctx.run_id)
        if removal.status == "deleted":
            return f"deleted ticket #{ticket_id}"
        if removal.status == "gone":
            return f"ticket #{ticket_id} was already gone"
        if removal.status == "not_ours":
            raise LeftInPlace(f"ticket #{ticket_id} is not the ticket this run created; it was left alone")
        by = _authors(removal.others)
        n = len(removal.others)
        raise LeftInPlace(
            f"ticket #{ticket_id} was left in place: {n} comment{'s' * (n != 1)} added since by {by} "
            "would have gone with it (undo that first, or close the ticket by hand)"
        )


def _authors(comments: list[TicketCommentRow]) -> str:
    runs = sorted({c.run_id for c in comments if c.run_id is not None})
    who = [f"run #{r}" for r in runs]
    if any(c.run_id is None for c in comments):
        who.append("a person")
    return " and ".join(who)


class TicketRef(BaseModel):
    ticket_id: int = Field(ge=1, description="The ticket number")


class UpdateArgs(TicketRef):
    title: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=20000)
    priority: Priority | None = None
    status: Literal["open", "in_progress"] | None = None
    assignee: str | None = Field(default=None, description="Slack user id, or 'none' to unassign")


class _Restorable(Action):
    """Ticket field changes: the undo restores the previous values of the fields this step
    set, unless someone changed them again since (those are left as they are)."""

    idempotent = True

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        return f"ticket:{args.ticket_id}"  # type: ignore[attr-defined]

    async def _change(
        self, session: AsyncSession, ticket_id: int, changes: dict[str, Any], workspace: str
    ) -> dict[str, Any]:
        before = await tickets.update_ticket(
            session=session, ticket_id=ticket_id, changes=changes, team_id=workspace
        )
        if before is None:
            raise ActionError(f"there is no ticket #{ticket_id}")
        return before

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        ticket_id, before = undo["ticket_id"], undo["before"]
        after = undo.get("after")  # None in steps journaled before it was recorded: restore all
        async with ctx.db.write() as session:
            ticket = await tickets.get_ticket(session=session, ticket_id=ticket_id)
            if ticket is None:
                return f"ticket #{ticket_id} no longer exists; nothing to restore"
            mine = {f: v for f, v in before.items() if after is None or getattr(ticket, f) == after.get(f)}
            if mine:
                await tickets.update_ticket(session=session, ticket_id=ticket_id, changes=mine)
        since = sorted(set(before) - set(mine))
        if not mine:
            raise LeftInPlace(
                f"{', '.join(since)} of ticket #{ticket_id} changed again since; left as they are"
            )
        text = f"restored {', '.join(sorted(mine))} of ticket #{ticket_id}"
        if since:
            text += f" ({', '.join(since)} changed again since: left as they are)"
        return text


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
            before = await self._change(session, args.ticket_id, changes, ctx.workspace)
            return ActionResult(
                output=f"updated ticket #{args.ticket_id}: {fields}",
                summary=f"updated ticket #{args.ticket_id} ({fields})",
                undo={"ticket_id": args.ticket_id, "before": before, "after": changes},
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
            before = await self._change(session, args.ticket_id, {"status": "closed"}, ctx.workspace)
            if before["status"] == "closed":
                raise ActionError(f"ticket #{args.ticket_id} is already closed")
            undo: dict[str, Any] = {
                "ticket_id": args.ticket_id,
                "before": before,
                "after": {"status": "closed"},
            }
            if args.resolution:
                comment = await tickets.add_comment(
                    session=session,
                    ticket_id=args.ticket_id,
                    author=ctx.requester.user_id,
                    text=f"Resolution: {args.resolution}",
                    run_id=ctx.run_id,
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
            await _remove_comment(ctx, undo["comment_id"], undo["ticket_id"])
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
            if (
                await tickets.get_ticket(session=session, ticket_id=args.ticket_id, team_id=ctx.workspace)
                is None
            ):
                raise ActionError(f"there is no ticket #{args.ticket_id}")
            comment = await tickets.add_comment(
                session=session,
                ticket_id=args.ticket_id,
                author=ctx.requester.user_id,
                text=args.text,
                run_id=ctx.run_id,
            )
            return ActionResult(
                output=f"commented on ticket #{args.ticket_id}",
                summary=f"commented on ticket #{args.ticket_id}",
                undo={"comment_id": comment.id, "ticket_id": args.ticket_id},
            )

        return await _once(ctx, effect)

    async def compensate(self, ctx: ActionContext, undo: dict[str, Any]) -> str:
        gone = await _remove_comment(ctx, undo["comment_id"], undo["ticket_id"])
        if gone:
            return f"the comment on ticket #{undo['ticket_id']} was already gone"
        return f"removed the comment on ticket #{undo['ticket_id']}"


async def _remove_comment(ctx: ActionContext, comment_id: int, ticket_id: int) -> bool:
    """Remove the comment this run wrote; True when it was already gone. A comment with that id
    that this run did not write on that ticket is left alone (LeftInPlace)."""
    async with ctx.db.write() as session:
        removal = await tickets.delete_comment(
            session=session, comment_id=comment_id, ticket_id=ticket_id, run_id=ctx.run_id
        )
    if removal.status == "not_ours":
        raise LeftInPlace(f"comment {comment_id} is not the comment this run wrote on ticket #{ticket_id}")
    return removal.status == "gone"


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
                team_id=ctx.workspace,
            )
        lines = "\n".join(_line(t) for t in found) or "no tickets match"
        return ActionResult(
            output=lines,
            summary=f"found {len(found)} ticket{'s' if len(found) != 1 else ''}",
            data={"ticket_ids": [t.id for t in found]},
        )


TICKET_ACTIONS: list[type[Action]] = [TicketCreate, TicketUpdate, TicketComment, TicketClose, TicketFind]
