"""Storage on a real PostgreSQL: intake dedupe, leases under competing workers, timestamps.

The database is one of this module's own on the cluster CHATOPS_TEST_POSTGRES_URL names
(`make test` starts a throwaway cluster and sets it). Without it these tests are skipped,
except under CI (CI=true), where a missing database is a failure: CI must never pass by
skipping them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fakes import wait_until
from scenarios.faults_support import fresh_database_sync
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, func, select

from storage.clock import now, set_clock
from storage.engine import Database
from storage.feedback import record_vote, votes_of
from storage.models import ProcessedEvent, Request, RequestBase, Run, RunStatus, Vote
from storage.requests import create_request, record_delivery
from storage.runs import LeaseLost, claim_runs, get_run, release, renew_lease

REPO = Path(__file__).resolve().parents[2]
LEASE = timedelta(seconds=30)


# --- the database ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of this module's own on the test cluster, dropped afterwards: the tables it
    drops and empties are no one else's (under xdist, this module's tests may run in two
    workers at once, each with its own)."""
    with fresh_database_sync() as url:
        yield url


async def table_names(conn: AsyncConnection) -> list[str]:
    """Every table in the schema, including any a newer migration made that this code doesn't know."""
    query = text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return list((await conn.execute(query)).scalars().all())


@pytest.fixture(scope="module")
def pg_schema(pg_url: str) -> str:
    """A fresh schema for this module: every table in it dropped, then `migrate()`."""

    async def reset() -> None:
        db = Database(pg_url, pooled=False)
        try:
            async with db.engine.begin() as conn:
                for name in await table_names(conn):
                    await conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
            await db.migrate()
        finally:
            await db.dispose()

    asyncio.run(reset())
    return pg_url


@pytest.fixture
async def db(pg_schema: str) -> AsyncIterator[Database]:
    """The module's schema, emptied before each test."""
    database = Database(pg_schema)
    async with database.engine.begin() as conn:
        tables = ", ".join(f'"{name}"' for name in await table_names(conn) if name != "meta")
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> Iterator[Callable[[timedelta], None]]:
    """Stored time under the test's control; returns `advance(delta)`."""
    current = [datetime.now(UTC)]
    set_clock(lambda: current[0])

    def advance(delta: timedelta) -> None:
        current[0] += delta

    yield advance
    set_clock(None)


def message(i: int, *, channel: str = "C0123OPS") -> RequestBase:
    ts = f"1700000000.{i:06d}"
    return RequestBase(
        kind="channel",
        team_id="T0001",
        channel_id=channel,
        user_id="U0001",
        ts=ts,
        thread_ts=ts,  # its own thread: no run waits for another
        event_id=f"Ev{i:06d}",
        text=f"request {i}",
        agent="ops",
    )


async def queue_runs(db: Database, count: int) -> list[int]:
    run_ids = []
    async with db.write() as session:
        for i in range(count):
            created = await create_request(session=session, request=message(i))
            assert created is not None and created[1].id is not None
            run_ids.append(created[1].id)
    return run_ids


# --- intake ------------------------------------------------------------------------------


async def test_record_delivery_remembers_a_delivery_once(db: Database) -> None:
    async with db.write() as session:
        assert await record_delivery(session=session, key="Ev001", kind="event") is True
    async with db.write() as session:
        assert await record_delivery(session=session, key="Ev001", kind="event") is False
        assert await record_delivery(session=session, key="Ev002", kind="event") is True


async def test_concurrent_deliveries_of_one_event_are_taken_once(db: Database) -> None:
    """Slack's retries can arrive together: ON CONFLICT DO NOTHING lets exactly one through."""

    async def deliver() -> bool:
        async with db.write() as session:
            return await record_delivery(session=session, key="Ev-retried", kind="event")

    results = await asyncio.gather(*(deliver() for _ in range(12)))
    assert sorted(results) == [False] * 11 + [True]
    async with db.read() as session:
        assert (await session.exec(select(func.count()).select_from(ProcessedEvent))).one() == 1


async def test_one_message_is_one_request_and_one_run(db: Database) -> None:
    async with db.write() as session:
        first = await create_request(session=session, request=message(1))
    assert first is not None
    request, run = first
    assert request.id is not None and run.request_id == request.id
    assert run.status == RunStatus.queued and run.thread_ts == request.ts

    async with db.write() as session:  # the same message again, e.g. as app_mention
        assert await create_request(session=session, request=message(1)) is None
    async with db.write() as session:  # the same ts in another channel is another message
        assert await create_request(session=session, request=message(1, channel="C0999")) is not None

    async with db.read() as session:
        assert (await session.exec(select(func.count()).select_from(Request))).one() == 2
        assert (await session.exec(select(func.count()).select_from(Run))).one() == 2


async def test_concurrent_deliveries_of_one_message_make_one_run(db: Database) -> None:
    async def deliver() -> bool:
        async with db.write() as session:
            return await create_request(session=session, request=message(7)) is not None

    results = await asyncio.gather(*(deliver() for _ in range(10)))
    assert results.count(True) == 1
    async with db.read() as session:
        assert (await session.exec(select(func.count()).select_from(Run))).one() == 1


# --- leases ------------------------------------------------------------------------------

# A worker in its own OS process: claims until the queue stays empty, prints what it took.
WORKER = """
import asyncio, json, sys
from datetime import timedelta

from storage.engine import Database
from storage.runs import claim_runs


async def main(url: str, worker_id: str) -> None:
    db = Database(url)
    assert await db.ping()  # connected and warm before the start signal
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    claimed, empty = [], 0
    while empty < 3:
        async with db.write() as session:
            ids = await claim_runs(session=session, worker_id=worker_id, limit=3, lease=timedelta(minutes=10))
        claimed.extend(ids)
        empty = 0 if ids else empty + 1
        await asyncio.sleep(0.001)  # a little "work", so the workers interleave
    await db.dispose()
    print(json.dumps(claimed), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_competing_worker_processes_claim_every_run_exactly_once(db: Database, pg_url: str) -> None:
    run_ids = await queue_runs(db, 200)
    workers = [f"worker-{n}" for n in range(4)]
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            pg_url,
            worker,
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for worker in workers
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                _, err = await proc.communicate()
                pytest.fail(f"worker did not start: {line!r}\n{err.decode()}")
        # All connected: let them loose together.
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate(b"go\n") for p in procs)), 120)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    claims: dict[str, list[int]] = {}
    for worker, proc, (out, err) in zip(workers, procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        claims[worker] = json.loads(out.decode().strip().splitlines()[-1])

    taken = [run_id for ids in claims.values() for run_id in ids]
    assert len(taken) == len(set(taken)), "a run was claimed twice"
    assert sorted(taken) == sorted(run_ids), "a run was never claimed"
    assert sum(1 for ids in claims.values() if ids) >= 2, f"the workers did not compete: {claims}"

    owner = {run_id: worker for worker, ids in claims.items() for run_id in ids}
    async with db.read() as session:
        rows = (await session.exec(select(Run).order_by(col(Run.id)))).all()
    assert [run.id for run in rows] == sorted(run_ids)
    for run in rows:
        assert run.id is not None
        assert (run.status, run.attempts, run.worker_id) == (RunStatus.running, 1, owner[run.id])


async def test_an_expired_lease_passes_to_another_worker(
    db: Database, clock: Callable[[timedelta], None]
) -> None:
    [run_id] = await queue_runs(db, 1)
    async with db.write() as session:
        assert await claim_runs(session=session, worker_id="a", limit=10, lease=LEASE) == [run_id]
    async with db.write() as session:  # a live lease keeps the run with its worker
        assert await claim_runs(session=session, worker_id="b", limit=10, lease=LEASE) == []

    clock(LEASE + timedelta(seconds=1))  # worker "a" went silent past its lease
    async with db.write() as session:
        assert await claim_runs(session=session, worker_id="b", limit=10, lease=LEASE) == [run_id]
    async with db.read() as session:
        run = await get_run(session=session, run_id=run_id)
    assert run is not None
    assert (run.status, run.worker_id, run.attempts) == (RunStatus.running, "b", 2)

    # "a" comes back: its lease is fenced off.
    with pytest.raises(LeaseLost):
        async with db.write() as session:
            await renew_lease(session=session, run_id=run_id, worker_id="a", lease=LEASE)
    with pytest.raises(LeaseLost):
        async with db.write() as session:
            await release(session=session, run_id=run_id, worker_id="a", status=RunStatus.succeeded)
    async with db.write() as session:
        await renew_lease(session=session, run_id=run_id, worker_id="b", lease=LEASE)
        await release(session=session, run_id=run_id, worker_id="b", status=RunStatus.succeeded)
    async with db.read() as session:
        run = await get_run(session=session, run_id=run_id)
    assert run is not None and run.status == RunStatus.succeeded and run.worker_id is None


# --- time --------------------------------------------------------------------------------


def with_session_timezone(url: str, tz: str) -> str:
    """The same database, with the connection's TimeZone setting changed."""
    with_tz = make_url(url).update_query_dict({"options": f"-c TimeZone={tz}"})
    return with_tz.render_as_string(hide_password=False)


async def test_timezone_aware_datetimes_round_trip(db: Database, pg_url: str) -> None:
    """Stored instants come back aware and equal, whatever each connection's TimeZone."""
    [run_id] = await queue_runs(db, 1)
    lease_end = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    writer = Database(with_session_timezone(pg_url, "Asia/Kolkata"), pooled=False)
    reader = Database(with_session_timezone(pg_url, "America/New_York"), pooled=False)
    try:
        async with writer.write() as session:
            run = await session.get(Run, run_id)
            assert run is not None
            run.lease_expires_at = lease_end
            session.add(run)
        for database in (db, reader):
            async with database.read() as session:
                stored = await get_run(session=session, run_id=run_id)
            assert stored is not None
            for value in (stored.lease_expires_at, stored.created_at, stored.updated_at):
                assert value is not None and value.tzinfo is not None, f"naive from the database: {value!r}"
            assert stored.lease_expires_at == lease_end
            assert abs(stored.created_at - now()) < timedelta(minutes=5)
    finally:
        await writer.dispose()
        await reader.dispose()


# --- feedback ----------------------------------------------------------------------------


async def test_one_persons_votes_at_once_keep_one_row_and_the_last_vote(db: Database) -> None:
    """A double click, or two clicks crossing: the primary key keeps one vote per person and run."""
    [run_id] = await queue_runs(db, 1)

    async def vote(kind: Vote) -> None:
        async with db.write() as session:
            await record_vote(session=session, run_id=run_id, user_id="U0001", team_id="T0001", vote=kind)

    await asyncio.gather(*(vote(Vote.good) for _ in range(6)))
    await vote(Vote.bad)
    async with db.read() as session:
        assert await votes_of(session=session, run_id=run_id) == {"good": 0, "bad": 1}


# --- approvals and spend (issue 17) ----------------------------------------------------------


async def test_two_people_deciding_at_once_are_counted_one_after_the_other(db: Database) -> None:
    """A two-person rule: the second decision, made while the first is not committed yet, waits
    on the approval's row and then counts the first (bot.controls.decide)."""
    from storage import approvals

    [run_id] = await queue_runs(db, 1)
    async with db.write() as session:
        approval = await approvals.request_approval(
            session=session,
            run_id=run_id,
            tool_call_id="1.0",
            action="deploy",
            arguments={},
            reason="its risk is high",
            channel_id="C0123OPS",
            expires_at=now() + timedelta(hours=1),
            needed=2,
        )
    assert approval.id is not None and approval.needed == 2
    first_locked, let_first_commit = asyncio.Event(), asyncio.Event()

    async def decide(user: str, *, hold: bool) -> list[str]:
        async with db.write() as session:
            await approvals.lock_approval(session=session, approval_id=approval.id or 0)
            if hold:
                first_locked.set()
            earlier = [
                d.user_id for d in await approvals.decisions(session=session, approval_id=approval.id or 0)
            ]
            await approvals.record_decision(
                session=session, approval_id=approval.id or 0, user_id=user, decision="approve"
            )
            if hold:
                await let_first_commit.wait()
        return earlier

    first = asyncio.create_task(decide("U1", hold=True))
    await first_locked.wait()
    second = asyncio.create_task(decide("U2", hold=False))

    async def blocked() -> bool:  # the second transaction waits on the approval's row lock
        async with db.engine.connect() as conn:
            waiting = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            )
            return bool(waiting.scalar())

    await wait_until(blocked, message="the second decision to wait for the first's lock")
    assert not second.done()
    let_first_commit.set()
    assert await first == [] and await second == ["U1"]


async def test_concurrent_turns_add_to_a_day_s_spend_without_losing_any(db: Database) -> None:
    from storage import spend

    async with db.write() as session:
        assert await spend.open_day(
            session=session, agent="ops", day="2024-05-01", prompt_tokens=0, completion_tokens=0, cost=0.0
        )

    async def turn() -> None:
        async with db.write() as session:
            assert await spend.add(
                session=session,
                agent="ops",
                day="2024-05-01",
                prompt_tokens=10,
                completion_tokens=2,
                cost=0.5,
            )

    await asyncio.gather(*(turn() for _ in range(20)))
    async with db.read() as session:
        row = await spend.of_day(session=session, agent="ops", day="2024-05-01")
    assert row is not None and (row.prompt_tokens, row.completion_tokens, row.cost) == (200, 40, 10.0)
