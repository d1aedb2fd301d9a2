"""Approvals: an action waits for a human's Approve or Deny."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import Approval, ApprovalDecision, ApprovalStatus, Request, Run

BUDGET = "budget:"
"""The key (in place of a tool call's) of a run's n-th ask for more tokens: `budget:<n>`."""


def budget_key(grant: int) -> str:
    """The approval key of a run's `grant`-th ask for more tokens (agents.budget)."""
    return f"{BUDGET}{grant}"


def is_budget(approval: Approval) -> bool:
    """An ask for more tokens (Continue / Stop), not an action's approval."""
    return approval.tool_call_id.startswith(BUDGET)


async def find_approval(*, session: AsyncSession, run_id: int, tool_call_id: str) -> Approval | None:
    stmt = select(Approval).where(Approval.run_id == run_id, col(Approval.tool_call_id) == tool_call_id)
    return (await session.exec(stmt)).first()


async def request_approval(
    *,
    session: AsyncSession,
    run_id: int,
    tool_call_id: str,
    action: str,
    arguments: dict[str, Any],
    reason: str,
    channel_id: str,
    expires_at: datetime,
    needed: int = 1,
    approvers: list[str] | None = None,
    self_approval: bool = True,
) -> Approval:
    """The pending approval for this call (created once, however often it is asked for), under
    the approval policy given (kept with it: the decision follows what its message said)."""
    await insert_ignore(
        session,
        Approval,
        {
            "run_id": run_id,
            "tool_call_id": tool_call_id,
            "action": action,
            "arguments": arguments,
            "reason": reason,
            "status": ApprovalStatus.pending,
            "requested_at": now(),
            "expires_at": expires_at,
            "channel_id": channel_id,
            "needed": needed,
            "approvers": approvers or None,
            "self_approval": self_approval,
        },
    )
    approval = await find_approval(session=session, run_id=run_id, tool_call_id=tool_call_id)
    assert approval is not None
    return approval


async def get_approval(*, session: AsyncSession, approval_id: int) -> Approval | None:
    return await session.get(Approval, approval_id, populate_existing=True)


async def decide(*, session: AsyncSession, approval_id: int, status: ApprovalStatus, by_user: str) -> bool:
    """Approve or deny a pending approval; False if it was already decided or expired."""
    result = await session.exec(
        update(Approval)
        .where(col(Approval.id) == approval_id, col(Approval.status) == ApprovalStatus.pending)
        .values(status=status, decided_by=by_user, decided_at=now())
    )
    return bool(result.rowcount)


async def lock_approval(*, session: AsyncSession, approval_id: int) -> Approval | None:
    """The approval, its row locked until the transaction ends (PostgreSQL; SQLite's write lock
    does the same): two people deciding at once are counted one after the other."""
    stmt = select(Approval).where(col(Approval.id) == approval_id).with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def record_decision(*, session: AsyncSession, approval_id: int, user_id: str, decision: str) -> bool:
    """One person's Approve or Deny; False when this person already decided on it."""
    inserted = await insert_ignore(
        session,
        ApprovalDecision,
        {"approval_id": approval_id, "user_id": user_id, "decision": decision, "at": now()},
    )
    return inserted is not None


async def decisions(*, session: AsyncSession, approval_id: int) -> list[ApprovalDecision]:
    """Who decided what on an approval, in the order they did."""
    stmt = select(ApprovalDecision).where(col(ApprovalDecision.approval_id) == approval_id)
    return sorted((await session.exec(stmt)).all(), key=lambda d: d.at)


async def budget_approvals(*, session: AsyncSession, run_id: int) -> list[Approval]:
    """A run's asks for more tokens, oldest first (agents.budget)."""
    stmt = (
        select(Approval)
        .where(col(Approval.run_id) == run_id, col(Approval.tool_call_id).startswith(BUDGET))
        .order_by(col(Approval.id))
    )
    return list((await session.exec(stmt.execution_options(populate_existing=True))).all())


async def withdraw(*, session: AsyncSession, run_id: int, by_user: str) -> list[int]:
    """Withdraw a run's pending approvals (the run is being undone); returns their ids."""
    stmt = (
        update(Approval)
        .where(col(Approval.run_id) == run_id, col(Approval.status) == ApprovalStatus.pending)
        .values(status=ApprovalStatus.withdrawn, decided_by=by_user, decided_at=now())
        .returning(col(Approval.id))
    )
    return [i for i in (await session.exec(stmt)).scalars().all() if i is not None]


async def expire_due(*, session: AsyncSession) -> list[Approval]:
    """Mark pending approvals past their deadline as expired; returns them."""
    t = now()
    due = list(
        (
            await session.exec(
                select(Approval).where(
                    col(Approval.status) == ApprovalStatus.pending, col(Approval.expires_at) <= t
                )
            )
        ).all()
    )
    for approval in due:
        approval.status = ApprovalStatus.expired
        approval.decided_at = t
        approval.decided_by = "system"
        session.add(approval)
    return due


async def pending_approvals(*, session: AsyncSession) -> list[Approval]:
    stmt = select(Approval).where(Approval.status == ApprovalStatus.pending).order_by(col(Approval.id))
    return list((await session.exec(stmt)).all())


async def unposted_approvals(*, session: AsyncSession, limit: int = 50) -> list[int]:
    """Pending approvals whose Approve/Deny message could not be posted yet."""
    stmt = (
        select(Approval.id)
        .where(Approval.status == ApprovalStatus.pending, col(Approval.message_ts).is_(None))
        .order_by(col(Approval.id))
        .limit(limit)
    )
    return [i for i in (await session.exec(stmt)).all() if i is not None]


async def set_approval_message(*, session: AsyncSession, approval_id: int, ts: str | None) -> None:
    await session.exec(update(Approval).where(col(Approval.id) == approval_id).values(message_ts=ts))


async def claim_approval_message(*, session: AsyncSession, approval_id: int) -> bool:
    """True for exactly one poster of the Approve/Deny message."""
    result = await session.exec(
        update(Approval)
        .where(col(Approval.id) == approval_id, col(Approval.message_ts).is_(None))
        .values(message_ts="pending")
    )
    return bool(result.rowcount)


async def approval_with_message(
    *, session: AsyncSession, approval_id: int, team_id: str, channel_id: str, message_ts: str
) -> Approval | None:
    """The approval, if `message_ts` in that team's channel is its Approve/Deny message."""
    stmt = (
        select(Approval)
        .join(Run, col(Run.id) == col(Approval.run_id))
        .where(
            col(Approval.id) == approval_id,
            col(Approval.channel_id) == channel_id,
            col(Approval.message_ts) == message_ts,
            col(Run.team_id) == team_id,
        )
    )
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def pending_approvals_in_scope(
    *, session: AsyncSession, team_id: str, channel_id: str | None, requested_by: str | None
) -> list[Approval]:
    """Pending approvals of runs in that team and (when given) channel, asked for by (when
    given) that user."""
    stmt = (
        select(Approval)
        .join(Run, col(Run.id) == col(Approval.run_id))
        .where(col(Approval.status) == ApprovalStatus.pending, col(Run.team_id) == team_id)
    )
    if channel_id is not None:
        stmt = stmt.where(col(Approval.channel_id) == channel_id)
    if requested_by is not None:
        stmt = stmt.join(Request, col(Request.id) == col(Run.request_id)).where(
            col(Request.user_id) == requested_by
        )
    return list((await session.exec(stmt.order_by(col(Approval.id)))).all())
