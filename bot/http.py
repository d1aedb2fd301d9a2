"""The HTTP server (aiohttp): POST /slack/events, GET /healthz, GET /metrics."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from agents import metrics
from bot.services import Services
from storage import approvals, controls, runs

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Slack payloads are far smaller; anything bigger is refused unread


def build_web_app(
    services: Services,
    bolt: AsyncApp | None,
    signing_secret: str | None,
    *,
    workers_enabled: bool = True,
    scheduler_enabled: bool = True,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def slack_events(request: web.Request) -> web.Response:
        if bolt is None or verifier is None:
            return web.json_response({"error": "Slack is not configured"}, status=503)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": "payload too large"}, status=413)
        raw = await request.read()
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = None
        if body is None or not verifier.is_valid_request(body, dict(request.headers)):
            # Checked here too so a malformed body never reaches a parser unauthenticated.
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=body, query=request.query_string, headers=dict(request.headers)
            )
        except Exception as e:  # broad on purpose: any parse failure is the sender's error
            log.warning("malformed Slack payload refused: %s", type(e).__name__)
            return web.json_response(
                {"error": "malformed payload"}, status=400, headers={"X-Slack-No-Retry": "1"}
            )
        if not _well_formed(bolt_request.body):
            log.warning("Slack payload of an unexpected shape refused")
            return web.json_response(
                {"error": "malformed payload"}, status=400, headers={"X-Slack-No-Retry": "1"}
            )
        response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    async def healthz(_: web.Request) -> web.Response:
        report = await health(services, workers_enabled=workers_enabled, scheduler_enabled=scheduler_enabled)
        return web.json_response(report, status=200 if report["ok"] else 503)

    async def prometheus(_: web.Request) -> web.Response:
        try:
            async with services.db.read() as session:
                active = await runs.count_active(session=session)
                waiting = len(await approvals.pending_approvals(session=session))
        except Exception:  # broad on purpose: the process's own counters are still worth serving
            log.warning("metrics: the database did not answer; gauges are stale")
        else:
            for status, n in active.items():
                metrics.RUNS_ACTIVE.labels(status).set(n)
            metrics.QUEUE_DEPTH.set(active.get("queued", 0))
            metrics.APPROVALS_WAITING.set(waiting)
        return web.Response(
            body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app


def _well_formed(body: Any) -> bool:
    """The shapes the listeners rely on (Slack always sends them; anything else is refused)."""
    if not isinstance(body, dict):
        return False
    if body.get("type") == "event_callback":
        return isinstance(body.get("event"), dict)
    if "command" in body:
        return all(isinstance(body.get(k), str) and body.get(k) for k in ("channel_id", "user_id"))
    if body.get("type") == "block_actions":
        return isinstance(body.get("user"), dict) and isinstance(body.get("actions"), list)
    return True


async def health(services: Services, *, workers_enabled: bool, scheduler_enabled: bool) -> dict[str, Any]:
    db_ok = await services.db.ping()
    workers_ok = services.worker.alive or not workers_enabled
    scheduler_ok = services.scheduler_running or not scheduler_enabled
    paused: list[str] = []
    if db_ok:
        async with services.db.read() as session:
            paused = [c.scope for c in await controls.all_controls(session=session) if c.paused]
    return {
        "ok": db_ok and workers_ok and scheduler_ok,
        "scheduler": {"enabled": scheduler_enabled, "running": services.scheduler_running},
        "database": "ok" if db_ok else "unreachable",
        "workers": {
            "enabled": workers_enabled,
            "alive": services.worker.alive,
            "runs_in_flight": len(services.worker.tasks),
        },
        "paused": paused,
        "mcp_servers": _mcp_servers(services),
    }


def _mcp_servers(services: Services) -> dict[str, Any]:
    """Each MCP server's state. A server that is down does not make the process unhealthy:
    it is outside it (the watchdog alerts), and restarting chatops would not bring it back."""
    mcp = services.runtime.mcp
    states = mcp.states() if mcp is not None else []
    return {
        s.name: {"status": s.status, "since": s.since.isoformat(), "tools": s.tools, "error": s.error}
        for s in states
    }
