"""`chatops pause` and `chatops resume`: the operator's emergency stop from where chatops runs,
as real `chatops` processes beside a running desk on the same database. No Slack call is
needed to stop the agents, runs in flight wait at their next step, a resume lets them go on,
and a daily cost cap's pause (which no workspace may lift when there are many) is lifted with
another cap's worth of room. Everything is audited as the operator.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from scenarios.control_support import actions_of, ask, audit, config, lines, paused_scopes, run_in
from scenarios.faults_support import Processes, environment, sqlite_url
from scenarios.test_control_budgets import _budgeted
from storage.models import Control, RunStatus


def _env(desk, tmp_path: Path) -> dict[str, str]:
    """The desk's database and configuration, and no Slack at all: the stop needs none."""
    env = environment(
        slack=desk.slack, database_url=sqlite_url(tmp_path / "chatops.db"), config=tmp_path / "chatops.toml"
    )
    return {k: v for k, v in env.items() if not k.startswith("SLACK_")}


async def _chatops(processes: Processes, env: dict[str, str], *args: str):
    """A `chatops` command to completion, off the event loop the desk runs on."""
    return await asyncio.to_thread(processes.run, *args, env=env, migrate=False)


async def test_pause_from_the_command_line_stops_a_run_in_flight_and_resume_lets_it_go_on(
    start_desk, processes, tmp_path
):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("append_line", {"line": "one"}, held=True)  # the run is mid-turn...
    desk.model.answer("Appended.")
    await ask(desk, "append one")
    [run] = await desk.runs()
    await run_in(desk, run.id, RunStatus.running)
    env = _env(desk, tmp_path)

    paused = await _chatops(processes, env, "pause", "ops", "--reason", "deploy freeze")
    assert paused.returncode == 0, paused.stderr
    assert "Agent ops is paused in every workspace" in paused.stdout
    assert "`chatops resume ops` lifts it" in paused.stdout

    desk.model.release()  # ...and the action it chose waits at the step boundary
    waiting = await run_in(desk, run.id, RunStatus.waiting, reason="paused")
    assert lines(notes) == [] and await actions_of(desk, waiting.id) == []
    [flag] = await desk.rows(Control)
    assert (flag.team_id, flag.scope, flag.by_user, flag.reason) == ("", "ops", "operator", "deploy freeze")
    assert await paused_scopes(desk) == {"ops"}
    again = await _chatops(processes, env, "pause", "ops")
    assert again.returncode == 0 and "already paused" in again.stdout

    resumed = await _chatops(processes, env, "resume", "ops")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed (ops). 1 waiting run continues." in resumed.stdout
    finished = await desk.finished(run.id)
    assert finished.status == RunStatus.succeeded and lines(notes) == ["one"]
    [pause] = await audit(desk, "pause")
    [resume] = await audit(desk, "resume")
    assert (pause.actor, pause.target) == ("operator", "agent:ops")
    assert pause.detail.startswith("from the command line") and pause.detail.endswith(": deploy freeze")
    assert (resume.actor, resume.target) == ("operator", "agent:ops")
    not_paused = await _chatops(processes, env, "resume", "ops")
    assert not_paused.returncode == 0 and "was not paused in every workspace" in not_paused.stdout


async def test_resume_from_the_command_line_lifts_a_daily_caps_pause_with_more_room(
    start_desk, processes, tmp_path
):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(_budgeted(notes, max_cost_per_day="0.05"), model=True)
    desk.model.call("append_line", {"line": "one"}).answer("Appended.")
    await ask(desk, "append one")
    [run] = await desk.runs()
    await run_in(desk, run.id, RunStatus.waiting, reason="paused")
    assert await paused_scopes(desk) == {"ops"}

    resumed = await _chatops(processes, _env(desk, tmp_path), "resume", "all")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed (ops)." in resumed.stdout
    assert "ops had paused itself at its daily cap (max_cost_per_day $0.05)" in resumed.stdout
    assert "it may spend another $0.05 today" in resumed.stdout
    finished = await desk.finished(run.id)
    assert finished.status == RunStatus.succeeded and lines(notes) == ["one"]
    assert [e.actor for e in await audit(desk, "budget")] == ["system"]


async def test_an_unknown_agent_or_an_old_schema_is_refused_and_changes_nothing(
    start_desk, processes, tmp_path
):
    desk = await start_desk(config(tmp_path / "notes.txt"))
    env = _env(desk, tmp_path)
    typo = await _chatops(processes, env, "pause", "opz")
    assert typo.returncode == 2
    assert "chatops pause: no agent named 'opz' (did you mean 'ops'?" in typo.stderr
    assert await desk.rows(Control) == [] and await audit(desk) == []

    old = tmp_path / "old.db"
    sqlite3.connect(old).close()
    refused = await _chatops(processes, {**env, "DATABASE_URL": sqlite_url(old)}, "pause", "all")
    assert refused.returncode == 2 and "run `chatops migrate` first" in refused.stderr
