"""agents.tracing with the OpenTelemetry SDK's in-memory exporter: spans as the SDK made them
(the collector's view is tests/scenarios/test_tracing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from scenarios.control_support import ask

from agents import tracing
from agents.redaction import Redactor
from storage.models import RunStatus

CONFIG = """
[[agents]]
name = "ops"
default = true
actions = ["check_disk", "restart_web"]

[[actions]]
name = "check_disk"
description = "Show the disk usage"
kind = "command"
run = "echo 'disk 41% used'"
read_only = true

[[actions]]
name = "restart_web"
description = "Restart the web service"
kind = "command"
run = "echo restarted"
undo = "echo stopped again"
risk = "medium"
"""


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(redactor=Redactor(["hunter2-secret"]), exporter=exporter, batch=False)
    yield exporter
    tracing.shutdown()


def _named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


async def test_a_runs_spans_as_the_sdk_made_them(start_desk, spans):
    desk = await start_desk(CONFIG, model=True)
    assert tracing.enabled()  # the desk kept the tracing it found instead of configuring its own
    desk.model.call("check_disk").call("restart_web").answer("Disk is fine; web restarted.")
    await ask(desk, "check the disk and restart web")
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded

    [root] = _named(spans, "run #")
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    assert (root.context.trace_id, root.context.span_id) == tracing.trace_ids(run.id or 0, run.created_at)
    assert root.attributes is not None and root.attributes["chatops.agent"] == "ops"
    assert root.attributes["gen_ai.usage.input_tokens"] == run.prompt_tokens > 0
    [attempt] = _named(spans, "attempt ")
    assert attempt.parent is not None and attempt.parent.span_id == root.context.span_id
    tools = _named(spans, "execute_tool ")
    assert [t.name for t in tools] == ["execute_tool check_disk", "execute_tool restart_web"]
    assert all(t.parent is not None and t.parent.span_id == attempt.context.span_id for t in tools)
    risks = [(t.attributes or {})["chatops.action.risk"] for t in tools]
    assert risks == ["low", "medium"]
    assert [(t.attributes or {})["chatops.action.reversible"] for t in tools] == [True, True]
    assert all(t.end_time and t.start_time and t.end_time >= t.start_time for t in tools)
    chats = _named(spans, "chat ")
    assert len(chats) == 3 and all(c.kind == SpanKind.CLIENT for c in chats)
    assert [(c.attributes or {})["gen_ai.response.finish_reasons"] for c in chats] == [
        ("tool_calls",),
        ("tool_calls",),
        ("stop",),
    ]


async def test_a_model_that_refuses_the_request_marks_its_span_failed(start_desk, spans):
    desk = await start_desk(CONFIG, model=True)
    desk.model.fail(400, error_type="invalid_request_error")
    await ask(desk, "how is the disk?")
    failed = await desk.only_run()
    assert failed.status == RunStatus.failed
    [refused] = _named(spans, "chat ")
    assert refused.status.status_code == StatusCode.ERROR
    assert (refused.attributes or {})["error.type"] == "model_refused"
    assert "gen_ai.response.finish_reasons" not in (refused.attributes or {})
    [root] = _named(spans, "run #")
    assert (root.attributes or {})["chatops.status"] == "failed"


def test_every_string_attribute_and_error_passes_the_redactor(spans):
    with tracing.span("execute_tool leak", chatops__note="token hunter2-secret here") as span:
        span.failed("it printed hunter2-secret", kind="ActionError")
    [made] = spans.get_finished_spans()
    assert (made.attributes or {})["chatops.note"] == "token [redacted] here"
    assert made.status.description == "it printed [redacted]"


def test_an_exception_leaving_a_span_marks_it_failed_unless_it_only_waits(spans):
    with pytest.raises(RuntimeError), tracing.span("execute_tool boom"):
        raise RuntimeError("a bug with hunter2-secret in its message")
    with pytest.raises(LookupError), tracing.span("execute_tool waits") as span:
        span.waiting(chatops__handoff__run_id=7)
        raise LookupError("the run waits")
    boom, waits = spans.get_finished_spans()
    assert boom.status.status_code == StatusCode.ERROR
    assert (boom.attributes or {})["error.type"] == "RuntimeError"
    assert "hunter2" not in (boom.status.description or "") and not boom.events  # no traceback exported
    assert waits.status.status_code == StatusCode.UNSET
    assert (waits.attributes or {})["chatops.outcome"] == "waiting"


def test_a_runs_trace_ids_are_the_same_everywhere_and_differ_between_runs():
    created = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
    naive = created.replace(tzinfo=None)  # as SQLite hands it back
    assert tracing.trace_ids(42, created) == tracing.trace_ids(42, naive)
    assert tracing.trace_ids(42, created) != tracing.trace_ids(43, created)
    assert tracing.trace_ids(42, created) != tracing.trace_ids(42, created.replace(microsecond=0))


def test_when_off_a_span_does_nothing_and_costs_nothing():
    assert not tracing.enabled()
    with tracing.span("chat m", gen_ai__request__model="m") as span:
        span.set(anything=1)
        span.failed("x", kind="y")
    assert span._span is None
