"""Whether the database takes a write now: the probe behind /healthz.

A database can answer every read and refuse every write (a full disk, a read-only mount, a
PostgreSQL standby or `default_transaction_read_only`); then no request can be stored, and
a health check that only reads says "ok" all the same. The probe writes, for real: it
upserts one row of `meta` (key `healthz`, the time of the probe) and commits.

Why that row: `meta` holds facts about the database itself, looked up by key
(`schema_version`); a `healthz` key is one more such fact (when a write last succeeded),
touches no table the product uses, and changes nothing else. Why it is cheap: one row of a
tiny table in a transaction of its own, queued like any other writer (behind the intake's
urgent writes, never ahead of them). On SQLite the write lock is held for the microseconds
of one upsert and the commit appends one page to the WAL without an fsync
(synchronous=NORMAL); on PostgreSQL it is one row lock and one commit, and the dead row
versions are vacuumed like any other. The caller decides how often it runs (the HTTP server
answers /healthz from a result at most a second old).
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from storage.clock import now
from storage.engine import Database
from storage.models import Meta

READ_ONLY = "read-only"
PROBE_KEY = "healthz"
PG_READ_ONLY_TRANSACTION = "25006"  # SQLSTATE read_only_sql_transaction


async def write_refusal(db: Database, *, timeout: float = 5.0) -> str | None:
    """None when a write commits now; otherwise why not: "read-only", or "not writable: <reason>"."""
    try:
        async with asyncio.timeout(timeout):
            async with db.write() as session:
                insert = sqlite.insert if db.is_sqlite else postgresql.insert
                when = now().isoformat()
                stmt = insert(Meta.__table__).values(key=PROBE_KEY, value=when)  # type: ignore[attr-defined]
                await session.exec(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": when}))
    except TimeoutError:
        return f"not writable: no write went through within {timeout:g} s"
    except Exception as e:  # broad on purpose: whatever stops the write is the answer
        return _reason(e)
    return None


def _reason(error: BaseException) -> str:
    cause: Any = getattr(error, "orig", None) or error.__cause__ or error
    if getattr(cause, "sqlstate", None) == PG_READ_ONLY_TRANSACTION:
        return READ_ONLY
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_READONLY:
        return READ_ONLY
    text = str(cause).strip().splitlines()
    return f"not writable: {text[0] if text else type(cause).__name__}"[:200]
