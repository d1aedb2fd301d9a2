"""/healthz's database check: however often it is asked, one probe at a time, one a second."""

from __future__ import annotations

import asyncio

from bot.http import DatabaseCheck
from storage.engine import Database


class CountingDatabase(Database):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pings = 0

    async def ping(self) -> bool:
        self.pings += 1
        await asyncio.sleep(0)  # the others ask while this one is out
        return await super().ping()


async def test_concurrent_and_repeated_checks_share_one_probe(tmp_path) -> None:
    db = CountingDatabase(f"sqlite:///{tmp_path / 'chatops.db'}")
    await db.migrate()
    try:
        check = DatabaseCheck(db)
        answers = await asyncio.gather(*(check.state() for _ in range(50)))
        assert answers == ["ok"] * 50
        assert await check.state() == "ok"  # within a second: the same answer, no new probe
        assert db.pings == 1
        check.FRESH = 0.0  # stale at once: the next question probes again
        assert await check.state() == "ok"
        assert db.pings == 2
    finally:
        await db.dispose()
