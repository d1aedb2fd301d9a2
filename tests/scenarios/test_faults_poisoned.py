"""A poisoned run ends: a run whose step kills its `chatops serve` every time it is worked is
failed after CHATOPS_MAX_CRASHES crashes (3), rolled back per its agent's policy, with ❌ in the
thread and an alert, instead of resuming forever as "running".
"""

from __future__ import annotations

from pathlib import Path

from fakes import FakeModel, FakeSlack, free_port, wait_until
from fakes import slack_events as ev

from agents.config import load_config
from bot.surface import SlackSurface, make_client
from bot.watchdog import SlackHealth, Watchdog
from scenarios.faults_support import BOT_TOKEN, Processes, environment, outside, quoted, sqlite_url
from storage.models import RunStatus

CONFIG = """
[summary]
channel = "CALERTS"

[[agents]]
name = "ops"
default = true
actions = ["note", "restart_worker_host"]

[[actions]]
name = "note"
description = "Write a note"
kind = "command"
params = {{ text = "string" }}
run = '''printf '%s\\n' {{{{ text }}}} >> {notes}'''
undo = '''printf 'undone\\n' >> {notes}'''
timeout = 10

[[actions]]
name = "restart_worker_host"
description = "A step with a bug: it kills the process that runs it"
kind = "command"
run = "echo started >> {log}; kill -9 $PPID; sleep 5"
idempotent = true
undo = "true"
timeout = 10
"""


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_a_run_that_kills_its_worker_three_times_is_failed_rolled_back_and_alerted(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path
):
    notes, log = tmp_path / "notes.txt", tmp_path / "crashes.log"
    config = tmp_path / "chatops.toml"
    config.write_text(CONFIG.format(notes=quoted(notes), log=quoted(log)))
    url = sqlite_url(tmp_path / "chatops.db")
    env = environment(slack=fake_slack, model=fake_model, database_url=url, config=config)
    fake_model.call("note", {"text": "before the restart"})
    fake_model.call("restart_worker_host")

    proc = await processes.serve(env)
    mention = ev.app_mention("<@UBOT> restart the worker host")
    sender = proc.sender()
    assert (await sender.event(mention)).status == 200
    await sender.close()
    async with outside(url) as seen:
        [run] = await wait_until(seen.runs, 10, message="the run")
        for crash in range(1, 4):
            await wait_until(lambda n=crash: _count(log) >= n, 20, message=f"crash {crash}")
            await wait_until(lambda p=proc: not p.alive, 10, message="the process to die")
            # The supervisor starts it again, without waiting for it to look healthy: the
            # poisoned run may kill it again before /healthz is ever asked.
            proc = processes.start("serve", "--port", str(free_port()), "--host", "127.0.0.1", env=env)
        await proc.ready()  # the fourth process: the run is failed, not worked again
        run = await seen.finished(run.id, timeout=20)
        assert run.status == RunStatus.rolled_back
        assert run.crashes == 3
        assert "crashed its worker 3 times" in (run.error or "")
    assert len(log.read_text().splitlines()) == 3  # never a fourth time
    assert notes.read_text().splitlines() == ["before the restart", "undone"]
    ts = mention["event"]["ts"]
    await wait_until(lambda: "x" in fake_slack.reactions_on("C1", ts), message="❌ on the request")
    outcome = fake_slack.messages[run.outcome_ts]
    assert outcome.thread_ts == ts
    assert ":x:" in outcome.text and "crashed its worker 3 times" in outcome.text

    # The watchdog raises an alert about it (here run from the test, on the same database).
    client = make_client(BOT_TOKEN, fake_slack.url)
    surface = SlackSurface(client)
    async with outside(url) as seen:
        watchdog = Watchdog(seen.db, load_config(config), surface, SlackHealth(), max_crashes=3)
        holding = await watchdog.check()
    await surface.close()
    assert f"crashed:run:{run.id}" in holding, holding
    alerts = [m.text for m in fake_slack.top_level("CALERTS")]
    assert any(f"Run #{run.id} (ops) crashed its worker 3 times" in a for a in alerts), alerts
    assert proc.stop() == 0
