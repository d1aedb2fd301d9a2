"""The lookups that run on every request, undo, status and periodic job use indexes.

Checked on the plans SQLite chooses (`EXPLAIN QUERY PLAN`, without ANALYZE, as chatops
runs it), not on timings: a `SCAN` of a table that grows with history, or of a whole index
on it, is a full scan unless the index is partial; so is sorting every match to keep a few.
bench/growth.py times the same lookups with 100k runs stored.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import alerts, approvals, controls, requests, runs
from storage.clock import now
from storage.engine import Database
from storage.models import Run

GROWING = {"runs", "steps", "requests", "processed_events", "approvals", "audit_events", "tickets"}

Lookup = Callable[[AsyncSession], Awaitable[Any]]

LOOKUPS: dict[str, Lookup] = {
    "housekeeping: finished_without_outcome": lambda s: runs.finished_without_outcome(session=s),
    "housekeeping: unposted_approvals": lambda s: approvals.unposted_approvals(session=s),
    "watchdog: finished_since": lambda s: alerts.finished_since(
        session=s, since=now() - timedelta(minutes=15)
    ),
    "watchdog: model_failures_since": lambda s: alerts.model_failures_since(
        session=s, since=now() - timedelta(minutes=15)
    ),
    "watchdog: stuck_runs": lambda s: alerts.stuck_runs(session=s, before=now() - timedelta(minutes=10)),
    "undo: latest_run in a channel": lambda s: runs.latest_run(session=s, team_id="T1", channel_id="C1"),
    "undo: latest_run in a thread": lambda s: runs.latest_run(
        session=s, team_id="T1", channel_id="C1", thread_ts="1.000001"
    ),
    "intake: find_request": lambda s: requests.find_request(
        session=s, team_id="T1", channel_id="C1", ts="1.1"
    ),
    "intake: thread_has_runs": lambda s: requests.thread_has_runs(
        session=s, team_id="T1", channel_id="C1", thread_ts="1.1"
    ),
    "status: runs_in_flight": lambda s: runs.runs_in_flight(session=s),
    "status: runs_in_flight_in_scope (a channel)": lambda s: runs.runs_in_flight_in_scope(
        session=s, team_id="T1", channel_id="C1", requested_by=None
    ),
    "status: runs_in_flight_in_scope (a DM)": lambda s: runs.runs_in_flight_in_scope(
        session=s, team_id="T1", channel_id=None, requested_by="U1"
    ),
    "status: pending_approvals_in_scope (a channel)": lambda s: approvals.pending_approvals_in_scope(
        session=s, team_id="T1", channel_id="C1", requested_by=None
    ),
    "status: pending_approvals_in_scope (a DM)": lambda s: approvals.pending_approvals_in_scope(
        session=s, team_id="T1", channel_id=None, requested_by="U1"
    ),
    "controls: run_in_scope (a channel)": lambda s: runs.run_in_scope(
        session=s, run_id=5, team_id="T1", channel_id="C1", requested_by=None
    ),
    "controls: run_in_scope (a DM)": lambda s: runs.run_in_scope(
        session=s, run_id=5, team_id="T1", channel_id=None, requested_by="U1"
    ),
    "controls: run_with_message": lambda s: runs.run_with_message(
        session=s, run_id=5, team_id="T1", channel_id="C1", message_ts="1.2"
    ),
    "controls: approval_with_message": lambda s: approvals.approval_with_message(
        session=s, approval_id=5, team_id="T1", channel_id="C1", message_ts="1.2"
    ),
    "undo: undoable_runs in a channel": lambda s: runs.undoable_runs(
        session=s, team_id="T1", channel_id="C1"
    ),
    "status: pending_approvals": lambda s: approvals.pending_approvals(session=s),
    "status: all_controls": lambda s: controls.all_controls(session=s),
    "metrics: count_active": lambda s: runs.count_active(session=s),
    "worker: lease_holders": lambda s: runs.lease_holders(session=s),
    "presenter: run_ahead": lambda s: runs.run_ahead(
        session=s, run=Run(id=5, request_id=1, agent="ops", team_id="T1", channel_id="C1", thread_ts="1.1")
    ),
}

# Lookups whose matches are few by construction, so sorting them all is cheap.
FEW_MATCHES = {"housekeeping: unposted_approvals"}  # pending approvals without a message yet


@pytest.mark.parametrize("name", sorted(LOOKUPS))
async def test_the_lookup_reads_no_whole_table(db: Database, tmp_path: Path, name: str) -> None:
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            statements.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    async with db.read() as session:
        await LOOKUPS[name](session)
    assert statements, "the lookup sent no statement"

    con = sqlite3.connect(tmp_path / "chatops.db")
    try:
        partial = {
            index
            for index, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
            if sql and " WHERE " in sql.upper()
        }
        scans = []
        for sql, params in statements:
            for row in con.execute("EXPLAIN QUERY PLAN " + sql, params or ()).fetchall():
                detail = str(row[-1])
                m = re.match(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", detail)
                if m and m.group(1) in GROWING and m.group(2) not in partial:
                    scans.append(f"{detail}  in  {sql}")
                if detail.startswith("USE TEMP B-TREE") and " LIMIT " in sql and name not in FEW_MATCHES:
                    scans.append(f"{detail} (sorts every match for a few rows)  in  {sql}")
    finally:
        con.close()
    assert scans == []
