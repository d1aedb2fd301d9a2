"""Cases: the runs started from one request, across agents.

A run hands work to another agent (a handoff): the new run belongs to the same case, knows its
parent and the parent's call that started it (one run per call, however often the call is
repeated). The case's first run names the case. Undo takes the whole case: every run stops at
its next step, and the first run reverses every step of every run, newest first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import rows
from storage import runs as runs_
from storage.clock import now
from storage.dialect import insert_ignore
from storage.models import ACTIVE_STATUSES, FINAL_STATUSES, Request, Run, RunStatus, Step, StepKind, WaitKind


def _in_case(case_id: int) -> object:
    return or_(col(Run.id) == case_id, col(Run.case_id) == case_id)


async def case_runs(*, session: AsyncSession, case_id: int) -> list[Run]:
    """Every run of the case, in the order they were started."""
    stmt = select(Run).where(_in_case(case_id)).order_by(col(Run.id))  # type: ignore[arg-type]
    return list((await session.exec(stmt)).all())


async def ancestors(*, session: AsyncSession, run: Run) -> list[Run]:
    """The runs that handed work down to `run`, nearest first."""
    chain: list[Run] = []
    parent_id = run.parent_id
    while parent_id is not None:
        parent = await session.get(Run, parent_id)
        if parent is None:
            break
        chain.append(parent)
        parent_id = parent.parent_id
    return chain


def handoff_ts(parent_id: int, key: str) -> str:
    """The stand-in message ts of a handoff's request (it has no message of its own): unique per
    call, and as short as a ts column takes."""
    return "handoff:" + hashlib.sha256(f"{parent_id}:{key}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Handoff:
    """Where and how a handoff's run starts."""

    agent: str
    brief: str
    channel_id: str
    thread_ts: str | None
    """The thread it reports in; None: a new thread of its own in `channel_id`."""
    requester_role: str
    approval: bool
    """It waits for a team member's Approve before it acts (a customer's case)."""


async def handoff_of(*, session: AsyncSession, parent_id: int, key: str) -> Run | None:
    """The run that the handoff call `key` of run `parent_id` started, if it did (detached:
    a Core read, storage.rows)."""
    conn = await session.connection()
    row = (await conn.execute(_HANDOFF_OF, {"p_parent": parent_id, "p_key": key})).first()
    return None if row is None else rows.loaded(Run, row)


_HANDOFF_OF = rows.select_of(Run).where(
    col(Run.parent_id) == bindparam("p_parent"), col(Run.handoff_key) == bindparam("p_key")
)


async def start_handoff(
    *, session: AsyncSession, parent: Run, key: str, handoff: Handoff
) -> tuple[Run, bool]:
    """The run a handoff call started: created the first time (with its request, the brief),
    found again every time after. Returns (run, created)."""
    assert parent.id is not None
    found = await handoff_of(session=session, parent_id=parent.id, key=key)
    if found is not None:
        return found, False
    request_of_parent = await session.get(Request, parent.request_id)
    assert request_of_parent is not None
    ts = handoff_ts(parent.id, key)
    thread_ts = handoff.thread_ts or ts
    t = now()
    request_id = await insert_ignore(
        session,
        Request,
        {
            "source": request_of_parent.source,
            "kind": "handoff",
            "team_id": parent.team_id,
            "channel_id": handoff.channel_id,
            "user_id": request_of_parent.user_id,
            "ts": ts,
            "thread_ts": thread_ts,
            "text": handoff.brief,
            "agent": handoff.agent,
            "requester_role": handoff.requester_role,
            "created_at": t,
        },
        returning=Request.id,
    )
    assert request_id is not None, "a handoff's request exists without its run"
    run = rows.unsaved(
        Run,
        dict(
            request_id=request_id,
            agent=handoff.agent,
            case_id=parent.case,
            parent_id=parent.id,
            handoff_key=key,
            status=RunStatus.waiting if handoff.approval else RunStatus.queued,
            wait_kind=WaitKind.approval if handoff.approval else None,
            wait_on="handoff" if handoff.approval else None,
            wait_reason="a team member approves a customer's case before it starts"
            if handoff.approval
            else None,
            team_id=parent.team_id,
            channel_id=handoff.channel_id,
            thread_ts=thread_ts,
            created_at=t,
        ),
    )
    conn = await session.connection()  # Core: no unit of work for one row
    run.id = (await conn.execute(_INSERT_RUN, {c: run.__dict__[c] for c in _RUN_INSERTED})).scalar_one()
    return run, True


_RUN_INSERTED = [c.key for c in rows.columns(Run) if c.key != "id"]
_INSERT_RUN = insert(Run).values({c: bindparam(c) for c in _RUN_INSERTED}).returning(col(Run.id))


async def lock_run(*, session: AsyncSession, run_id: int) -> Run | None:
    """The run, its row locked until the transaction ends (PostgreSQL; SQLite's writers take
    turns anyway): a parent deciding to wait and its child ending cannot cross."""
    conn = await session.connection()  # Core (detached, storage.rows): a handoff locks two runs
    row = (await conn.execute(_LOCK_RUN, {"p_run": run_id})).first()
    return None if row is None else rows.loaded(Run, row)


_LOCK_RUN = rows.select_of(Run).where(col(Run.id) == bindparam("p_run")).with_for_update()


async def request_case_undo(*, session: AsyncSession, run_id: int, by_user: str) -> tuple[str, Run | None]:
    """Ask for the whole case of `run_id` to be undone: ("requested" | "already" | "missing", its
    first run). Every run of the case is marked; the first run is queued to do the reversal;
    the others that are not running wait for it (a running one stops at its next step)."""
    run = await session.get(Run, run_id, populate_existing=True)
    if run is None:
        return "missing", None
    root = await session.get(Run, run.case, populate_existing=True)
    if root is None:
        return "missing", None
    if root.undone_by or (root.status == RunStatus.rolled_back and not await _active_rest(session, root)):
        return "already", root
    t = now()
    for member in await case_runs(session=session, case_id=root.case):
        if member.undone_by:
            continue
        member.undone_by = by_user
        member.updated_at = t
        if member.status != RunStatus.running and member.id == root.id:
            member.status, member.wake_at = RunStatus.queued, None
            member.wait_kind = member.wait_on = member.wait_reason = None
        elif member.status in (RunStatus.queued, RunStatus.waiting):
            member.status, member.wake_at = RunStatus.waiting, None
            member.wait_kind, member.wait_on = WaitKind.case, str(root.id)
            member.wait_reason = f"case #{root.id} is being undone"
        session.add(member)
    return "requested", root


async def _active_rest(session: AsyncSession, root: Run) -> bool:
    return any(r.status in ACTIVE_STATUSES for r in await case_runs(session=session, case_id=root.case))


async def steps_of_runs(*, session: AsyncSession, run_ids: list[int]) -> list[Step]:
    """The action and compensation steps of these runs, oldest first (step ids are never reused,
    so their order is the order they were written in)."""
    stmt = (
        select(Step)
        .where(col(Step.run_id).in_(run_ids), col(Step.kind).in_([StepKind.action, StepKind.compensation]))
        .order_by(col(Step.id))
    )
    return list((await session.exec(stmt)).all())


async def subtree(*, session: AsyncSession, run: Run) -> list[Run]:
    """The run and every run it handed work to, and theirs, in the order they were started."""
    members = await case_runs(session=session, case_id=run.case)
    inside = {run.id}
    for member in members:  # parents are always older than their children
        if member.parent_id in inside:
            inside.add(member.id)
    return [m for m in members if m.id in inside]


async def end_undone(
    *, session: AsyncSession, runs: list[Run], reports: dict[int, str], except_run: int
) -> list[int]:
    """The case's undo is done: every run but `except_run` (the one that did it, released
    on its own) ends as rolled back, with its part of the report. Returns their ids."""
    done = []
    t = now()
    for run in runs:
        if run.id == except_run or run.id is None:
            continue
        values = {
            "status": RunStatus.rolled_back,
            "error": reports.get(run.id, ""),
            "wait_kind": None,
            "wait_on": None,
            "wait_reason": None,
            "wake_at": None,
            "worker_id": None,
            "lease_expires_at": None,
            "updated_at": t,
        }
        if run.status not in FINAL_STATUSES:
            values["finished_at"] = t
        await session.exec(
            update(Run).where(col(Run.id) == run.id, col(Run.status) != RunStatus.running).values(**values)
        )
        await runs_.ended(session=session, run_id=run.id)
        done.append(run.id)
    return done
