from __future__ import annotations

from datetime import timedelta

import pytest
from storage_rows import Clock, new_run

from agents import gate
from storage import controls, journal, runs
from storage.engine import Database
from storage.models import RunStatus, StepKind, StepStatus
from storage.runs import LeaseLost

LEASE = timedelta(seconds=30)


async def _claimed(db: Database) -> int:
    run_id = await new_run(db)
    async with db.write() as session:
        assert await runs.claim_runs(session=session, worker_id="w1", limit=1, lease=LEASE) == [run_id]
    return run_id


async def test_steps_are_numbered_in_order_per_run(db: Database) -> None:
    a, b = await _claimed(db), await _claimed(db)
    async with db.write() as session:
        s1 = await journal.begin_step(
            session=session, run_id=a, worker_id="w1", lease=LEASE, kind=StepKind.model, name="m"
        )
        s2 = await journal.begin_step(
            session=session,
            run_id=a,
            worker_id="w1",
            lease=LEASE,
            kind=StepKind.action,
            name="ticket_create",
            arguments={"title": "x"},
        )
        other = await journal.begin_step(
            session=session, run_id=b, worker_id="w1", lease=LEASE, kind=StepKind.model, name="m"
        )
        rejected = await journal.record_step(
            session=session,
            run_id=a,
            worker_id="w1",
            lease=LEASE,
            kind=StepKind.action,
            name="nope",
            status=StepStatus.rejected,
            error="no",
        )
    assert (s1.seq, s2.seq, rejected.seq, other.seq) == (1, 2, 3, 1)
    assert (s1.status, s2.status) == (StepStatus.intent, StepStatus.intent)
    assert rejected.finished_at is not None

    assert s2.id is not None
    async with db.write() as session:
        await journal.finish_step(
            session=session, step_id=s2.id, status=StepStatus.succeeded, output="ok", undo={"ticket_id": 1}
        )
    async with db.read() as session:
        steps = await journal.steps_of(session=session, run_id=a)
        fetched = await journal.get_step(session=session, step_id=s2.id)
    assert [s.seq for s in steps] == [1, 2, 3]
    assert fetched is not None
    assert (fetched.status, fetched.output, fetched.undo, fetched.arguments) == (
        StepStatus.succeeded,
        "ok",
        {"ticket_id": 1},
        {"title": "x"},
    )
    assert fetched.finished_at is not None


async def test_begin_step_is_fenced_by_the_lease(db: Database) -> None:
    run_id = await _claimed(db)
    async with db.write() as session:
        with pytest.raises(LeaseLost):
            await journal.begin_step(
                session=session, run_id=run_id, worker_id="w2", lease=LEASE, kind=StepKind.model, name="m"
            )
    async with db.read() as session:
        assert await journal.steps_of(session=session, run_id=run_id) == []


async def test_the_step_boundary_renews_the_lease_and_sees_undo_and_pause(
    db: Database, frozen_clock: Clock
) -> None:
    """`gate.stop` is fenced (it renews the lease), so the step after it needs no renewal of its own."""
    run_id = await _claimed(db)
    async with db.write() as session:
        with pytest.raises(LeaseLost):
            await gate.stop(session=session, run_id=run_id, agent="ops", worker_id="w2", lease=LEASE)

    frozen_clock.advance(seconds=20)
    async with db.write() as session:
        assert (
            await gate.stop(session=session, run_id=run_id, agent="ops", worker_id="w1", lease=LEASE) is None
        )
        step = await journal.add_step(session=session, run_id=run_id, kind=StepKind.model, name="m")
    frozen_clock.advance(seconds=20)  # 40 s after the claim, 20 s after the gate renewed the lease
    async with db.write() as session:
        assert await runs.claim_runs(session=session, worker_id="w2", limit=1, lease=LEASE) == []
    async with db.read() as session:
        assert [(s.id, s.seq, s.status) for s in await journal.steps_of(session=session, run_id=run_id)] == [
            (step.id, 1, StepStatus.intent)
        ]

    async with db.write() as session:
        assert await runs.request_undo(session=session, run_id=run_id, by_user="U9") == "requested"
    async with db.write() as session:
        stop = await gate.stop(session=session, run_id=run_id, agent="ops", worker_id="w1", lease=LEASE)
    assert isinstance(stop, gate.UndoRequested) and stop.by_user == "U9"

    other = await _claimed(db)
    async with db.write() as session:
        await controls.set_paused(session=session, scope="ops", paused=True, by_user="U1")
    async with db.write() as session:
        stop = await gate.stop(session=session, run_id=other, agent="ops", worker_id="w1", lease=LEASE)
    assert isinstance(stop, gate.Paused)
    async with db.read() as session:
        run = await runs.get_run(session=session, run_id=other)
    assert run is not None and (run.status, run.worker_id) == (RunStatus.waiting, None)
