"""Step boundaries: where a run learns it must stop (paused, or undo requested)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel.ext.asyncio.session import AsyncSession

from storage import controls, runs
from storage.models import RunStatus, WaitKind
from storage.runs import Wait

if TYPE_CHECKING:  # agents.budget builds on this module's exceptions
    from agents.budget import Budget


class Interrupted(Exception):
    """The run must stop at this step boundary."""


class Paused(Interrupted):
    def __init__(self, scope: str) -> None:
        super().__init__(f"paused ({'all agents' if scope == '*' else scope})")
        self.scope = scope


class UndoRequested(Interrupted):
    def __init__(self, by_user: str) -> None:
        super().__init__(f"undo requested by {by_user}")
        self.by_user = by_user


class AwaitingApproval(Interrupted):
    def __init__(self, approval_id: int, action: str) -> None:
        super().__init__(f"approval: {action} waits for a human's Approve or Deny")
        self.approval_id = approval_id
        self.action = action


class AwaitingHandoff(Interrupted):
    """The run handed work to another agent and waits for that run's outcome."""

    def __init__(self, child_id: int, agent: str, approval_id: int | None = None) -> None:
        super().__init__(f"waiting for {agent}: run #{child_id}")
        self.child_id = child_id
        self.agent = agent
        self.approval_id = approval_id
        """The team member's approval the new run waits for first (a customer's case)."""


class ResourceBusy(Interrupted):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class Deadlock(Interrupted):
    """Two runs each wait for what the other holds: this one fails (and frees its locks)."""

    def __init__(self, resource: str, holder: int) -> None:
        super().__init__(f"{resource}: run #{holder} waits for what this run holds (deadlock)")
        self.resource = resource
        self.holder = holder


class Denied(Interrupted):
    """A human denied the action (or nobody decided in time): the run fails."""

    def __init__(self, action: str, why: str) -> None:
        super().__init__(f"{action} was not approved: {why}")
        self.action = action


async def stop(
    *,
    session: AsyncSession,
    run_id: int,
    agent: str,
    worker_id: str,
    lease: timedelta,
    budget: Budget | None = None,
    team_id: str = "",
) -> Interrupted | None:
    """Why the run may not take its next step, or None.

    Fenced: renews this worker's lease (raises LeaseLost if another worker has the run),
    so a step journaled after it in the same transaction may use `journal.add_step`.
    Called inside the transaction that journals the step's intent, so a pause or an undo
    recorded before that transaction stops the step. A paused run starts waiting in
    this same transaction: a resume committed just after it always finds the run
    waiting, so nothing can leave it stuck. (An undo keeps the lease: this worker
    reverses the run next.)

    `budget`: the run's token budget and its agent's daily cap (agents.budget), checked last;
    None for an agent with neither, so such a step does no more work than before.
    `team_id`: the run's workspace, whose pauses stop it (and those of every workspace).
    """
    stopped, _ = await boundary(
        session=session,
        run_id=run_id,
        agent=agent,
        worker_id=worker_id,
        lease=lease,
        budget=budget,
        team_id=team_id,
    )
    return stopped


async def boundary(
    *,
    session: AsyncSession,
    run_id: int,
    agent: str,
    worker_id: str,
    lease: timedelta,
    budget: Budget | None = None,
    team_id: str = "",
) -> tuple[Interrupted | None, int]:
    """`stop`, and how many replies steering the run it has not read yet (storage.steering):
    the lease, the undo, the pause and the replies are one statement (`runs.renew_at_boundary`)."""
    seen = await runs.renew_at_boundary(
        session=session, run_id=run_id, worker_id=worker_id, lease=lease, agent=agent, team_id=team_id
    )
    if seen.undone_by:
        return UndoRequested(seen.undone_by), seen.unread
    pause = None
    if seen.paused:  # which pause: everything's first, then the agent's (storage.controls)
        pause = await controls.paused_scope(session=session, agent=agent, team_id=team_id)
    if pause is not None:
        paused = Paused(pause.scope)
        await wait(
            session=session,
            run_id=run_id,
            worker_id=worker_id,
            wait=Wait(WaitKind.paused, pause.scope, str(paused)),
        )
        return paused, seen.unread
    if budget is not None:
        return await budget.stop(session=session, run_id=run_id, worker_id=worker_id), seen.unread
    return None, seen.unread


async def wait(*, session: AsyncSession, run_id: int, worker_id: str, wait: Wait) -> None:
    """Give the run up as waiting (paused, approval, resource...), fenced by the lease."""
    await runs.release(
        session=session, run_id=run_id, worker_id=worker_id, status=RunStatus.waiting, wait=wait
    )
