"""Prometheus metrics, shared by the runtime and the Slack layer (prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("chatops_requests_total", "Requests accepted, by kind", ["kind"], registry=REGISTRY)
RUNS_FINISHED = Counter(
    "chatops_runs_finished_total", "Runs that reached a final status", ["agent", "status"], registry=REGISTRY
)
UNDOS = Counter("chatops_undos_total", "Runs undone at a person's request", ["agent"], registry=REGISTRY)
ROLLBACKS = Counter(
    "chatops_rollbacks_total", "Failed runs rolled back automatically", ["agent"], registry=REGISTRY
)
STEP_SECONDS = Histogram(
    "chatops_step_seconds",
    "Duration of steps (model turns and actions)",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
MODEL_SECONDS = Histogram(
    "chatops_model_seconds",
    "Latency of model calls",
    ["model"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
TOKENS = Counter("chatops_model_tokens_total", "Model tokens", ["agent", "type"], registry=REGISTRY)
SLACK_CALLS = Counter(
    "chatops_slack_api_calls_total", "Slack Web API calls", ["method", "outcome"], registry=REGISTRY
)
SLACK_RATE_LIMITED = Counter(
    "chatops_slack_rate_limited_total", "Slack Web API answers with HTTP 429", registry=REGISTRY
)
QUEUE_DEPTH = Gauge("chatops_queue_depth", "Runs queued and not yet claimed", registry=REGISTRY)
RUNS_ACTIVE = Gauge("chatops_runs_active", "Runs queued, running or waiting", ["status"], registry=REGISTRY)
APPROVALS_WAITING = Gauge("chatops_approvals_waiting", "Approvals waiting for a human", registry=REGISTRY)
