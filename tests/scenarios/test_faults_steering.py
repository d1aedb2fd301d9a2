"""A reply that steers a run survives a SIGKILL: the restarted process's run reads it, once, and no
second run is started for it."""

from __future__ import annotations

from pathlib import Path

from fakes import FakeModel, FakeSlack, wait_until
from fakes import slack_events as ev

from scenarios.faults_support import Processes, environment, outside, sqlite_url
from storage.models import Request, RunStatus


async def _deliver(proc, body) -> None:
    sender = proc.sender()
    try:
        assert (await sender.event(body)).status == 200
    finally:
        await sender.close()


async def test_a_steering_reply_taken_before_a_kill_is_read_once_after_the_restart(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path
):
    url = sqlite_url(tmp_path / "chatops.db")
    env = environment(slack=fake_slack, model=fake_model, database_url=url, CHATOPS_LEASE_SECONDS=2)
    fake_model.call("ticket_create", {"title": "Restart web"})
    fake_model.answer("never delivered: the process is killed while the model thinks", held=True)
    fake_model.call("ticket_update", {"ticket_id": 1, "title": "Restart api"})
    fake_model.answer("Only the api, as you said.")
    first = await processes.serve(env)
    mention = ev.app_mention("<@UBOT> plan a restart of web")
    await _deliver(first, mention)
    async with outside(url) as seen:
        await wait_until(lambda: len(fake_model.requests) >= 2, 15, message="the model thinking")
        await _deliver(first, ev.thread_reply("use the api instead", thread_ts=mention["event"]["ts"]))

        async def steering() -> list[Request]:
            return [r for r in await seen.rows(Request) if r.steers_run_id is not None]

        [steer] = await wait_until(steering, 10, message="the reply stored as steering")
        assert steer.steer_seq is None  # not read yet
        first.kill()
        fake_model.release()

        second = await processes.serve(env)
        [run] = await seen.runs()
        run = await seen.finished(run.id, timeout=20)
        assert run.status == RunStatus.succeeded, run.error
        assert len(await seen.runs()) == 1  # the reply started no run of its own
        [steer] = await steering()
        assert steer.steer_seq is not None
    told = [
        str(m["content"])
        for r in fake_model.requests[2:3]
        for m in r["messages"]
        if m["role"] == "user" and "adds, while you work" in str(m["content"])
    ]
    assert told == ["(<@U1> adds, while you work:) use the api instead"]
    assert fake_model.remaining == 0 and fake_model.overrun == 0
    assert second.stop() == 0
