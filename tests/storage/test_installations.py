"""Many workspaces in storage (revision 0010): slack-sdk's installation and OAuth state tables
exactly as slack-sdk defines them, its stores working on our database (SQLite and PostgreSQL),
the workspace of pauses, alerts and summary posts (existing rows belong to every workspace),
a workspace's runs cancelled, and the downgrade.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from scenarios.faults_support import fresh_database
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from sqlalchemy import inspect, text
from storage_rows import new_run

from storage import approvals, controls, installations, locks, runs, schema, teams
from storage.engine import Database
from storage.models import RunStatus, WaitKind

CLIENT_ID = "1111.2222"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each kind (PostgreSQL: a fresh one on the test cluster)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'chatops.db'}")
        await db.migrate()
        try:
            yield db
        finally:
            await db.dispose()
        return
    async with fresh_database() as url:
        db = Database(url, pooled=False)
        await db.migrate()
        try:
            yield db
        finally:
            await db.dispose()


def _stores_tables() -> dict[str, Any]:
    """The tables slack-sdk's async stores build for themselves, as their own metadata has them."""
    engine: Any = None
    store = AsyncSQLAlchemyInstallationStore(client_id=CLIENT_ID, engine=engine)
    states = AsyncSQLAlchemyOAuthStateStore(expiration_seconds=60, engine=engine)
    return {**store.metadata.tables, **states.metadata.tables}


async def test_the_migrated_slack_tables_are_those_slack_sdks_stores_define(database: Database) -> None:
    expected = _stores_tables()
    assert set(expected) == {"slack_installations", "slack_bots", "slack_oauth_states"}

    def reflect(conn: Any) -> dict[str, Any]:
        found = inspect(conn)
        return {
            name: (
                {c["name"]: c for c in found.get_columns(name)},
                found.get_pk_constraint(name)["constrained_columns"],
                {i["name"]: i["column_names"] for i in found.get_indexes(name)},
            )
            for name in expected
        }

    async with database.engine.connect() as conn:
        migrated = await conn.run_sync(reflect)
    for name, table in expected.items():
        columns, key, indexes = migrated[name]
        assert list(columns) == [c.name for c in table.columns], name
        for column in table.columns:
            got = columns[column.name]
            assert got["nullable"] == column.nullable, (name, column.name)
            assert type(got["type"]).__name__.upper() in _type_names(column.type), (name, column.name, got)
            length = getattr(column.type, "length", None)
            assert getattr(got["type"], "length", None) == length, (name, column.name)
        assert key == [c.name for c in table.primary_key.columns], name
        assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}, name


def _type_names(kind: Any) -> set[str]:
    """What a database reflects a slack-sdk column type as (SQLite keeps a boolean as one)."""
    name = type(kind).__name__.upper()
    return {
        "INTEGER": {"INTEGER"},
        "STRING": {"VARCHAR"},
        "DATETIME": {"DATETIME", "TIMESTAMP"},
        "BOOLEAN": {"BOOLEAN"},
    }[name]


async def test_slack_sdks_stores_save_find_and_delete_on_our_database(database: Database) -> None:
    store = installations.installation_store(database, CLIENT_ID)
    states = installations.state_store(database)
    for team, token in (("T1", "xoxb-one"), ("T2", "xoxb-two")):
        await store.async_save(
            Installation(
                app_id="A1",
                enterprise_id=None,
                team_id=team,
                team_name=f"Team {team}",
                bot_token=token,
                bot_id=f"B{team}",
                bot_user_id=f"UBOT{team}",
                bot_scopes="chat:write,commands",
                user_id="U1",
                installed_at=datetime.now(UTC).timestamp(),
            )
        )
    bot = await store.async_find_bot(enterprise_id=None, team_id="T2")
    assert bot is not None and (bot.bot_token, bot.bot_user_id) == ("xoxb-two", "UBOTT2")
    async with database.read() as session:
        assert await installations.installed_teams(session=session, client_id=CLIENT_ID) == ["T1", "T2"]
        assert await installations.bot_token(session=session, client_id=CLIENT_ID, team_id="T1") == "xoxb-one"
        assert await installations.installed_teams(session=session, client_id="another-app") == []

    await store.async_delete_all(enterprise_id=None, team_id="T1")
    assert await store.async_find_bot(enterprise_id=None, team_id="T1") is None
    assert await store.async_find_installation(enterprise_id=None, team_id="T1") is None
    async with database.read() as session:
        assert await installations.bot_token(session=session, client_id=CLIENT_ID, team_id="T1") is None
        assert await installations.installed_teams(session=session, client_id=CLIENT_ID) == ["T2"]

    state = await states.async_issue()
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False  # once
    assert await states.async_consume("made-up") is False


async def test_a_store_write_waits_for_a_write_in_progress(tmp_path: Path) -> None:
    """On SQLite the stores write as chatops does (BEGIN IMMEDIATE, waited for, not refused)."""
    db = Database(f"sqlite:///{tmp_path / 'chatops.db'}")
    await db.migrate()
    try:
        states = installations.state_store(db)
        other = Database(f"sqlite:///{tmp_path / 'chatops.db'}")  # another process's writer
        try:
            async with other.write() as session:
                await session.exec(text("UPDATE controls SET paused = paused"))  # type: ignore[call-overload]
                task = asyncio.ensure_future(states.async_issue())
                await asyncio.sleep(0.05)
                assert not task.done()  # waiting for the other writer
            state = await task
            assert await states.async_consume(state)
        finally:
            await other.dispose()
    finally:
        await db.dispose()


async def test_pauses_belong_to_their_workspace_and_those_of_every_workspace_to_all(db: Database) -> None:
    async with db.write() as session:
        assert await controls.set_paused(
            session=session, scope="ops", paused=True, by_user="U1", team_id="T2"
        )
        assert await controls.set_paused(session=session, scope="*", paused=True, by_user="U9", team_id="T3")
    async with db.read() as session:
        assert await controls.paused_scope(session=session, agent="ops", team_id="T1") is None
        assert (await controls.paused_scope(session=session, agent="ops", team_id="T2")).scope == "ops"  # type: ignore[union-attr]
        assert (await controls.paused_scope(session=session, agent="db", team_id="T3")).scope == "*"  # type: ignore[union-attr]
        assert await controls.paused_scope(session=session, agent="ops") is None
        assert [c.team_id for c in await controls.all_controls(session=session, team_id="T2")] == ["T2"]
    async with db.write() as session:
        assert await controls.set_paused(session=session, scope="ops", paused=True, by_user="OP")
    async with db.read() as session:
        for team in ("T1", "T2", "T3", ""):
            pause = await controls.paused_scope(session=session, agent="ops", team_id=team)
            assert pause is not None and (pause.team_id, pause.scope) in (("", "ops"), ("T3", "*")), team


async def test_cancelling_a_workspace_stops_its_runs_and_frees_what_they_held(db: Database) -> None:
    queued, waiting, running, other = [await new_run(db, channel=c) for c in ("C1", "C2", "C3", "C4")]
    async with db.write() as session:
        await session.exec(text("UPDATE runs SET team_id = 'T9' WHERE id = :i").bindparams(i=other))  # type: ignore[call-overload]
        claimed = await runs.claim_runs(session=session, worker_id="w1", limit=4, lease=timedelta(seconds=30))
        assert claimed == [queued, waiting, running, other]
        await runs.release(session=session, run_id=queued, worker_id="w1", status=RunStatus.queued)
        await runs.release(
            session=session,
            run_id=waiting,
            worker_id="w1",
            status=RunStatus.waiting,
            wait=runs.Wait(WaitKind.approval, "1", "approval"),
        )
        await approvals.request_approval(
            session=session,
            run_id=waiting,
            tool_call_id="1.0",
            action="deploy",
            arguments={},
            reason="risk high",
            channel_id="C2",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        assert await locks.acquire(session=session, resource="db:1", run_id=running) is None
        await runs.release(
            session=session,
            run_id=other,
            worker_id="w1",
            status=RunStatus.waiting,
            wait=runs.Wait(WaitKind.resource, "db:1", "resource"),
        )
    async with db.write() as session:
        cancelled = await teams.cancel_runs(session=session, team_id="T1", reason="gone")
    assert cancelled == [queued, waiting, running]
    async with db.read() as session:
        rows = {r: await runs.get_run(session=session, run_id=r) for r in (queued, waiting, running, other)}
        pending = await approvals.pending_approvals(session=session)
    for run_id in cancelled:
        run = rows[run_id]
        assert run is not None and (run.status, run.error, run.worker_id) == (
            RunStatus.cancelled,
            "gone",
            None,
        )
        assert run.finished_at is not None
    assert pending == []
    assert rows[other] is not None and rows[other].status == RunStatus.queued  # its resource is free
    async with db.write() as session:  # the cancelled running run's worker: its lease is gone
        with pytest.raises(runs.LeaseLost):
            await runs.renew_lease(
                session=session, run_id=running, worker_id="w1", lease=timedelta(seconds=30)
            )


# The migration ----------------------------------------------------------------------------


async def test_0010_keeps_existing_pauses_for_every_workspace_and_its_downgrade_keeps_every_pause(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = Database(f"sqlite:///{path}")
    try:
        await db.migrate("0009")
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO controls VALUES ('ops', 1, 'U1', 'incident', '2026-01-01 00:00:00.000000')")
        conn.execute(
            "INSERT INTO alerts (key, active, message, raised_at) "
            "VALUES ('stuck:run:1', 1, 'm', '2026-01-01')"
        )
        conn.commit()
        conn.close()
        await db.migrate()
        async with db.read() as session:
            pause = await controls.paused_scope(session=session, agent="ops", team_id="T5")
            assert pause is not None and (pause.team_id, pause.by_user, pause.reason) == (
                "",
                "U1",
                "incident",
            )
            [alert_team] = (await session.exec(text("SELECT team_id FROM alerts"))).all()  # type: ignore[call-overload]
            assert alert_team == ("",)
        async with db.write() as session:
            await controls.set_paused(
                session=session, scope="support", paused=True, by_user="U2", team_id="T2"
            )
            await controls.set_paused(session=session, scope="ops", paused=False, by_user="U2", team_id="T2")
            for team in ("T1", "T2"):
                await session.exec(  # type: ignore[call-overload]
                    text(
                        "INSERT INTO alerts (team_id, key, active, message, raised_at) "
                        "VALUES (:t, 'failure_rate:ops', true, 'm', '2026-01-02 00:00:00')"
                    ).bindparams(t=team)
                )
        await _downgrade(db, "0009")
        conn = sqlite3.connect(path)
        assert sorted(conn.execute("SELECT scope, paused, by_user FROM controls")) == [
            ("ops", 1, "U1"),
            ("support", 1, "U2"),
        ]
        active = conn.execute("SELECT key FROM alerts WHERE active").fetchall()
        conn.close()
        assert sorted(active) == [("failure_rate:ops",), ("stuck:run:1",)]
        await db.migrate()
        assert await db.schema_revision() == schema.head()
    finally:
        await db.dispose()


async def _downgrade(db: Database, revision: str) -> None:
    async with db.engine.connect() as conn:
        await conn.run_sync(lambda c: command.downgrade(schema._config(c), revision))
        await conn.commit()
