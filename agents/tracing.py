"""Traces with OpenTelemetry: each run is a trace; off, and free, unless configured.

When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the
process exports spans over OTLP/HTTP, configured by OpenTelemetry's standard variables
(`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`...). Otherwise
nothing is imported and every function here returns at once.

A run works in attempts (a worker claims it, it waits for a human, another worker takes it
again), so its trace cannot hang on one Python object: its ids are derived from the run
(`trace_ids`), every attempt's span is a child of the run's root span through those ids, and
the root span itself is exported when the run first ends, covering its life until then (an
undo asked after that is one more attempt in the same trace, marked `chatops.undo`). A model
call is a span following the GenAI semantic conventions (`gen_ai.*`: model, tokens, finish
reason), an action and a compensation are spans of their own; a run handed work by another
links to the run that handed it over. Every string attribute passes the process's Redactor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from agents.redaction import Redactor
from storage.models import Run

_tracer: Any = None
"""The OpenTelemetry tracer once configured; None: tracing is off."""
_provider: Any = None
_redactor = Redactor()
_attempt: ContextVar[Any] = ContextVar("chatops_attempt_span", default=None)
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("chatops_forced_ids", default=None)


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OTLP variables ask for traces."""
    env = os.environ if environ is None else environ
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(*, redactor: Redactor, exporter: Any = None, batch: bool = True) -> None:
    """Turn tracing on: spans go to `exporter` (default: OTLP/HTTP from the standard variables).

    Imported only here, so a process without tracing never loads OpenTelemetry."""
    global _tracer, _provider, _redactor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunIds(RandomIdGenerator):
        """Random ids, except for a run's root span, whose ids come from the run (trace_ids)."""

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced else super().generate_span_id()

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "chatops")})
    provider = TracerProvider(resource=resource, id_generator=RunIds())
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _provider, _tracer, _redactor = provider, provider.get_tracer("chatops"), redactor


def shutdown() -> None:
    """Export what is buffered and stop (the process is stopping)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def trace_ids(run_id: int, created_at: datetime) -> tuple[int, int]:
    """The run's trace id and root span id: the same in every process and attempt (the run's
    creation time makes them differ between databases that reuse run numbers)."""
    digest = hashlib.sha256(f"chatops:run:{run_id}:{_utc(created_at).isoformat()}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1


def _root_context(run: Run) -> Any:
    """The context of the run's root span, made from its ids (it is exported when the run ends)."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan

    return trace.set_span_in_context(NonRecordingSpan(_span_context(run)))


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as OpenTelemetry takes them: no None, strings cleaned of secrets."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        clean[key] = _redactor.clean(value) if isinstance(value, str) else value
    return clean


def _run_attributes(run: Run) -> dict[str, Any]:
    return {
        "chatops.run_id": run.id,
        "chatops.case_id": run.case,
        "chatops.agent": run.agent,
        "slack.team_id": run.team_id,
        "slack.channel_id": run.channel_id,
        "slack.thread_ts": run.thread_ts,
    }


@contextlib.contextmanager
def attempt(run: Run, *, worker: str) -> Iterator[None]:
    """One worker's attempt at the run: the parent of the spans it makes."""
    if _tracer is None:
        yield
        return
    attributes = _attributes(
        {
            **_run_attributes(run),
            "chatops.worker": worker,
            "chatops.attempt": run.attempts,
            "chatops.undo": bool(run.undone_by),
        }
    )
    with _tracer.start_as_current_span(
        f"attempt {run.attempts} of run #{run.id}", context=_root_context(run), attributes=attributes
    ) as span:
        token = _attempt.set(span)
        try:
            yield
        finally:
            _attempt.reset(token)


def run_ended(run: Run, *, parent: Run | None = None) -> None:
    """Export the run's root span, from its creation to its end (called once it is final)."""
    if _tracer is None:
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind

    links = []
    if parent is not None:  # handed work by another run: a link to that run's trace
        links.append(Link(_span_context(parent)))
    token = _forced_ids.set(trace_ids(run.id or 0, run.created_at))
    try:
        span = _tracer.start_span(
            f"run #{run.id} ({run.agent})",
            context=Context(),  # a root, whatever span is current (the attempt that ended it)
            kind=SpanKind.INTERNAL,
            attributes=_attributes(
                {
                    **_run_attributes(run),
                    "chatops.status": run.status,
                    "chatops.parent_run_id": run.parent_id,
                    "chatops.undone_by": run.undone_by,
                    "gen_ai.usage.input_tokens": run.prompt_tokens,
                    "gen_ai.usage.output_tokens": run.completion_tokens,
                }
            ),
            links=links,
            start_time=_nanos(run.created_at),
        )
    finally:
        _forced_ids.reset(token)
    span.end(end_time=_nanos(run.finished_at) if run.finished_at else None)


def _span_context(run: Run) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    trace_id, span_id = trace_ids(run.id or 0, run.created_at)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def _utc(at: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back without a zone."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _nanos(at: datetime) -> int:
    return int(_utc(at).timestamp() * 1_000_000_000)


class Span:
    """A span being made, or nothing when tracing is off (every method then does nothing)."""

    def __init__(self, span: Any = None) -> None:
        self._span = span
        self.settled = False
        """Its outcome is set: an exception leaving it is not recorded as an error."""

    def set(self, **attributes: Any) -> None:
        if self._span is not None:
            self._span.set_attributes(_attributes({k.replace("__", "."): v for k, v in attributes.items()}))

    def waiting(self, **attributes: Any) -> None:
        """The work waits (a run's step stays an intent until a human or another run answers):
        not a failure, though the exception that makes the run wait leaves the span."""
        self.settled = True
        self.set(chatops__outcome="waiting", **attributes)

    def failed(self, error: str, *, kind: str) -> None:
        """The span's work failed: `error` describes it, `kind` names the class of failure
        (`error.type`, kept low-cardinality: an exception's class name or a fixed word)."""
        self.settled = True
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, _redactor.clean(error)))
            self._span.set_attribute("error.type", kind)


@contextlib.contextmanager
def span(name: str, *, client: bool = False, **attributes: Any) -> Iterator[Span]:
    """A span under the current attempt (`gen_ai__usage__input_tokens=...` sets
    `gen_ai.usage.input_tokens`). Free when tracing is off. An exception leaving it marks it
    failed with the exception's class, unless the code said what happened (waiting, failed)."""
    if _tracer is None:
        yield Span()
        return
    from opentelemetry.trace import SpanKind

    clean = _attributes({k.replace("__", "."): v for k, v in attributes.items()})
    with _tracer.start_as_current_span(
        name,
        kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
        attributes=clean,
        record_exception=False,  # a traceback's text is not redacted: never exported
        set_status_on_exception=False,
    ) as made:
        wrapped = Span(made)
        try:
            yield wrapped
        except BaseException as e:
            if not wrapped.settled:
                wrapped.failed(type(e).__name__, kind=type(e).__name__)
            raise
