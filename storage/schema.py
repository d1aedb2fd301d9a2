"""The schema's version, kept by Alembic: upgrade to the newest revision, or tell how far behind.

Revisions live in `storage/migrations/versions`. The first one is the schema of chatops
0.1.0 (the release before migrations), written so that a database made by that release
passes through it unchanged; every later change to `storage/models.py` is a revision of
its own, tested by upgrading a database made by the revision before it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPT_LOCATION = "storage:migrations"
# Held for the migration's transaction on PostgreSQL, so two `chatops migrate` started at
# once (two release steps) run one after the other instead of racing on the DDL.
_PG_LOCK = 7_419_536_221


class SchemaOutOfDate(Exception):
    """The database is not at the revision this code needs."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        if current is None:
            what = "has no chatops schema yet"
        elif current in _known():
            what = f"is at schema revision {current}, behind this version's {head}"
        else:
            what = f"is at schema revision {current}, which this version of chatops does not know (newer?)"
        super().__init__(f"the database {what}: run `chatops migrate` first")


def _config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


@cache
def _known() -> frozenset[str]:
    return frozenset(s.revision for s in _script().walk_revisions())


def head() -> str:
    """The newest revision: what this code expects."""
    revision = _script().get_current_head()
    assert revision is not None
    return revision


def current(connection: Any) -> str | None:
    """The database's revision (a sync connection; through `AsyncConnection.run_sync`)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Any, revision: str = "head") -> None:
    """Upgrade to `revision` (the newest by default) on this sync connection, in its transaction."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
    command.upgrade(_config(connection), revision)
