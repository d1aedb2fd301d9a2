"""Schema migrations (Alembic): a database made by chatops 0.1.0 upgrades in place and keeps
every row, on SQLite and PostgreSQL; every revision leaves the schema exactly as the models
say; ids are never reused after the upgrade; processes refuse a database behind head.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg.types.json import Json
from scenarios.faults_support import fresh_database, libpq
from sqlalchemy import text
from sqlmodel import SQLModel

from storage import schema
from storage.engine import Database
from storage.models import Ticket, TicketBase
from storage.schema import SchemaOutOfDate
from storage.tickets import create_ticket, delete_ticket

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE_SQLITE = FIXTURES / "release_0_1_0.sqlite.sql"
RELEASE_POSTGRES = FIXTURES / "release_0_1_0.postgres.sql"
TABLES = (
    "requests",
    "runs",
    "steps",
    "tickets",
    "ticket_comments",
    "action_receipts",
    "processed_events",
    "audit_events",
    "controls",
)


def _release_sqlite(path: Path) -> None:
    """A database exactly as chatops 0.1.0 left it (schema and rows of a console session)."""
    conn = sqlite3.connect(path)
    conn.executescript(RELEASE_SQLITE.read_text())
    conn.close()


def _columns(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return {t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")] for t in TABLES}
    finally:
        conn.close()


# The columns 0.1.0's tables had: later revisions add columns, never drop or change these.
RELEASE_COLUMNS: dict[str, list[str]] = {}


def _sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the 0.1.0 tables, in 0.1.0's columns."""
    if not RELEASE_COLUMNS:
        reference = path.with_name("columns-reference.db")
        _release_sqlite(reference)
        RELEASE_COLUMNS.update(_columns(reference))
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT {', '.join(RELEASE_COLUMNS[t])} FROM {t} ORDER BY 1").fetchall()
            for t in TABLES
        }
    finally:
        conn.close()


async def _differences(db: Database) -> list[Any]:
    """What Alembic's autogenerate would still change: nothing, when the revisions and the
    models agree."""

    def compare(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(compare)


@pytest.fixture
async def release_db(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "release.db"
    _release_sqlite(path)
    db = Database(f"sqlite:///{path}")
    try:
        yield db, path
    finally:
        await db.dispose()


async def test_a_database_of_release_0_1_0_upgrades_in_place_and_keeps_every_row(release_db) -> None:
    db, path = release_db
    before = _sqlite_rows(path)
    assert sum(len(rows) for rows in before.values()) > 20, "the fixture should hold a session's rows"
    assert await db.schema_revision() is None

    await db.migrate()

    assert await db.schema_revision() == schema.head()
    assert _sqlite_rows(path) == before
    await db.check_schema()
    assert await _differences(db) == []
    # 0003: the comment knows its run again, from the journal step that wrote it.
    conn = sqlite3.connect(path)
    [(comment_run,)] = conn.execute("SELECT run_id FROM ticket_comments").fetchall()
    [(step_run,)] = conn.execute("SELECT run_id FROM steps WHERE name = 'ticket_comment'").fetchall()
    conn.close()
    assert comment_run == step_run == 2


async def test_migrate_is_idempotent(release_db) -> None:
    db, path = release_db
    await db.migrate()
    rows = _sqlite_rows(path)
    await db.migrate()
    assert _sqlite_rows(path) == rows and await db.schema_revision() == schema.head()


async def test_a_release_database_missing_indexes_gains_them(release_db) -> None:
    """0.1.0 itself upgraded older copies by adding indexes; the first revision does the same."""
    db, path = release_db
    conn = sqlite3.connect(path)
    for name in ("ix_runs_channel", "ix_runs_undelivered", "ix_steps_started"):
        conn.execute(f"DROP INDEX {name}")
    conn.commit()
    conn.close()
    await db.migrate()
    conn = sqlite3.connect(path)
    indexes = {
        name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='index'")
    }
    conn.close()
    assert {"ix_runs_channel", "ix_runs_undelivered", "ix_steps_started"} <= set(indexes)
    assert "WHERE" in indexes["ix_runs_undelivered"]  # the partial index keeps its condition


async def test_after_the_upgrade_a_deleted_ticket_id_is_never_given_again(release_db) -> None:
    db, _ = release_db
    await db.migrate()
    async with db.write() as session:
        first = await create_ticket(session=session, ticket=TicketBase(title="one"), run_id=None)
    async with db.write() as session:
        assert await delete_ticket(session=session, ticket_id=first.id or 0)
    async with db.write() as session:
        second = await create_ticket(session=session, ticket=TicketBase(title="two"), run_id=None)
    assert second.id is not None and first.id is not None and second.id > first.id


async def test_a_new_database_is_created_at_head_matching_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        with pytest.raises(SchemaOutOfDate, match=r"no chatops schema yet.*chatops migrate"):
            await db.check_schema()
        await db.migrate()
        await db.check_schema()
        assert await _differences(db) == []
        async with db.read() as session:
            sql = (
                await session.exec(text("SELECT sql FROM sqlite_master WHERE name = 'tickets'"))  # type: ignore[call-overload]
            ).one()[0]
        assert "AUTOINCREMENT" in sql
    finally:
        await db.dispose()


async def test_a_database_behind_head_or_unknown_is_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await db.migrate("0001")
        with pytest.raises(SchemaOutOfDate, match=r"revision 0001, behind .*run `chatops migrate` first"):
            await db.check_schema()
        async with db.write() as session:
            await session.exec(text("UPDATE alembic_version SET version_num = 'ffff'"))  # type: ignore[call-overload]
        with pytest.raises(SchemaOutOfDate, match="ffff, which this version of chatops does not know"):
            await db.check_schema()
    finally:
        await db.dispose()


async def test_each_revision_upgrades_a_database_made_by_the_one_before_with_data(tmp_path: Path) -> None:
    """Walk the chain one revision at a time from 0.1.0's data: rows survive every step."""
    path = tmp_path / "walk.db"
    _release_sqlite(path)
    rows = _sqlite_rows(path)
    db = Database(f"sqlite:///{path}")
    try:
        revisions = [s.revision for s in reversed(list(schema._script().walk_revisions()))]
        assert revisions[0] == "0001" and revisions[-1] == schema.head()
        for revision in revisions:
            await db.migrate(revision)
            assert await db.schema_revision() == revision
            assert _sqlite_rows(path) == rows
    finally:
        await db.dispose()


# PostgreSQL ---------------------------------------------------------------------------------


async def _load_release_postgres(url: str, sqlite_path: Path) -> None:
    """0.1.0's PostgreSQL schema (its pg_dump), with the rows of the SQLite fixture."""
    source = sqlite3.connect(sqlite_path)
    async with await psycopg.AsyncConnection.connect(libpq(url), autocommit=True) as conn:
        await conn.execute(RELEASE_POSTGRES.read_text())
        for table in (*TABLES, "meta"):
            cursor = source.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            types = {
                name: kind
                for name, kind in await (
                    await conn.execute(
                        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
                        (table,),
                    )
                ).fetchall()
            }
            for row in cursor.fetchall():
                values = [_as_postgres(types[n], v) for n, v in zip(names, row, strict=True)]
                marks = ", ".join(["%s"] * len(names))
                await conn.execute(f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({marks})', values)
        # The serial sequences stand where 0.1.0 left them: past a deleted ticket.
        for table in ("requests", "runs", "steps", "tickets", "ticket_comments", "audit_events"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 40)")
    source.close()


def _as_postgres(kind: str, value: Any) -> Any:
    """A value SQLite kept as text or 0/1, as PostgreSQL's column takes it."""
    if value is None:
        return None
    if kind == "boolean":
        return bool(value)
    if kind == "json":
        return Json(json.loads(value))
    return value


async def test_a_postgres_database_of_release_0_1_0_upgrades_and_keeps_its_rows(tmp_path: Path) -> None:
    sqlite_path = tmp_path / "release.db"
    _release_sqlite(sqlite_path)
    async with fresh_database() as url:
        await _load_release_postgres(url, sqlite_path)
        db = Database(url, pooled=False)
        try:

            async def counts() -> dict[str, int]:
                async with db.read() as session:
                    return {
                        t: (await session.exec(text(f'SELECT count(*) FROM "{t}"'))).one()[0]  # type: ignore[call-overload]
                        for t in TABLES
                    }

            before = await counts()
            assert before["tickets"] == 1 and before["steps"] > 5
            await db.migrate()
            await db.migrate()  # idempotent
            assert await db.schema_revision() == schema.head()
            assert await counts() == before
            assert await _differences(db) == []
            async with db.read() as session:
                identity = (
                    await session.exec(
                        text(  # type: ignore[call-overload]
                            "SELECT count(*) FROM information_schema.columns WHERE "
                            "table_schema = current_schema() AND column_name = 'id' AND is_identity = 'YES'"
                        )
                    )
                ).one()[0]
            assert identity == 9
            # Ids continue where the old sequence stood, never below it.
            async with db.write() as session:
                ticket = await create_ticket(session=session, ticket=TicketBase(title="after"), run_id=None)
            assert ticket.id == 41
        finally:
            await db.dispose()


async def test_a_new_postgres_database_is_created_at_head_matching_the_models() -> None:
    async with fresh_database() as url:
        db = Database(url, pooled=False)
        try:
            await db.migrate()
            assert await _differences(db) == []
            async with db.write() as session:
                row = Ticket(title="x")
                session.add(row)
            async with db.write() as session:
                await delete_ticket(session=session, ticket_id=row.id or 0)
            async with db.write() as session:
                again = await create_ticket(session=session, ticket=TicketBase(title="y"), run_id=None)
            assert again.id == (row.id or 0) + 1
        finally:
            await db.dispose()


async def test_0004_reads_what_waiting_runs_wait_for_from_their_sentence(tmp_path: Path) -> None:
    path = tmp_path / "waiting.db"
    _release_sqlite(path)
    db = Database(f"sqlite:///{path}")
    try:
        await db.migrate("0003")
        reasons = {
            1: "paused (all agents)",
            2: "paused (ops)",
            3: "needs a human: step 3 (deploy) was interrupted and its result is unknown; ...",
            4: "resource: ticket:1 (held by run #2)",
        }
        conn = sqlite3.connect(path)
        for run_id, reason in reasons.items():
            conn.execute("UPDATE runs SET status = 'waiting', wait_reason = ? WHERE id = ?", (reason, run_id))
        conn.commit()
        conn.close()
        await db.migrate("0004")
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT id, wait_kind, wait_on, wait_reason, crashes FROM runs ORDER BY id"
        ).fetchall()
        conn.close()
        assert [(i, kind, on, crashes) for i, kind, on, _, crashes in rows] == [
            (1, "paused", "*", 0),
            (2, "paused", "ops", 0),
            (3, "human", "3", 0),
            (4, "resource", "ticket:1", 0),
        ]
        assert [reason for *_, reason, _ in rows] == list(reasons.values())  # the sentences stay
    finally:
        await db.dispose()


async def test_0009_keeps_approvals_asked_before_it_deciding_as_they_did(tmp_path: Path) -> None:
    """An approval pending across the upgrade needs one Approve by whoever may control agents,
    the requester included, as before; the new tables start empty."""
    path = tmp_path / "approvals.db"
    _release_sqlite(path)
    db = Database(f"sqlite:///{path}")
    try:
        await db.migrate("0007")
        conn = sqlite3.connect(path)
        conn.execute(
            "INSERT INTO approvals (run_id, tool_call_id, action, arguments, reason, status, requested_at, "
            "expires_at, channel_id) VALUES (1, '2.0', 'deploy', '{}', 'its risk is high', 'pending', "
            "'2024-01-01 00:00:00', '2099-01-01 00:00:00', 'C1')"
        )
        conn.commit()
        conn.close()
        await db.migrate("0009")
        conn = sqlite3.connect(path)
        row = conn.execute("SELECT status, needed, approvers, self_approval FROM approvals").fetchone()
        empty = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("approval_decisions", "spend")
        ]
        conn.close()
        assert row == ("pending", 1, None, 1)
        assert empty == [0, 0]
    finally:
        await db.dispose()
