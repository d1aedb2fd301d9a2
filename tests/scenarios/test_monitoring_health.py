"""What an operator's probes read from a real `chatops serve`: /healthz turns 503 while the
database is unreachable and 200 again when it is back (the process stays up and goes on
working); /metrics counts what happened, and the counts match the fake Slack's log and the
database.
"""

from __future__ import annotations

import asyncio
import json
import resource
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from fakes import FakeModel, FakeSlack, wait_until
from fakes import slack_events as ev
from fakes.slack_events import Delivery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlmodel import col

from scenarios.faults_support import (
    STOP_LIMIT,
    ChatopsProcess,
    Outside,
    Processes,
    environment,
    libpq,
    outside,
    postgres_url,
    sqlite_url,
)
from storage.models import FINAL_STATUSES, Run, RunStatus, Step, StepKind, StepStatus
from storage.runs import PENDING


async def _exited(proc: ChatopsProcess) -> AssertionError:
    """The process stopped answering: wait for it to go, and say why from its log."""
    code = await asyncio.to_thread(proc.proc.wait, STOP_LIMIT)
    return AssertionError(f"chatops serve exited ({code}):\n{proc.log_tail(15)}")


async def _healthz(proc: ChatopsProcess) -> tuple[int, dict]:
    try:
        status, body = await proc.get("/healthz")
    except (aiohttp.ClientError, OSError):
        raise await _exited(proc) from None
    return status, json.loads(body)


async def _deliver(proc: ChatopsProcess, event: dict, **kwargs: Any) -> Delivery:
    sender = proc.sender()
    try:
        return await sender.event(event, **kwargs)
    except (aiohttp.ClientError, OSError):
        raise await _exited(proc) from None
    finally:
        await sender.close()


@pytest.mark.parametrize("workers", [True, False], ids=["serve", "serve --no-workers"])
async def test_healthz_is_503_while_the_database_is_unreachable_and_200_once_it_is_back(
    processes: Processes, fake_slack: FakeSlack, pg_database: str, workers: bool
):
    name = make_url(pg_database).database
    admin_url = make_url(postgres_url()).set(database="postgres").render_as_string(hide_password=False)
    split = [] if workers else ["--no-workers"]
    proc = await processes.serve(environment(slack=fake_slack, database_url=pg_database), *split)
    mention = ev.app_mention("<@UBOT> create a ticket for the database outage")
    status, report = await _healthz(proc)
    assert status == 200 and report["database"] == "ok", report

    async with await psycopg.AsyncConnection.connect(libpq(admin_url), autocommit=True) as admin:
        # The database goes away: every connection is cut and no new one is accepted.
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )

        async def unhealthy() -> dict | None:
            status, report = await _healthz(proc)
            return report if status == 503 else None

        report = await wait_until(unhealthy, 10, message="/healthz to answer 503")
        assert report["ok"] is False and report["database"] == "unreachable", report
        # A request now cannot be stored: it is refused, so that Slack delivers it again.
        refused = await _deliver(proc, mention)
        assert refused.status >= 500, refused
        # The process rides the outage out: its workers poll every 50 ms, and it keeps answering.
        for _ in range(20):
            status, report = await _healthz(proc)
            assert status == 503, report
            await asyncio.sleep(0.05)

        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    async def healthy() -> dict | None:
        status, report = await _healthz(proc)
        return report if status == 200 else None

    report = await wait_until(healthy, 15, message="/healthz to answer 200 again")
    assert report["database"] == "ok" and report["workers"]["alive"] is workers, report
    # Slack's retry of the refused request is taken now (once), and its run is worked.
    assert (await _deliver(proc, mention, retry_num=1)).status == 200
    async with outside(pg_database) as seen:
        [run] = await wait_until(seen.runs, 10, message="the run")
        if workers:
            run = await seen.finished(run.id)
            assert run.status == RunStatus.succeeded
        else:
            assert run.status == RunStatus.queued  # for the worker processes
    assert proc.stop() == 0


async def _wait_health(proc: ChatopsProcess, status: int, what: str, timeout: float = 15) -> dict:
    async def answered() -> dict | None:
        got, report = await _healthz(proc)
        return report if got == status else None

    return await wait_until(answered, timeout, message=f"/healthz to answer {status} ({what})")


async def test_healthz_is_503_while_postgresql_is_read_only_and_200_once_it_takes_writes_again(
    processes: Processes, fake_slack: FakeSlack, pg_database: str
):
    """Every read still works on a read-only database (a standby, or default_transaction_read_only):
    only a write shows that no request can be stored."""
    name = make_url(pg_database).database
    admin_url = make_url(postgres_url()).set(database="postgres").render_as_string(hide_password=False)
    proc = await processes.serve(environment(slack=fake_slack, database_url=pg_database))
    mention = ev.app_mention("<@UBOT> create a ticket for the read-only database")
    assert (await _healthz(proc))[1]["database"] == "ok"

    async with await psycopg.AsyncConnection.connect(libpq(admin_url), autocommit=True) as admin:

        async def every_new_session_read_only(read_only: bool) -> None:
            setting = (
                "SET default_transaction_read_only = on"
                if read_only
                else "RESET default_transaction_read_only"
            )
            await admin.execute(f'ALTER DATABASE "{name}" {setting}')
            # Sessions take the setting when they start: the pooled ones are cut, and reconnect.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )

        await every_new_session_read_only(True)
        report = await _wait_health(proc, 503, "the database refuses writes")
        assert report["ok"] is False and report["database"] == "read-only", report
        assert report["paused"] == []  # reads still answer
        refused = await _deliver(proc, mention)
        assert refused.status >= 500, refused  # not stored: Slack delivers it again

        await every_new_session_read_only(False)

    report = await _wait_health(proc, 200, "the database takes writes again")
    assert report["database"] == "ok", report
    assert (await _deliver(proc, mention, retry_num=1)).status == 200
    async with outside(pg_database) as seen:
        [run] = await wait_until(seen.runs, 10, message="the run")
        assert (await seen.finished(run.id)).status == RunStatus.succeeded
    assert proc.stop() == 0


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux's prlimit")
async def test_healthz_is_503_while_the_disk_refuses_sqlite_writes_and_200_once_it_takes_them(
    processes: Processes, fake_slack: FakeSlack, tmp_path: Path
):
    """The disk refuses the process's writes, for root too: its file-size limit is set to 0
    (as a full disk, every write(2) to a file fails; Python ignores SIGXFSZ), while reads go on."""
    url = sqlite_url(tmp_path / "chatops.db")
    proc = await processes.serve(environment(slack=fake_slack, database_url=url))
    assert (await _healthz(proc))[1]["database"] == "ok"
    limits = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, limits[1]))
    try:
        report = await _wait_health(proc, 503, "the disk refuses writes")
    finally:
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, limits)
    assert report["ok"] is False, report
    assert report["database"].startswith("not writable: "), report
    assert "I/O" in report["database"] or "full" in report["database"], report
    report = await _wait_health(proc, 200, "the disk takes writes again")
    assert report["database"] == "ok", report
    assert (await _deliver(proc, ev.app_mention("<@UBOT> find tickets"))).status == 200
    assert proc.stop() == 0


METRICS_CONFIG = """
[[agents]]
name = "ops"
default = true
actions = ["ticket_create", "deploy"]

[[actions]]
name = "deploy"
description = "Deploy to production"
kind = "command"
params = { service = "string" }
run = "true"
undo = "true"
risk = "high"
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the Prometheus text, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _wait_finished(seen: Outside, ts: str) -> Run:
    async def done() -> Run | None:
        runs = [r for r in await seen.runs() if r.thread_ts == ts]
        if runs and runs[0].status in FINAL_STATUSES and runs[0].outcome_ts not in (None, PENDING):
            return runs[0]
        return None

    return await wait_until(done, 15, message=f"the run in thread {ts}")


async def test_metrics_count_what_happened(
    processes: Processes, fake_slack: FakeSlack, fake_model: FakeModel, tmp_path: Path
):

    config = tmp_path / "chatops.toml"
    config.write_text(METRICS_CONFIG)
    url = sqlite_url(tmp_path / "chatops.db")
    model = fake_model
    model.call("ticket_create", {"title": "Kept"}).answer("Created it.")
    model.call("ticket_create", {"title": "Undone later"}).answer("Created it.")
    model.call("ticket_create", {"title": "Rolled back"}).fail(500, times=2)
    model.call("deploy", {"service": "api"})
    fake_slack.fail("chat.postMessage", status=429, retry_after=0)  # the first status message
    proc = await processes.serve(
        environment(
            slack=fake_slack,
            model=model,
            database_url=url,
            config=config,
            CHATOPS_MODEL_RETRIES=1,
            CHATOPS_MODEL_OUTAGE_MINUTES=0,  # the third run gives up on the model at once
        )
    )

    async with outside(url) as seen:
        threads = []
        for text in ("open a ticket", "open another", "open a third", "deploy the api"):
            mention = ev.app_mention(f"<@UBOT> {text}")
            threads.append(mention["event"]["ts"])
            assert (await _deliver(proc, mention)).status == 200
            if text != "deploy the api":
                await _wait_finished(seen, threads[-1])
        assert (await _deliver(proc, ev.thread_reply("undo", thread_ts=threads[1]))).status == 200

        async def settled() -> bool:
            runs = await seen.runs()
            undone = next(r for r in runs if r.thread_ts == threads[1])
            deploy = next((r for r in runs if r.thread_ts == threads[3]), None)
            return bool(
                undone.undo_ts not in (None, PENDING)
                and deploy is not None
                and deploy.status == RunStatus.waiting
                and len(fake_slack.thread("C1", threads[3])) == 2  # status and approval request
            )

        await wait_until(settled, 15, message="the undo and the approval request")
        runs = await seen.runs()
        steps = await seen.rows(Step)
        action_steps = await seen.rows(Step, col(Step.kind) == StepKind.action)

        async def slack_calls_counted() -> bool:
            # The presenter may still be finishing a status edit in the background: its call
            # reaches the fake Slack a moment before the server counts its answer.
            m = _samples((await proc.get("/metrics"))[1])
            return all(
                m.get(("chatops_slack_api_calls_total", (("method", method), ("outcome", "ok"))), 0.0)
                == len(fake_slack.calls_to(method, ok=True))
                for method in ("chat.postMessage", "chat.update", "reactions.add")
            )

        await wait_until(slack_calls_counted, 15, message="the Slack calls to be counted")
        status, text = await proc.get("/metrics")
    assert status == 200
    m = _samples(text)

    def value(name: str, **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0)

    assert [r.status for r in runs] == [
        RunStatus.succeeded,
        RunStatus.rolled_back,  # undone
        RunStatus.rolled_back,  # the model failed: rolled back automatically
        RunStatus.waiting,  # for an approval
    ]
    assert value("chatops_requests_total", kind="mention") == 4
    # The undone run reached a final status twice: succeeded, then rolled back.
    assert value("chatops_runs_finished_total", agent="ops", status="succeeded") == 2
    assert value("chatops_runs_finished_total", agent="ops", status="rolled_back") == 2
    assert value("chatops_runs_finished_total", agent="ops", status="failed") == 0
    assert value("chatops_undos_total", agent="ops") == 1
    assert value("chatops_rollbacks_total", agent="ops") == 1
    model_ok = [s for s in steps if s.kind == StepKind.model and s.status == StepStatus.succeeded]
    model_failed = [s for s in steps if s.kind == StepKind.model and s.status == StepStatus.failed]
    performed = [s for s in action_steps if s.status in (StepStatus.succeeded, StepStatus.compensated)]
    assert (len(model_ok), len(model_failed), len(performed)) == (6, 1, 3)
    assert value("chatops_step_seconds_count", kind="model") == len(model_ok)
    assert value("chatops_step_seconds_count", kind="action") == len(performed)
    assert value("chatops_model_seconds_count", model="fake-model") == len(model_ok) + len(model_failed)
    prompt, completion = sum(r.prompt_tokens for r in runs), sum(r.completion_tokens for r in runs)
    assert value("chatops_model_tokens_total", agent="ops", type="prompt") == prompt > 0
    assert value("chatops_model_tokens_total", agent="ops", type="completion") == completion > 0
    for method in ("chat.postMessage", "chat.update", "reactions.add"):
        ok = len(fake_slack.calls_to(method, ok=True))
        assert value("chatops_slack_api_calls_total", method=method, outcome="ok") == ok > 0, method
    assert value("chatops_slack_rate_limited_total") == 1
    assert value("chatops_queue_depth") == 0
    assert value("chatops_runs_active", status="waiting") == 1
    assert value("chatops_runs_active", status="running") == 0
    assert value("chatops_runs_active", status="queued") == 0
    assert value("chatops_approvals_waiting") == 1
    assert proc.stop() == 0
