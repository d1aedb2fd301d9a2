from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from storage_rows import Clock, new_run

from storage import journal, locks, runs
from storage.engine import Database
from storage.models import Run, RunStatus, StepKind, WaitKind
from storage.runs import LeaseLost, Wait

PAUSED_OPS = Wait(WaitKind.paused, "ops", "paused (ops)")


def _resource(resource: str, holder: int) -> Wait:
    return Wait(WaitKind.resource, resource, locks.wait_reason(resource, holder))


LEASE = timedelta(seconds=30)


async def _claim(db: Database, worker_id: str, limit: int = 10, lease: timedelta = LEASE) -> list[int]:
    async with db.write() as session:
        return await runs.claim_runs(session=session, worker_id=worker_id, limit=limit, lease=lease)


async def _run(db: Database, run_id: int) -> Run:
    async with db.read() as session:
        run = await runs.get_run(session=session, run_id=run_id)
    assert run is not None
    return run


async def _release(db: Database, run_id: int, worker_id: str, status: RunStatus, **fields: Any) -> None:
    async with db.write() as session:
        await runs.release(session=session, run_id=run_id, worker_id=worker_id, status=status, **fields)


async def test_claim_takes_queued_runs_and_leases_them(db: Database) -> None:
    run_id = await new_run(db)
    assert await _claim(db, "w1") == [run_id]
    run = await _run(db, run_id)
    assert (run.status, run.worker_id, run.attempts) == (RunStatus.running, "w1", 1)
    assert run.lease_expires_at is not None and run.started_at is not None
    assert await _claim(db, "w2") == []  # leased, not expired
    assert await _claim(db, "w1", limit=0) == []


async def test_competing_workers_each_get_different_runs(db: Database) -> None:
    run_ids = [await new_run(db) for _ in range(12)]

    claims = await asyncio.gather(*(_claim(db, f"w{i}", limit=3) for i in range(6)))

    taken = [run_id for claim in claims for run_id in claim]
    assert sorted(taken) == run_ids  # every run once, none twice
    for i, claim in enumerate(claims):
        for run_id in claim:
            assert (await _run(db, run_id)).worker_id == f"w{i}"


async def test_only_the_oldest_active_run_of_a_thread_is_claimable(db: Database) -> None:
    first = await new_run(db)
    thread = (await _run(db, first)).thread_ts
    second = await new_run(db, thread_ts=thread)
    elsewhere = await new_run(db)

    assert await _claim(db, "w1") == [first, elsewhere]

    await _release(db, first, "w1", RunStatus.waiting, wait=PAUSED_OPS)
    assert await _claim(db, "w1") == []  # a waiting run still holds its thread

    async with db.write() as session:
        assert await runs.requeue_waiting(session=session, kind=WaitKind.paused) == [first]
    assert await _claim(db, "w1") == [first]
    await _release(db, first, "w1", RunStatus.succeeded, outcome="done")
    assert await _claim(db, "w1") == [second]


async def test_a_thread_with_the_same_ts_in_another_channel_is_another_thread(db: Database) -> None:
    a = await new_run(db, thread_ts="1.0", channel="C1")
    b = await new_run(db, thread_ts="1.0", channel="C2")
    assert await _claim(db, "w1") == [a, b]


async def test_an_expired_lease_moves_the_run_to_another_worker(db: Database, frozen_clock: Clock) -> None:
    run_id = await new_run(db)
    assert await _claim(db, "old") == [run_id]

    frozen_clock.advance(seconds=29)
    assert await _claim(db, "new") == []
    frozen_clock.advance(seconds=2)
    assert await _claim(db, "new") == [run_id]

    run = await _run(db, run_id)
    assert (run.worker_id, run.attempts, run.status) == ("new", 2, RunStatus.running)
    async with db.write() as session:
        with pytest.raises(LeaseLost) as info:
            await runs.renew_lease(session=session, run_id=run_id, worker_id="old", lease=LEASE)
    assert (info.value.run_id, info.value.worker_id) == (run_id, "old")
    async with db.write() as session:
        with pytest.raises(LeaseLost):
            await journal.begin_step(
                session=session, run_id=run_id, worker_id="old", lease=LEASE, kind=StepKind.model, name="m"
            )
    with pytest.raises(LeaseLost):
        await _release(db, run_id, "old", RunStatus.succeeded)
    async with db.write() as session:
        assert (
            await runs.renew_leases(session=session, run_ids=[run_id], worker_id="old", lease=LEASE) == set()
        )
        assert await runs.renew_leases(session=session, run_ids=[run_id], worker_id="new", lease=LEASE) == {
            run_id
        }
    async with db.read() as session:
        assert await journal.steps_of(session=session, run_id=run_id) == []
    assert (await _run(db, run_id)).worker_id == "new"


async def test_renewing_keeps_the_run(db: Database, frozen_clock: Clock) -> None:
    run_id = await new_run(db)
    await _claim(db, "w1")
    frozen_clock.advance(seconds=20)
    async with db.write() as session:
        await runs.renew_lease(session=session, run_id=run_id, worker_id="w1", lease=LEASE)
    frozen_clock.advance(seconds=20)  # 40 s after the claim, 20 s after the renewal
    assert await _claim(db, "w2") == []


async def test_release_is_fenced_and_final_status_sets_finished_at(db: Database) -> None:
    run_id = await new_run(db)
    await _claim(db, "w1")
    with pytest.raises(LeaseLost):
        await _release(db, run_id, "w2", RunStatus.failed)
    await _release(db, run_id, "w1", RunStatus.failed, error="boom")
    run = await _run(db, run_id)
    assert (run.status, run.error, run.worker_id, run.lease_expires_at) == (
        RunStatus.failed,
        "boom",
        None,
        None,
    )
    assert run.finished_at is not None
    assert await _claim(db, "w1") == []  # final runs are never claimed again


async def test_finishing_frees_locks_and_requeues_the_runs_waiting_for_them(db: Database) -> None:
    holder = await new_run(db)
    waiter = await new_run(db)
    other_waiter = await new_run(db)
    await _claim(db, "w1")
    async with db.write() as session:
        assert await locks.acquire(session=session, resource="service:web", run_id=holder) is None
        assert await locks.acquire(session=session, resource="service:web", run_id=waiter) == holder
    await _release(db, waiter, "w1", RunStatus.waiting, wait=_resource("service:web", holder))
    await _release(db, other_waiter, "w1", RunStatus.waiting, wait=_resource("service:db", 99))

    await _release(db, holder, "w1", RunStatus.succeeded)

    assert (await _run(db, waiter)).status == RunStatus.queued
    assert (await _run(db, other_waiter)).status == RunStatus.waiting
    async with db.write() as session:
        assert await locks.acquire(session=session, resource="service:web", run_id=waiter) is None


async def test_requeue_waiting_matches_a_kind_and_an_agent(db: Database) -> None:
    a, b, c = [await new_run(db) for _ in range(3)]
    await _claim(db, "w1")
    await _release(db, a, "w1", RunStatus.waiting, wait=PAUSED_OPS)
    await _release(db, b, "w1", RunStatus.waiting, wait=Wait(WaitKind.paused, "*", "paused (all agents)"))
    await _release(
        db, c, "w1", RunStatus.waiting, wait=Wait(WaitKind.approval, "7", "approval: deploy waits")
    )
    run = await _run(db, c)
    assert (run.wait_kind, run.wait_on, run.wait_reason) == ("approval", "7", "approval: deploy waits")
    async with db.write() as session:
        assert await runs.requeue_waiting(session=session, kind=WaitKind.paused, agent="other") == []
        assert sorted(await runs.requeue_waiting(session=session, kind=WaitKind.paused, agent="ops")) == [
            a,
            b,
        ]
        assert await runs.requeue(session=session, run_id=c)
        assert not await runs.requeue(session=session, run_id=c)  # no longer waiting
    for r in (a, b, c):
        run = await _run(db, r)
        assert (run.wait_kind, run.wait_on, run.wait_reason) == (None, None, None)


async def test_claim_message_lets_exactly_one_caller_post(db: Database) -> None:
    run_id = await new_run(db)

    async def claim() -> bool:
        async with db.write() as session:
            return await runs.claim_message(session=session, run_id=run_id, field="outcome_ts")

    assert sorted(await asyncio.gather(*(claim() for _ in range(8)))) == [False] * 7 + [True]
    assert (await _run(db, run_id)).outcome_ts == runs.PENDING

    async with db.write() as session:  # the post failed: the claim is given back
        await runs.set_message_ts(session=session, run_id=run_id, field="outcome_ts", ts=None)
    assert await claim()
    async with db.write() as session:
        await runs.set_message_ts(session=session, run_id=run_id, field="outcome_ts", ts="1700.1")
    assert not await claim()
    assert (await _run(db, run_id)).outcome_ts == "1700.1"

    async with db.write() as session:
        assert await runs.claim_message(session=session, run_id=run_id, field="status_ts")
        with pytest.raises(ValueError):
            await runs.claim_message(session=session, run_id=run_id, field="outcome")


async def test_request_undo(db: Database) -> None:
    running, finished = await new_run(db), await new_run(db)
    await _claim(db, "w1")
    await _release(db, finished, "w1", RunStatus.succeeded)
    async with db.write() as session:
        assert await runs.request_undo(session=session, run_id=running, by_user="U7") == "requested"
        assert await runs.request_undo(session=session, run_id=finished, by_user="U7") == "requested"
        assert await runs.request_undo(session=session, run_id=finished, by_user="U8") == "already"
        assert await runs.request_undo(session=session, run_id=4242, by_user="U7") == "missing"
    assert ((await _run(db, running)).status, (await _run(db, running)).undone_by) == (
        RunStatus.running,
        "U7",
    )
    assert (await _run(db, finished)).status == RunStatus.queued  # a worker reverses it under a lease


async def test_lookups(db: Database) -> None:
    first = await new_run(db, thread_ts="5.0")
    second = await new_run(db, thread_ts="5.0")
    await _claim(db, "w1")
    async with db.read() as session:
        assert [r.id for r in await runs.runs_in_flight(session=session)] == [first, second]
        latest = await runs.latest_run(session=session, team_id="T1", channel_id="C1", thread_ts="5.0")
        assert latest is not None and latest.id == second
        behind = await runs.get_run(session=session, run_id=second)
        assert behind is not None
        assert await runs.run_ahead(session=session, run=behind) == first
    await _release(db, first, "w1", RunStatus.succeeded)
    async with db.read() as session:
        assert await runs.finished_without_outcome(session=session) == [first]


async def test_freeing_a_resource_requeues_only_the_runs_waiting_for_that_resource(db: Database) -> None:
    """Resource names are the operator's (`service:{{ service }}`): `_` and `%` are ordinary characters."""
    holder, waiter, bystander = [await new_run(db) for _ in range(3)]
    await _claim(db, "w1")
    async with db.write() as session:
        await locks.acquire(session=session, resource="service:db_1", run_id=holder)
    await _release(db, waiter, "w1", RunStatus.waiting, wait=_resource("service:db_1", holder))
    await _release(db, bystander, "w1", RunStatus.waiting, wait=_resource("service:db-1", 99))

    await _release(db, holder, "w1", RunStatus.succeeded)

    assert (await _run(db, waiter)).status == RunStatus.queued
    bystanding = await _run(db, bystander)
    assert (bystanding.status, bystanding.wait_reason) == (
        RunStatus.waiting,
        "resource: service:db-1 (held by run #99)",
    ), "a run waiting for service:db-1 was requeued when service:db_1 was freed"
