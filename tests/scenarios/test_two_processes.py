"""Two `chatops serve` processes on one database: deliveries and runs are still taken once."""

from __future__ import annotations

import shlex

from fakes import slack_events as ev

from storage.models import RunStatus


def _slow_action_config(log_path: str) -> str:
    target = shlex.quote(log_path)
    return f"""
[[agents]]
name = "ops"
default = true
actions = ["slow_job"]

[[actions]]
name = "slow_job"
description = "A job that takes a while"
kind = "command"
params = {{ name = "string" }}
run = '''
echo "start $CHATOPS_RUN_ID {{{{ name }}}}" >> {target}
sleep 3
echo "end {{{{ name }}}}" >> {target}
'''
undo = "true"
timeout = 20
"""


async def test_a_retry_delivered_to_the_other_process_is_not_a_second_run(start_desk):
    first = await start_desk()
    second = await start_desk()
    mention = ev.app_mention("<@UBOT> create a ticket for the load balancer")
    assert (await first.send.event(mention)).status == 200
    assert (await second.send.event(mention, retry_num=1)).status == 200
    message = ev.channel_message(mention["event"]["text"], ts=mention["event"]["ts"])
    assert (await second.send.event(message)).status == 200

    await first.only_run()
    await first.settled()
    await second.settled()
    assert len(await first.requests()) == 1
    assert len(await first.tickets()) == 1
    assert len(first.slack.thread("C1", mention["event"]["ts"])) == 2


async def test_a_long_action_keeps_its_lease_and_runs_once(start_desk, tmp_path):
    log = tmp_path / "jobs.log"
    config = _slow_action_config(str(log))
    # The action (3 s) outlives the lease (1 s) three times over; only heartbeats keep it.
    first = await start_desk(config, chatops_lease_seconds=1.0)
    second = await start_desk(config, chatops_lease_seconds=1.0)
    await first.send.event(ev.app_mention("<@UBOT> slow_job name=backup"))

    run = await first.only_run(timeout=20)
    await second.settled()
    assert run.status == RunStatus.succeeded
    assert run.attempts == 1  # heartbeats kept the lease; the other process never took the run
    assert log.read_text() == f"start {run.id} backup\nend backup\n"
