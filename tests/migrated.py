"""Migrated databases for tests, without migrating from nothing each time.

Migrating a new SQLite file to the newest revision costs ~0.2 s of CPU (Alembic copies
tables to alter them), and hundreds of tests need a migrated database. One is made per
session (per xdist worker, by the `migrated_sqlite` fixture) and copied: the same file in a
millisecond. The migrations themselves are tested in tests/storage/test_migrations.py and
tests/scenarios/test_migrate_command.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from storage.engine import Database


async def migrate(url: str) -> None:
    """`chatops migrate` on `url`, in this process (what runner.migrate does)."""
    database = Database(url, pooled=False)
    try:
        await database.migrate()
    finally:
        await database.dispose()


def migrate_now(url: str) -> None:
    """`migrate(url)` from synchronous code, whether or not an event loop runs on this thread:
    on a thread of its own, with a loop of its own; returns when it is done."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(migrate(url))
        except BaseException as e:  # handed back to the caller
            failure.append(e)

    thread = threading.Thread(target=run, name="migrate")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def copy_database(template: Path, target: Path) -> None:
    """A copy of the SQLite database `template` at `target` (which must not exist yet), made
    with SQLite's backup API: consistent whatever the template's WAL holds."""
    assert not target.exists(), f"{target} exists already"
    source, copy = sqlite3.connect(template), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def seed_sqlite(url: str, template: Path) -> bool:
    """A SQLite database file that does not exist yet starts as a copy of `template` (True);
    anything else (PostgreSQL, a file that exists) is left alone (False)."""
    database: Any = make_url(url)
    file = Path(database.database or "")
    if database.get_backend_name() != "sqlite" or not file.parent.is_dir() or file.exists():
        return False
    copy_database(template, file)
    return True
