"""Traces: with OpenTelemetry's standard variables set, a desk exports every run as a trace over
OTLP/HTTP to a collector (here one on loopback, decoding the protocol's own messages).

A run is one trace whose root span covers its life; each worker's attempt is a child of it,
and under an attempt a model call is a GenAI `chat` span (model, tokens, finish reason), an
action an `execute_tool` span, an undo's reversal a `compensate` span. A run handed work by
another links to that run's trace. What leaves the process passes the one Redactor: no secret
is in any byte the collector receives. Without the variables nothing is exported or loaded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fakes import slack_events as ev
from fakes import wait_until
from fakes.otlp import FakeCollector, ReceivedSpan

from agents import tracing
from scenarios.control_support import ask, say
from scenarios.test_cases import OPS, loop_config, script_the_fix, working_copy
from storage.models import Run, RunStatus


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCollector]:
    with FakeCollector() as fake:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "chatops-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # milliseconds between exports
        yield fake


def _of(run: Run, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    trace_id, _ = tracing.trace_ids(run.id or 0, run.created_at)
    return [s for s in spans if s.trace_id == trace_id]


def _children(parents: list[ReceivedSpan], spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    ids = {p.span_id for p in parents}
    return [s for s in spans if s.parent_span_id in ids]


async def test_a_case_is_a_trace_per_run_linked_by_the_handoff_with_model_tool_and_undo_spans(
    start_desk, tmp_path, collector
):
    work = working_copy(tmp_path)
    desk = await start_desk(loop_config(work), model=True)
    assert tracing.enabled()
    script_the_fix(desk.model)
    mention = ev.app_mention("<@UBOT> checkout is failing for everyone: fix it and ship it", channel=OPS)
    await desk.send.event(mention)

    async def both_done() -> list[Run] | None:
        runs = await desk.runs()
        done = len(runs) == 2 and all(r.status == RunStatus.succeeded and r.outcome_ts for r in runs)
        return runs if done else None

    await wait_until(both_done, 20, message="the case to finish")
    await say(desk, "undo", thread_ts=mention["event"]["ts"], channel=OPS)

    async def undone() -> list[Run] | None:
        runs = await desk.runs()
        return runs if all(r.status == RunStatus.rolled_back and r.undo_ts for r in runs) else None

    ops, deployer = await wait_until(undone, 20, message="the case to be undone")
    await desk.stop()  # the shutdown exports what is still buffered
    assert not tracing.enabled()
    spans = collector.received()
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    assert {s.resource["service.name"] for s in spans} == {"chatops-test"}

    # Each run: one trace, one root span (exported once, when it first ended) from its
    # creation to its end, with the run's identity.
    roots = {}
    for run in (ops, deployer):
        trace = _of(run, spans)
        [root] = [s for s in trace if s.parent_span_id is None]
        assert (root.trace_id, root.span_id) == tracing.trace_ids(run.id or 0, run.created_at)
        assert root.name == f"run #{run.id} ({run.agent})"
        assert root.attributes["chatops.run_id"] == run.id and root.attributes["chatops.case_id"] == ops.id
        assert root.attributes["chatops.status"] == "succeeded"  # how it first ended
        assert root.attributes["slack.channel_id"] == run.channel_id
        assert root.start_ns < root.end_ns
        roots[run.agent] = root
    # The deployer was handed its work by ops: its root links to ops's run.
    assert roots["deployer"].links == [(roots["ops"].trace_id, roots["ops"].span_id)]
    assert roots["deployer"].attributes["chatops.parent_run_id"] == ops.id

    # Attempts: ops worked, waited for the deployer, went on, and later undid the case.
    ops_trace = _of(ops, spans)
    attempts = _children([roots["ops"]], ops_trace)
    assert [a.name.split(" of ")[0] for a in attempts] == ["attempt 1", "attempt 2", "attempt 3"]
    assert [a.attributes["chatops.undo"] for a in attempts] == [False, False, True]
    assert all(a.attributes["chatops.worker"] for a in attempts)

    # Model calls: GenAI chat spans, as clients, with the model, the tokens and why it stopped.
    chats = [s for s in ops_trace if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert chats and all(c.kind == "client" and c.name == "chat fake-model" for c in chats)
    assert all(c.parent_span_id in {a.span_id for a in attempts} for c in chats)
    assert all(c.attributes["gen_ai.request.model"] == "fake-model" for c in chats)
    assert all(c.attributes["gen_ai.usage.input_tokens"] > 0 for c in chats)
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert chats[-1].attributes["gen_ai.response.finish_reasons"] == ["stop"]

    # Actions: an execute_tool span per step. The handoff's step ran twice: in the first
    # attempt it made the deployer's run and waited; in the second it read its outcome.
    tools = [s.attributes["gen_ai.tool.name"] for s in ops_trace if s.name.startswith("execute_tool ")]
    assert tools == ["reproduce", "fix_checkout", "run_tests", "transfer_to_deployer", "transfer_to_deployer"]
    handoffs = [s for s in ops_trace if s.name == "execute_tool transfer_to_deployer"]
    assert [h.attributes["chatops.outcome"] for h in handoffs] == ["waiting", "succeeded"]
    assert [h.attributes["chatops.handoff.run_id"] for h in handoffs] == [deployer.id, deployer.id]
    assert [h.parent_span_id for h in handoffs] == [attempts[0].span_id, attempts[1].span_id]
    deployed = [s.name for s in _of(deployer, spans) if s.name.startswith("execute_tool ")]
    assert deployed == ["execute_tool deploy_staging", "execute_tool promote"]
    assert all(s.status != "error" for s in spans)

    # The undo: the coordinator's attempt reversed every agent's steps, newest first.
    undo_attempt = attempts[-1]
    reversals = _children([undo_attempt], ops_trace)
    assert [s.name for s in reversals] == [
        "compensate promote",
        "compensate deploy_staging",
        "compensate fix_checkout",
    ]
    reversed_runs = [s.attributes["chatops.compensates.run_id"] for s in reversals]
    assert reversed_runs == [deployer.id, deployer.id, ops.id]
    assert all(s.attributes["chatops.outcome"] == "undone" for s in reversals)


SHOP_TOKEN = "shop-secret-7f3a9c1e"
FAILING = """
[[agents]]
name = "ops"
default = true
actions = ["sync_shop"]

[[actions]]
name = "sync_shop"
description = "Check the shop's sync"
kind = "command"
read_only = true
env = ["SHOP_TOKEN"]
run = 'echo "sync failed: token $SHOP_TOKEN refused" >&2; exit 3'
"""


async def test_a_failed_action_is_an_error_span_and_no_secret_reaches_the_collector(
    start_desk, collector, monkeypatch
):
    monkeypatch.setenv("SHOP_TOKEN", SHOP_TOKEN)
    desk = await start_desk(FAILING, model=True)
    desk.model.call("sync_shop").answer(f"The sync failed; the token {SHOP_TOKEN} was refused.")
    await ask(desk, "sync the shop")
    run = await desk.only_run()
    assert run.status == RunStatus.failed
    await desk.stop()

    [failed] = collector.named("execute_tool sync_shop")
    assert failed.status == "error" and failed.attributes["error.type"] == "ActionError"
    assert "sync_shop exited with status 3" in failed.status_message
    assert "token [redacted] refused" in failed.status_message
    [root] = collector.named(f"run #{run.id} ")
    assert root.attributes["chatops.status"] == "failed"
    # Not one byte of what left the process holds the secret or the bot's token.
    assert collector.bodies
    for body in collector.bodies:
        assert SHOP_TOKEN.encode() not in body
        assert b"xoxb-test" not in body


async def test_without_the_variables_nothing_is_traced(start_desk, monkeypatch):
    monkeypatch.setenv("SHOP_TOKEN", SHOP_TOKEN)
    desk = await start_desk(FAILING, model=True)
    desk.model.answer("The shop looks fine.")
    await ask(desk, "how is the shop?")
    assert (await desk.only_run()).status == RunStatus.succeeded
    assert not tracing.enabled()


def test_a_process_without_tracing_never_loads_the_sdk():
    code = (
        "import sys, bot.cli, bot.runner, bot.services, agents.loop, agents.executor, agents.mcp\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
