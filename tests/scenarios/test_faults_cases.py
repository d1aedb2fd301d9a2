"""A SIGKILL while a caller waits on its handoff's target loses nothing and repeats nothing: the
restarted process finishes the target, the caller reads its outcome, every step ran once."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeModel, FakeSlack, wait_until
from fakes import slack_events as ev

from scenarios.faults_support import Processes, environment, fresh_database, outside, sqlite_url
from scenarios.test_cases import BUGGY, FIXED, OPS, loop_config, working_copy
from storage.models import RunStatus, StepKind, StepStatus


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "chatops.db")
        return
    async with fresh_database() as url:
        yield url


async def test_a_kill_while_the_caller_waits_loses_nothing_and_repeats_nothing(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path, database_url: str
):
    work = working_copy(tmp_path)
    config = tmp_path / "chatops.toml"
    config.write_text(loop_config(work))
    env = environment(
        slack=fake_slack, model=fake_model, database_url=database_url, config=config, CHATOPS_LEASE_SECONDS=2
    )
    model = fake_model
    model.call("reproduce").call("fix_checkout").call("run_tests")
    model.call("transfer_to_deployer", {"brief": "Deploy the fix and promote it."})
    model.call("deploy_staging")
    model.answer("never delivered: the process is killed while the deployer thinks", held=True)
    model.call("promote").answer("Deployed and promoted.")
    model.answer("Fixed and shipped.")

    first = await processes.serve(env)
    sender = first.sender()
    mention = ev.app_mention("<@UBOT> fix the checkout and ship it", channel=OPS)
    assert (await sender.event(mention)).status == 200
    await sender.close()
    async with outside(database_url) as seen:
        await wait_until(lambda: len(model.requests) >= 6, 20, message="the deployer thinking after staging")
        [ops, deployer] = await seen.runs()
        assert (ops.status, ops.wait_kind) == (RunStatus.waiting, "handoff")
        first.kill()
        model.release()

        second = await processes.serve(env)
        deployer = await seen.finished(deployer.id, timeout=25)
        ops = await seen.finished(ops.id, timeout=25)
        assert ops.status == deployer.status == RunStatus.succeeded, (ops.error, deployer.error)
        assert len(await seen.runs()) == 2  # the handoff started one run, not two
        actions = [
            (s.name, s.status)
            for run in (ops, deployer)
            for s in await seen.steps(run.id)
            if s.kind == StepKind.action
        ]
        assert actions == [
            ("reproduce", StepStatus.succeeded),
            ("fix_checkout", StepStatus.succeeded),
            ("run_tests", StepStatus.succeeded),
            ("transfer_to_deployer", StepStatus.succeeded),
            ("deploy_staging", StepStatus.succeeded),
            ("promote", StepStatus.succeeded),
        ]
    assert (work / "prod" / "checkout.py").read_text() == FIXED
    # Promoted once: the backup it made is the old, buggy file (a second promote would back up the fix).
    assert (work / "prod" / ".checkout.prev").read_text() == BUGGY
    assert model.remaining == 0 and model.overrun == 0
    assert second.stop() == 0
