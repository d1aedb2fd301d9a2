"""Run queries: leases, status changes, lookups."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import String, and_, bindparam, case, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import controls, locks, rows, steering
from storage.clock import now
from storage.dialect import dialect_of
from storage.models import ACTIVE_STATUSES, Control, Request, Run, RunStatus, WaitKind


@dataclass(frozen=True)
class Wait:
    """What a run gives its lease up to wait for: a kind, which one, and a sentence for people."""

    kind: WaitKind
    on: str | None
    reason: str
    wake_at: datetime | None = None
    """Claimable again from then on, without anyone requeueing it (a timed retry)."""


class LeaseLost(Exception):
    """This worker no longer owns the run (its lease expired and another worker took it)."""

    def __init__(self, run_id: int, worker_id: str) -> None:
        super().__init__(f"run #{run_id}: worker {worker_id} no longer holds the lease")
        self.run_id = run_id
        self.worker_id = worker_id


async def claim_runs(
    *, session: AsyncSession, worker_id: str, limit: int, lease: timedelta, working: Iterable[int] = ()
) -> list[int]:
    """Take up to `limit` runs: queued ones, running ones whose lease expired, and waiting
    ones whose `wake_at` has come (a model outage's next try).

    Taking a running run (its lease ran out: the worker died, or crashed on it) counts a
    crash against the run: a run that keeps crashing its worker is failed (RunLoop).

    A run is claimable only if no earlier run in its thread is still active (runs of one case
    excepted: they take turns by themselves), so one thread never has two runs working at
    once. On PostgreSQL the candidate rows are locked with FOR UPDATE SKIP LOCKED so
    concurrent workers never take the same run.
    `working`: runs this worker is working right now; never claimed again, even if their
    lease lapsed (the heartbeat renews it).
    """
    if limit <= 0:
        return []
    t = now()
    earlier = aliased(Run)
    blocked = exists().where(
        col(earlier.team_id) == Run.team_id,
        col(earlier.channel_id) == Run.channel_id,
        col(earlier.thread_ts) == Run.thread_ts,
        col(earlier.id) < col(Run.id),
        col(earlier.status).in_(ACTIVE_STATUSES),
        # A run handed work in its parent's thread does not wait for the parent (which waits for it).
        func.coalesce(earlier.case_id, earlier.id) != func.coalesce(Run.case_id, Run.id),
    )
    claimable = or_(
        col(Run.status) == RunStatus.queued,
        and_(col(Run.status) == RunStatus.running, col(Run.lease_expires_at) < t),
        and_(col(Run.status) == RunStatus.waiting, col(Run.wake_at) <= t),
    )
    working = list(working)
    candidates = (
        select(Run.id)
        .where(claimable, ~blocked, col(Run.id).not_in(working))
        .order_by(col(Run.id))
        .limit(limit)
        .with_for_update(skip_locked=True, of=Run)  # ignored by SQLite
    )
    ids = list((await session.exec(candidates)).all())
    if not ids:
        return []
    stmt = (
        update(Run)
        .where(col(Run.id).in_(ids), claimable)
        .values(
            status=RunStatus.running,
            worker_id=worker_id,
            lease_expires_at=t + lease,
            attempts=Run.attempts + 1,
            # Still running with its lease run out: whoever worked it died or crashed on it.
            crashes=Run.crashes + case((col(Run.status) == RunStatus.running, 1), else_=0),
            wait_kind=None,
            wait_on=None,
            wake_at=None,
            started_at=func.coalesce(Run.started_at, t),
            updated_at=t,
        )
        .returning(col(Run.id))
    )
    return sorted((await session.exec(stmt)).scalars().all())


async def renew_lease(*, session: AsyncSession, run_id: int, worker_id: str, lease: timedelta) -> str | None:
    """Extend this worker's lease; raise LeaseLost if another worker has the run.

    Returns who asked for the run to be undone, if anyone (`gate.stop` reads it here
    instead of loading the run: every step takes this path).
    """
    t = now()
    conn = await session.connection()
    params = {"p_run": run_id, "p_worker": worker_id, "p_expires": t + lease, "p_now": t}
    row = (await conn.execute(_RENEW_LEASE, params)).first()
    if row is None:
        raise LeaseLost(run_id, worker_id)
    return row[0]


_RENEW = (
    update(Run)
    .where(
        col(Run.id) == bindparam("p_run"),
        col(Run.worker_id) == bindparam("p_worker"),
        col(Run.status) == RunStatus.running,
    )
    .values(lease_expires_at=bindparam("p_expires"), updated_at=bindparam("p_now"))
)
_RENEW_LEASE = _RENEW.returning(col(Run.undone_by))


@dataclass(frozen=True)
class Boundary:
    """What a run learns as it renews its lease at a step boundary (`renew_at_boundary`)."""

    undone_by: str | None
    """Who asked for the run to be undone, if anyone."""
    paused: bool
    """A pause may stop it (`controls.paused_scope` says which)."""
    unread: int
    """Replies in the thread that steer it and that it has not read yet (storage.steering)."""


async def renew_at_boundary(
    *, session: AsyncSession, run_id: int, worker_id: str, lease: timedelta, agent: str, team_id: str
) -> Boundary:
    """`renew_lease`, and in the same statement whether a pause of `agent` in `team_id` (or of
    everything, or everywhere) is set and how many steering replies are unread: every step
    asks all three, so they are one round trip (scalar subqueries of the UPDATE's RETURNING)."""
    t = now()
    conn = await session.connection()
    params = {
        "p_run": run_id,
        "p_worker": worker_id,
        "p_expires": t + lease,
        "p_now": t,
        "p_agent": agent,
        "p_team": team_id,
    }
    row = (await conn.execute(_RENEW_AT_BOUNDARY, params)).first()
    if row is None:
        raise LeaseLost(run_id, worker_id)
    return Boundary(undone_by=row[0], paused=bool(row[1]), unread=int(row[2] or 0))


_PAUSE_SET = (
    select(Control.scope)
    .where(
        *controls.stopping(
            [controls.ALL, bindparam("p_agent", type_=String)],
            [controls.EVERYWHERE, bindparam("p_team", type_=String)],
        )
    )
    .exists()
)
_UNREAD = (
    select(func.count())
    .where(col(Request.steers_run_id) == bindparam("p_run"), col(Request.steer_seq).is_(None))
    .scalar_subquery()
)
_RENEW_AT_BOUNDARY = _RENEW.returning(col(Run.undone_by), _PAUSE_SET, _UNREAD)


async def renew_leases(
    *, session: AsyncSession, run_ids: list[int], worker_id: str, lease: timedelta
) -> set[int]:
    """Heartbeat for many runs at once; returns the ids still held."""
    if not run_ids:
        return set()
    t = now()
    stmt = (
        update(Run)
        .where(
            col(Run.id).in_(run_ids), col(Run.worker_id) == worker_id, col(Run.status) == RunStatus.running
        )
        .values(lease_expires_at=t + lease)
        .returning(col(Run.id))
    )
    return set((await session.exec(stmt)).scalars().all())


async def release(
    *,
    session: AsyncSession,
    run_id: int,
    worker_id: str,
    status: RunStatus,
    wait: Wait | None = None,
    outcome: str | None = None,
    error: str | None = None,
    unless_steered: bool = False,
) -> bool:
    """Give the run up in a new status (waiting for `wait`, or final). Fenced by the lease.

    A run that ends hands the replies it did not read over to new runs (storage.steering).
    `unless_steered`: do nothing and return False when the run has unread replies (a run that
    would succeed reads them first); True when the run was given up.
    """
    if unless_steered:
        # The row first: a reply being attached (steering.run_to_steer locks it too) is either
        # committed before this looks, or attached after this run has ended (then it cannot be).
        # SQLite has no row locks: its write transaction already excludes the attaching one.
        if dialect_of(session) != "sqlite":
            await session.exec(select(Run.id).where(col(Run.id) == run_id).with_for_update())
        if await steering.unread(session=session, run_id=run_id):
            return False
    t = now()
    final = status not in ACTIVE_STATUSES
    params: dict[str, Any] = {
        "p_run": run_id,
        "p_worker": worker_id,
        "status": status,
        "wait_kind": wait.kind if wait else None,
        "wait_on": wait.on if wait else None,
        "wake_at": wait.wake_at if wait else None,
        "wait_reason": wait.reason[:255] if wait else None,
        "updated_at": t,
    }
    if outcome is not None:
        params["outcome"] = outcome
    if error is not None:
        params["error"] = error
    if final:
        params["finished_at"] = t
    conn = await session.connection()
    result = await conn.execute(_release_statement(outcome is not None, error is not None, final), params)
    if not result.rowcount:
        raise LeaseLost(run_id, worker_id)
    if status not in ACTIVE_STATUSES:
        # unless_steered: no reply is unread (looked at above, the row locked), none to hand over
        await ended(session=session, run_id=run_id, unread=not unless_steered)
    return True


@functools.cache
def _release_statement(outcome: bool, error: bool, final: bool) -> Any:
    """`release`'s UPDATE for the columns it sets: prebuilt (every run ends, most wait)."""
    columns = ["status", "wait_kind", "wait_on", "wake_at", "wait_reason", "updated_at"]
    columns += ["outcome"] * outcome + ["error"] * error + ["finished_at"] * final
    return (
        update(Run)
        .where(col(Run.id) == bindparam("p_run"), col(Run.worker_id) == bindparam("p_worker"))
        .values(worker_id=None, lease_expires_at=None, **{c: bindparam(c) for c in columns})
    )


async def ended(*, session: AsyncSession, run_id: int, unread: bool = True) -> None:
    """A run reached a final status: it frees what it was acting on (the runs waiting for it go
    again), the replies it did not read become runs of their own, and a run that handed it
    its work goes on with the outcome. `unread`: False when this transaction has seen that the
    run has no unread reply (after locking its row)."""
    for resource in await locks.release_all(session=session, run_id=run_id):
        await requeue_waiting(session=session, kind=WaitKind.resource, on=resource)
    if unread:
        await steering.hand_over(session=session, run_id=run_id)
    await requeue_waiting(session=session, kind=WaitKind.handoff, on=str(run_id))


async def add_usage(
    *, session: AsyncSession, run_id: int, prompt_tokens: int, completion_tokens: int
) -> None:
    conn = await session.connection()
    params = {"p_run": run_id, "p_prompt": prompt_tokens, "p_completion": completion_tokens}
    await conn.execute(_ADD_USAGE, params)


_ADD_USAGE = (
    update(Run)
    .where(col(Run.id) == bindparam("p_run"))
    .values(
        prompt_tokens=col(Run.prompt_tokens) + bindparam("p_prompt"),
        completion_tokens=col(Run.completion_tokens) + bindparam("p_completion"),
    )
)


async def set_history(
    *, session: AsyncSession, run_id: int, history: dict[str, Any], planner: str | None = None
) -> None:
    """Keep the thread's history the run was shown (taken once, by the run's lease holder;
    agents.conversation), and `planner` with it when given."""
    conn = await session.connection()  # Core: every run's start writes it
    params = {"p_run": run_id, "history": history, "planner": planner}
    await conn.execute(_SET_HISTORY[planner is not None], params)


_SET_HISTORY = {
    with_planner: update(Run)
    .where(col(Run.id) == bindparam("p_run"))
    .values(history=bindparam("history"), **({"planner": bindparam("planner")} if with_planner else {}))
    for with_planner in (False, True)
}


async def set_planner(*, session: AsyncSession, run_id: int, planner: str) -> None:
    await session.exec(update(Run).where(col(Run.id) == run_id).values(planner=planner))


async def get_run(*, session: AsyncSession, run_id: int) -> Run | None:
    return await session.get(Run, run_id, populate_existing=True)


class RunAndRequest(NamedTuple):
    run: Run
    request: Request
    steered: int
    """How many replies steer the run, read or not (storage.steering.of_run has them)."""


async def run_and_request(
    *, session: AsyncSession, run_id: int, history: bool = True
) -> RunAndRequest | None:
    """The run and its request, read together (detached: one Core read, storage.rows): what
    a worker starting the run and the presenter showing it read first. None if either is gone.
    `history`: False leaves out the thread's history the run keeps (`Run.history`: JSON that
    grows with the thread; reading it raises), which only the run itself reads."""
    conn = await session.connection()
    without = () if history else _NO_HISTORY
    row = (await conn.execute(_RUN_AND_REQUEST[without], {"p_run": run_id})).first()
    if row is None:
        return None
    run = rows.loaded(Run, row, without=without)
    request = rows.loaded(Request, row, offset=len(rows.columns(Run, without=without)))
    return RunAndRequest(run, request, int(row[-1] or 0))


async def run_without_history(*, session: AsyncSession, run_id: int) -> Run | None:
    """The run (detached: one Core read, storage.rows), without its `history` (reading it
    raises): what is shown or traced of a run."""
    conn = await session.connection()
    row = (await conn.execute(_RUN_WITHOUT_HISTORY, {"p_run": run_id})).first()
    return None if row is None else rows.loaded(Run, row, without=_NO_HISTORY)


async def status_of(*, session: AsyncSession, run_id: int) -> str | None:
    """The run's status (None: no such run): one column, read with Core."""
    conn = await session.connection()
    return (await conn.execute(_STATUS_OF, {"p_run": run_id})).scalar()


_STATUS_OF = select(Run.status).where(col(Run.id) == bindparam("p_run"))
_NO_HISTORY = ("history",)
_STEERS = aliased(Request)
_RUN_WITHOUT_HISTORY = rows.select_of(Run, without=_NO_HISTORY).where(col(Run.id) == bindparam("p_run"))
_RUN_AND_REQUEST = {
    without: rows.select_of(
        Run,
        *rows.columns(Request),
        select(func.count()).where(col(_STEERS.steers_run_id) == col(Run.id)).scalar_subquery(),
        without=without,
    )
    .join_from(Run, Request, col(Request.id) == col(Run.request_id))
    .where(col(Run.id) == bindparam("p_run"))
    for without in ((), _NO_HISTORY)
}


async def requeue_waiting(
    *,
    session: AsyncSession,
    kind: WaitKind,
    on: str | None = None,
    agent: str | None = None,
    team_id: str | None = None,
) -> list[int]:
    """Put runs waiting for `kind` (that `on`, of that `agent`, in that workspace, when given)
    back in the queue."""
    if on is not None and agent is None and team_id is None:  # every ending run asks this
        conn = await session.connection()
        found = await conn.execute(_REQUEUE_ON, {"p_kind": kind, "p_on": on, "p_now": now()})
        return [row[0] for row in found if row[0] is not None]
    cond = [col(Run.status) == RunStatus.waiting, col(Run.wait_kind) == kind]
    if on is not None:
        cond.append(col(Run.wait_on) == on)
    if agent is not None:
        cond.append(col(Run.agent) == agent)
    if team_id is not None:
        cond.append(col(Run.team_id) == team_id)
    stmt = update(Run).where(*cond).values(**_QUEUED, updated_at=now()).returning(col(Run.id))
    return list((await session.exec(stmt)).scalars().all())


_QUEUED: dict[str, Any] = {
    "status": RunStatus.queued,
    "wait_kind": None,
    "wait_on": None,
    "wake_at": None,
    "wait_reason": None,
}
_REQUEUE_ON = (
    update(Run)
    .where(
        col(Run.status) == RunStatus.waiting,
        col(Run.wait_kind) == bindparam("p_kind"),
        col(Run.wait_on) == bindparam("p_on"),
    )
    .values(**_QUEUED, updated_at=bindparam("p_now"))
    .returning(col(Run.id))
)


async def record_crash(*, session: AsyncSession, run_id: int, worker_id: str) -> None:
    """This worker crashed working the run: end its lease now, so a worker takes it again at
    once (and counts the crash: see claim_runs) instead of when the lease would run out."""
    await session.exec(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.worker_id) == worker_id, col(Run.status) == RunStatus.running)
        .values(lease_expires_at=now())
    )


async def runs_in_flight(*, session: AsyncSession, agent: str | None = None) -> list[Run]:
    stmt = select(Run).where(col(Run.status).in_(ACTIVE_STATUSES)).order_by(col(Run.id))
    if agent is not None:
        stmt = stmt.where(Run.agent == agent)
    return list((await session.exec(stmt)).all())


PENDING = "pending"  # a message field claimed by a poster that has not saved the ts yet


async def claim_message(*, session: AsyncSession, run_id: int, field: str) -> bool:
    """True for exactly one caller: the one who posts that message (status, outcome, undo)."""
    conn = await session.connection()
    result = await conn.execute(_message_statements(field)[0], {"p_run": run_id, "p_ts": PENDING})
    return bool(result.rowcount)


async def set_message_ts(*, session: AsyncSession, run_id: int, field: str, ts: str | None) -> None:
    """Remember a posted message's ts; None gives the claim back (the post failed)."""
    conn = await session.connection()
    await conn.execute(_message_statements(field)[1], {"p_run": run_id, "p_ts": ts})


def _message_statements(field: str) -> tuple[Any, Any]:
    """(claim, set) of a message field: prebuilt, every run posts two messages."""
    if field not in _MESSAGE_STATEMENTS:
        raise ValueError(f"not a message field: {field}")
    return _MESSAGE_STATEMENTS[field]


_MESSAGE_STATEMENTS = {
    field: (
        update(Run)
        .where(col(Run.id) == bindparam("p_run"), col(getattr(Run, field)).is_(None))
        .values({field: bindparam("p_ts")}),
        update(Run).where(col(Run.id) == bindparam("p_run")).values({field: bindparam("p_ts")}),
    )
    for field in ("status_ts", "outcome_ts", "undo_ts")
}


async def finished_without_outcome(*, session: AsyncSession, limit: int = 50) -> list[int]:
    """Finished runs whose outcome reply (or undo report) has not been delivered yet."""
    # The condition of the partial index ix_runs_undelivered (models.UNDELIVERED).
    undelivered = col(Run.outcome_ts).is_(None) | (
        col(Run.undone_by).is_not(None) & col(Run.undo_ts).is_(None)
    )
    stmt = (
        select(Run.id)
        .where(col(Run.status).not_in(ACTIVE_STATUSES), undelivered)
        .order_by(col(Run.id))
        .limit(limit)
    )
    return [i for i in (await session.exec(stmt)).all() if i is not None]


async def set_thread(*, session: AsyncSession, run_id: int, thread_ts: str) -> None:
    """Move a run (and its request) to the thread that was opened for it (slash commands)."""
    run = await session.get(Run, run_id)
    if run is None:
        return
    run.thread_ts = thread_ts
    session.add(run)
    request = await session.get(Request, run.request_id)
    if request is not None:
        request.thread_ts = thread_ts
        session.add(request)


async def request_undo(*, session: AsyncSession, run_id: int, by_user: str) -> str:
    """Ask for a run to be reversed: "requested", "already" (undone or being undone), "missing".

    A run that is not running is queued again so a worker performs the reversal under
    its lease; a running run sees the request at its next step boundary.
    """
    run = await session.get(Run, run_id, populate_existing=True)
    if run is None:
        return "missing"
    if run.undone_by or run.status == RunStatus.rolled_back:
        return "already"
    run.undone_by = by_user
    if run.status != RunStatus.running:
        for field, value in _QUEUED.items():
            setattr(run, field, value)
    run.updated_at = now()
    session.add(run)
    return "requested"


async def latest_run(
    *, session: AsyncSession, team_id: str, channel_id: str, thread_ts: str | None = None
) -> Run | None:
    """The newest run in a thread, or in the whole channel when thread_ts is None."""
    stmt = select(Run).where(Run.team_id == team_id, col(Run.channel_id) == channel_id)
    if thread_ts is not None:
        stmt = stmt.where(Run.thread_ts == thread_ts)
    return (await session.exec(stmt.order_by(col(Run.id).desc()).limit(1))).first()


async def requeue(*, session: AsyncSession, run_id: int) -> bool:
    """Put one waiting run back in the queue (an approval was decided)."""
    result = await session.exec(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == RunStatus.waiting)
        .values(**_QUEUED, updated_at=now())
    )
    return bool(result.rowcount)


async def run_ahead(*, session: AsyncSession, run: Run) -> int | None:
    """The earlier active run in the same thread that this queued run waits behind."""
    stmt = (
        select(Run.id)
        .where(
            col(Run.team_id) == run.team_id,
            col(Run.channel_id) == run.channel_id,
            col(Run.thread_ts) == run.thread_ts,
            col(Run.id) < (run.id or 0),
            col(Run.status).in_(ACTIVE_STATUSES),
            func.coalesce(Run.case_id, Run.id) != run.case,
        )
        .order_by(col(Run.id))
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def lease_holders(*, session: AsyncSession) -> list[str]:
    """Worker ids that hold a running run's lease."""
    stmt = select(Run.worker_id).where(Run.status == RunStatus.running, col(Run.worker_id).is_not(None))
    return [w for w in set((await session.exec(stmt)).all()) if w]


async def expire_leases(*, session: AsyncSession, worker_ids: list[str]) -> list[int]:
    """End the leases of workers known to be dead, so their runs are claimable now."""
    if not worker_ids:
        return []
    stmt = (
        update(Run)
        .where(col(Run.worker_id).in_(worker_ids), col(Run.status) == RunStatus.running)
        .values(lease_expires_at=now())
        .returning(col(Run.id))
    )
    return list((await session.exec(stmt)).scalars().all())


async def count_active(*, session: AsyncSession) -> dict[str, int]:
    """Runs queued, running and waiting (for /metrics)."""
    stmt = select(Run.status, func.count()).where(col(Run.status).in_(ACTIVE_STATUSES)).group_by(Run.status)
    counts = {str(s): 0 for s in ACTIVE_STATUSES}
    counts.update({s: int(n) for s, n in (await session.exec(stmt)).all()})
    return counts


# Scoped lookups: a control acts only on what belongs where it was asked -------------


async def run_in_scope(
    *, session: AsyncSession, run_id: int, team_id: str, channel_id: str | None, requested_by: str | None
) -> Run | None:
    """The run, if it is in that team and (when given) that channel, and (when given) that
    user asked for it; None otherwise, whether or not it exists elsewhere."""
    stmt = select(Run).where(col(Run.id) == run_id, col(Run.team_id) == team_id)
    if channel_id is not None:
        stmt = stmt.where(col(Run.channel_id) == channel_id)
    if requested_by is not None:
        stmt = stmt.join(Request, col(Request.id) == col(Run.request_id)).where(
            col(Request.user_id) == requested_by
        )
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def run_with_message(
    *, session: AsyncSession, run_id: int, team_id: str, channel_id: str, message_ts: str
) -> Run | None:
    """The run, if `message_ts` in that team's channel is its outcome or status message."""
    stmt = select(Run).where(
        col(Run.id) == run_id,
        col(Run.team_id) == team_id,
        col(Run.channel_id) == channel_id,
        or_(col(Run.outcome_ts) == message_ts, col(Run.status_ts) == message_ts),
    )
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def undoable_runs(
    *, session: AsyncSession, team_id: str, channel_id: str, limit: int = 5
) -> list[tuple[Run, str]]:
    """A channel's newest runs that can still be undone, with what was asked, newest first."""
    stmt = (
        select(Run, Request.text)
        .join(Request, col(Request.id) == col(Run.request_id))
        .where(
            col(Run.team_id) == team_id,
            col(Run.channel_id) == channel_id,
            col(Run.undone_by).is_(None),
            col(Run.status).not_in((RunStatus.rolled_back, RunStatus.cancelled)),
        )
        .order_by(col(Run.id).desc())
        .limit(limit)
    )
    return [(run, text) for run, text in (await session.exec(stmt)).all()]


async def runs_in_flight_in_scope(
    *, session: AsyncSession, team_id: str, channel_id: str | None, requested_by: str | None
) -> list[Run]:
    """The active runs in that team and (when given) channel, asked for by (when given) that user."""
    stmt = select(Run).where(col(Run.status).in_(ACTIVE_STATUSES))
    if requested_by is not None:
        stmt = stmt.join(Request, col(Request.id) == col(Run.request_id)).where(
            col(Request.user_id) == requested_by
        )
    # Team and channel are picked here, not in SQL: active runs are few, a channel's runs are
    # many, and on (team_id, channel_id) the planner would read every run the channel ever had.
    active = (await session.exec(stmt.order_by(col(Run.id)))).all()
    return [r for r in active if r.team_id == team_id and channel_id in (None, r.channel_id)]
