"""A workspace that removed the app: its runs stop where they are."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import locks, runs
from storage.clock import now
from storage.models import ACTIVE_STATUSES, Approval, ApprovalStatus, Run, RunStatus, WaitKind


async def cancel_runs(*, session: AsyncSession, team_id: str, reason: str) -> list[int]:
    """Cancel every queued, waiting and running run of the workspace; returns their ids.

    A running run loses its lease with this: its worker stops at the next step boundary (the
    step in progress finishes and is journaled; the next one finds no lease to renew). Their
    pending approvals are withdrawn, and the resources they held are freed for the runs (of any
    workspace) that wait for them. Replies they had not read stay unread: no run starts again.
    Nothing is reversed: the app can no longer act in that workspace.
    """
    t = now()
    stmt = (
        update(Run)
        .where(col(Run.team_id) == team_id, col(Run.status).in_(ACTIVE_STATUSES))
        .values(
            status=RunStatus.cancelled,
            error=reason,
            worker_id=None,
            lease_expires_at=None,
            wait_kind=None,
            wait_on=None,
            wake_at=None,
            wait_reason=None,
            finished_at=t,
            updated_at=t,
        )
        .returning(col(Run.id))
    )
    cancelled = sorted((await session.exec(stmt)).scalars().all())
    if cancelled:
        await session.exec(
            update(Approval)
            .where(col(Approval.run_id).in_(cancelled), col(Approval.status) == ApprovalStatus.pending)
            .values(status=ApprovalStatus.withdrawn, decided_by="system", decided_at=t)
        )
    for run_id in cancelled:
        for resource in await locks.release_all(session=session, run_id=run_id):
            await runs.requeue_waiting(session=session, kind=WaitKind.resource, on=resource)
    return cancelled
