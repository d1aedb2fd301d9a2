"""`chatops migrate` upgrades the schema (a 0.1.0 database keeps its runs and tickets), and
`chatops serve` / `chatops worker` refuse to start on a database behind it, saying what to run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fakes import FakeSlack

from scenarios.faults_support import Processes, environment, sqlite_url
from storage import schema

RELEASE = Path(__file__).resolve().parents[1] / "storage" / "fixtures" / "release_0_1_0.sqlite.sql"


def test_serve_and_worker_refuse_a_database_without_the_schema(
    processes: Processes, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    env = environment(slack=fake_slack, database_url=sqlite_url(tmp_path / "new.db"))
    for command in (["serve", "--port", "0"], ["worker"]):
        done = processes.run(*command, env=env, migrate=False)
        assert done.returncode == 2, done.stderr
        assert "has no chatops schema yet: run `chatops migrate` first" in done.stderr
    assert fake_slack.calls_to("chat.postMessage") == []

    first = processes.run("migrate", env=env, migrate=False)
    assert first.returncode == 0, first.stderr
    assert f"upgraded the schema from nothing to revision {schema.head()}" in first.stdout
    again = processes.run("migrate", env=env, migrate=False)
    assert f"the schema is up to date at revision {schema.head()}" in again.stdout


def test_a_release_database_is_refused_then_migrated_keeping_its_runs_and_tickets(
    processes: Processes, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    path = tmp_path / "release.db"
    conn = sqlite3.connect(path)
    conn.executescript(RELEASE.read_text())
    runs = conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
    tickets = conn.execute("SELECT id, title FROM tickets ORDER BY id").fetchall()
    conn.close()
    env = environment(slack=fake_slack, database_url=sqlite_url(path))

    refused = processes.run("worker", env=env, migrate=False)
    assert refused.returncode == 2 and "run `chatops migrate` first" in refused.stderr

    done = processes.run("migrate", env=env, migrate=False)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall() == runs
    assert conn.execute("SELECT id, title FROM tickets ORDER BY id").fetchall() == tickets
    conn.close()
