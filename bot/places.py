"""Where a control was asked, and what may be seen and acted on from there.

A control acts only where it is asked: in a channel, on that channel's runs and approvals;
in a DM (and in the Home tab), on the asker's own runs; from a button, on the run or
approval of the very message clicked. These are the only scopes; `bot.controls` checks
every run or approval named by number against one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from storage import approvals, runs
from storage.engine import Database
from storage.models import Approval, Run

POSTING_CHECKS, POSTING_INTERVAL = 20, 0.05  # at most 1 s for a clicked message's ts to be saved


@dataclass(frozen=True)
class Scope:
    """What a person may see and act on from somewhere: runs in `team_id`, in `channel_id`
    when it is set, asked for by `requested_by` when it is set."""

    team_id: str
    channel_id: str | None
    requested_by: str | None

    @classmethod
    def own_runs(cls, team_id: str, user_id: str) -> Scope:
        """A DM, or the Home tab: the user's own runs, wherever they were asked for."""
        return cls(team_id, None, user_id)


@dataclass(frozen=True)
class Where:
    """Where a command was given: the workspace, the channel and (maybe) the thread; for a
    button, the message clicked (and whether only the clicker sees it)."""

    team_id: str
    channel_id: str
    thread_ts: str | None
    message_ts: str | None = None
    ephemeral: bool = False

    @property
    def dm(self) -> bool:
        """A direct message with the bot (Slack's DM channel ids start with D)."""
        return self.channel_id.startswith("D")

    def scope(self, user_id: str) -> Scope:
        if self.dm:
            return Scope.own_runs(self.team_id, user_id)
        return Scope(self.team_id, self.channel_id, None)

    @property
    def clicked(self) -> str | None:
        """The message whose button was clicked, when the control must stay on that message
        (an ephemeral message, such as the undo list, belongs to no run: its channel counts)."""
        return None if self.ephemeral else self.message_ts


async def run_here(session: AsyncSession, run_id: int, user_id: str, where: Where) -> Run | None:
    """The run, if it may be acted on from `where`: a button's own message's run; otherwise a
    run of this channel (in a DM: one this user asked for)."""
    if where.clicked is not None:
        return await runs.run_with_message(
            session=session,
            run_id=run_id,
            team_id=where.team_id,
            channel_id=where.channel_id,
            message_ts=where.clicked,
        )
    scope = where.scope(user_id)
    return await runs.run_in_scope(
        session=session,
        run_id=run_id,
        team_id=scope.team_id,
        channel_id=scope.channel_id,
        requested_by=scope.requested_by,
    )


async def approval_here(session: AsyncSession, approval_id: int, where: Where) -> Approval | None:
    """The approval, if the click was on its own Approve/Deny message (an approval has no other
    place to be decided from)."""
    if not where.message_ts:
        return None
    return await approvals.approval_with_message(
        session=session,
        approval_id=approval_id,
        team_id=where.team_id,
        channel_id=where.channel_id,
        message_ts=where.message_ts,
    )


def why_not_here(where: Where) -> str:
    """Why a run named by number is not acted on from `where` (for the audit log)."""
    if where.clicked is not None:
        return f"not the run of message {where.clicked} in {where.channel_id}"
    if where.dm:
        return f"not a run this user asked for (in team {where.team_id})"
    return f"not a run of {where.channel_id} (team {where.team_id})"


async def until_posted(db: Database, posting: Callable[[AsyncSession], Awaitable[bool]]) -> None:
    """Wait, briefly, while the message a click names is still being posted: Slack shows a
    message (and its buttons) before its poster has saved the ts, so a quick click would not
    match its own message. Call it outside a write transaction: the poster needs one."""
    for _ in range(POSTING_CHECKS):
        async with db.read() as session:
            if not await posting(session):
                return
        await asyncio.sleep(POSTING_INTERVAL)


async def run_posting(session: AsyncSession, run_id: int) -> bool:
    run = await runs.get_run(session=session, run_id=run_id)
    return run is not None and runs.PENDING in (run.outcome_ts, run.status_ts)


async def approval_posting(session: AsyncSession, approval_id: int) -> bool:
    approval = await approvals.get_approval(session=session, approval_id=approval_id)
    return approval is not None and approval.message_ts == runs.PENDING
