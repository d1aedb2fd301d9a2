from __future__ import annotations

import asyncio

from sqlmodel import func, select
from storage_rows import request

from storage.engine import Database
from storage.models import Request, Run, RunStatus
from storage.requests import create_request, find_request, record_delivery, thread_has_runs


async def _count(db: Database, model: type[Request] | type[Run]) -> int:
    async with db.read() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


async def test_record_delivery_remembers_each_key_once(db: Database) -> None:
    async with db.write() as session:
        assert await record_delivery(session=session, key="Ev01", kind="event")
        assert not await record_delivery(session=session, key="Ev01", kind="event")
        assert await record_delivery(session=session, key="Ev02", kind="event")
    async with db.write() as session:  # and across transactions
        assert not await record_delivery(session=session, key="Ev02", kind="command")


async def test_concurrent_deliveries_of_one_event_are_taken_once(db: Database) -> None:
    async def deliver() -> bool:
        async with db.write() as session:
            return await record_delivery(session=session, key="Ev42", kind="event")

    assert sorted(await asyncio.gather(*(deliver() for _ in range(6)))) == [False] * 5 + [True]


async def test_create_request_queues_one_run_per_message(db: Database) -> None:
    message = request(ts="1690000000.000100", thread_ts="1690000000.000001")
    async with db.write() as session:
        created = await create_request(session=session, request=message)
    assert created is not None
    stored, run = created
    assert stored.id is not None and stored.text == "hello"
    assert (run.request_id, run.agent, run.status) == (stored.id, "ops", RunStatus.queued)
    assert (run.team_id, run.channel_id, run.thread_ts) == ("T1", "C1", "1690000000.000001")

    # The same message again (a retry, or app_mention after message): no second request or run.
    async with db.write() as session:
        assert await create_request(session=session, request=message) is None
    assert await _count(db, Request) == 1
    assert await _count(db, Run) == 1


async def test_concurrent_intake_of_one_message_makes_one_run(db: Database) -> None:
    message = request(ts="1690000000.000200")

    async def intake() -> bool:
        async with db.write() as session:
            return await create_request(session=session, request=message) is not None

    assert sorted(await asyncio.gather(*(intake() for _ in range(5)))) == [False] * 4 + [True]
    assert await _count(db, Run) == 1


async def test_the_same_ts_in_another_channel_is_another_message(db: Database) -> None:
    async with db.write() as session:
        assert await create_request(session=session, request=request(ts="7.0", channel="C1")) is not None
        assert await create_request(session=session, request=request(ts="7.0", channel="C2")) is not None


async def test_find_request_and_thread_has_runs(db: Database) -> None:
    async with db.write() as session:
        await create_request(session=session, request=request(ts="8.0"))
    async with db.read() as session:
        found = await find_request(session=session, team_id="T1", channel_id="C1", ts="8.0")
        assert found is not None and found.ts == "8.0"
        assert await find_request(session=session, team_id="T1", channel_id="C1", ts="9.0") is None
        assert await thread_has_runs(session=session, team_id="T1", channel_id="C1", thread_ts="8.0") == "ops"
        assert await thread_has_runs(session=session, team_id="T1", channel_id="C1", thread_ts="9.0") is None
