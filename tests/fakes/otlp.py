"""An OpenTelemetry collector on loopback: OTLP/HTTP's POST /v1/traces, decoded with the
protocol's own protobuf messages (opentelemetry-proto), as a real collector receives them."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from fakes.loopback import LoopbackServer, Reply


@dataclass
class ReceivedSpan:
    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    kind: str
    attributes: dict[str, Any]
    status: str
    """"unset", "ok" or "error"."""
    status_message: str
    links: list[tuple[int, int]]
    """(trace id, span id) of each linked span."""
    start_ns: int
    end_ns: int
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


_STATUS = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


class FakeCollector(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        """Every export's body as received (decompressed): what left the process, byte for byte."""
        self.spans: list[ReceivedSpan] = []
        self.paths: list[str] = []

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT names (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if method != "POST" or path != "/v1/traces":
            return Reply(404, {"error": "not found"})
        if headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        request = ExportTraceServiceRequest()
        request.ParseFromString(raw)
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(self._span(span, resource, scope_spans.scope.name))
        with self.lock:
            self.paths.append(path)
            self.bodies.append(raw)
            self.spans.extend(received)
        return Reply(200, {})

    @staticmethod
    def _span(span: SpanMessage, resource: dict[str, Any], scope: str) -> ReceivedSpan:
        return ReceivedSpan(
            name=span.name,
            trace_id=int.from_bytes(span.trace_id, "big"),
            span_id=int.from_bytes(span.span_id, "big"),
            parent_span_id=int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None,
            kind=SpanMessage.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower(),
            attributes=_attributes(span.attributes),
            status=_STATUS[span.status.code],
            status_message=span.status.message,
            links=[(_int(link.trace_id), _int(link.span_id)) for link in span.links],
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            resource=resource,
            scope=scope,
        )

    def named(self, prefix: str) -> list[ReceivedSpan]:
        with self.lock:
            return [s for s in self.spans if s.name.startswith(prefix)]

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)
