"""`chatops replay RUN` runs a recorded request again against today's configuration and model,
in a dry run: the calls the recorded run made get the results they got then, any other is not
run, and nothing happens anywhere (no ticket, no command, no Slack message, no row in the real
database). Run as a user would: the installed console script, against the database a desk used.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import func, select

from scenarios.control_support import ask, config, lines, run_for
from storage.engine import Database
from storage.models import Request, Run, Step, Ticket


def _chatops(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "CHATOPS_")) and k not in ("DATABASE_URL", "PORT")
    }
    env.update(variables, COLUMNS="160")
    script = Path(sys.executable).with_name("chatops")
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=120)


async def _counts(url: str) -> dict[str, int]:
    db = Database(url, pooled=False)
    try:
        async with db.read() as session:
            return {
                model.__name__: (await session.exec(select(func.count()).select_from(model))).one()
                for model in (Request, Run, Step, Ticket)
            }
    finally:
        await db.dispose()


async def test_replay_shows_a_recorded_runs_calls_again_and_runs_none(start_desk, tmp_path):
    notes = tmp_path / "notes.txt"
    desk = await start_desk(config(notes), model=True)
    desk.model.call("ticket_create", {"title": "login bug"})
    desk.model.call("append_line", {"line": "checked the logs"})
    desk.model.answer("Filed the login bug and noted it.")
    ts = await ask(desk, "file the login bug and note that I checked the logs")
    run = await run_for(desk, ts)
    assert run.status == "succeeded" and lines(notes) == ["checked the logs"]
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    await desk.stop()
    before, posted = await _counts(url), len(desk.slack.messages)
    assert before["Ticket"] == 1

    # Today's model makes the recorded calls again, then one the recorded run never made (a
    # high-risk deploy, which would have waited for an approval), and answers.
    desk.model.call("ticket_create", {"title": "login bug"})
    desk.model.call("append_line", {"line": "checked the logs"})
    desk.model.call("deploy", {"service": "api"})
    desk.model.answer("Filed, noted and deployed.")
    asked = len(desk.model.requests)
    result = await asyncio.to_thread(
        _chatops,
        "replay",
        f"#{run.id}",
        "--model",
        "newer-model",
        DATABASE_URL=url,
        CHATOPS_CONFIG=str(tmp_path / "chatops.toml"),
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=desk.model.url,
        CHATOPS_MODEL="fake-model",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Replay of run #{run.id} (agent ops)" in out
    assert "> file the login bug and note that I checked the logs" in out
    assert "original: fake-model" in out and "replay:   model newer-model" in out
    rows = out.splitlines()
    [first] = [r for r in rows if r.startswith("  1|")]
    assert first.count("ticket_create(title='login bug'") == 2, first  # side by side
    [second] = [r for r in rows if r.startswith("  2|")]
    assert second.count("append_line(line='checked the logs')") == 2, second
    [third] = [r for r in rows if r.startswith("  3|")]
    assert "(no call)" in third and "deploy(service='api')" in third
    assert out.count("[recorded]") == 2
    assert "[not run (dry run); needs approval]" in out
    assert "Filed, noted and deployed." in out and "Filed the login bug and noted it." in out
    assert "The replay made different tool calls (3 against 2); 2 recorded, 1 not run (dry run)." in out

    # The real model was asked (on the model given), and nothing happened anywhere.
    assert len(desk.model.requests) == asked + 4
    assert {r["model"] for r in desk.model.requests[asked:]} == {"newer-model"}
    assert lines(notes) == ["checked the logs"]  # no command ran: not the recorded one, nor deploy
    assert await _counts(url) == before  # no ticket, no run, no step, no request in the real tables
    assert len(desk.slack.messages) == posted  # nothing reached Slack
    assert not list(tmp_path.glob("chatops-dry-run-*"))


async def test_replay_of_an_unknown_run_says_so(start_desk, tmp_path):
    desk = await start_desk(model=False)
    await desk.stop()
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    result = await asyncio.to_thread(_chatops, "replay", "42", DATABASE_URL=url)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "chatops: there is no run #42 in this database."
