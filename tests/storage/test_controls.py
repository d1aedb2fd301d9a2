from __future__ import annotations

from storage.controls import ALL, all_controls, paused_scope, set_paused
from storage.engine import Database


async def test_pause_flags(db: Database) -> None:
    async with db.write() as session:
        assert await paused_scope(session=session, agent="ops") is None
        assert await set_paused(session=session, scope="ops", paused=True, by_user="U1", reason="incident")
        assert not await set_paused(session=session, scope="ops", paused=True, by_user="U2")
    async with db.read() as session:
        pause = await paused_scope(session=session, agent="ops")
        assert pause is not None and (pause.scope, pause.by_user, pause.reason) == ("ops", "U1", "incident")
        assert await paused_scope(session=session, agent="db") is None

    async with db.write() as session:
        assert await set_paused(session=session, scope=ALL, paused=True, by_user="U3")
    async with db.read() as session:
        everything = await paused_scope(session=session, agent="db")
        assert everything is not None and everything.scope == ALL
        first = await paused_scope(session=session, agent="ops")
        assert first is not None and first.scope == ALL  # the emergency stop is reported first

    async with db.write() as session:
        assert await set_paused(session=session, scope=ALL, paused=False, by_user="U3")
        assert await set_paused(session=session, scope="ops", paused=False, by_user="U3")
    async with db.read() as session:
        assert await paused_scope(session=session, agent="ops") is None
        assert [(c.scope, c.paused) for c in await all_controls(session=session)] == [
            (ALL, False),
            ("ops", False),
        ]
