"""The HTTP server (aiohttp): POST /slack/events, GET /healthz, GET /metrics; with many
workspaces (bot.oauth), GET /slack/install and GET /slack/oauth_redirect too."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from agents import metrics
from bot import oauth, shapes
from bot.services import Services
from storage import approvals, controls, runs
from storage.engine import Database
from storage.health import write_refusal

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Slack payloads are far smaller; anything bigger is refused unread
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # Unix seconds, ASCII digits only
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")  # HMAC-SHA256, hex


def build_web_app(
    services: Services,
    bolt: AsyncApp | None,
    signing_secret: str | None,
    *,
    workers_enabled: bool = True,
    scheduler_enabled: bool = True,
    background: Callable[[], Services] | None = None,
) -> web.Application:
    """`background`: the services that work the runs and the scheduled jobs, when they are
    not `services` (bot.background's thread): /healthz reports theirs."""
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
        if body is None or not _signed(verifier, request, body):
            # Checked here too so a malformed body never reaches a parser unauthenticated.
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=body, query=request.query_string, headers=dict(request.headers)
            )
            _reparse_form(bolt_request, body)
        except Exception as e:  # broad on purpose: any parse failure is the sender's error
            return _refused(f"unreadable ({type(e).__name__})")
        wrong = shapes.problem(bolt_request.body)
        if wrong:
            return _refused(wrong)
        if shapes.rate_limited(bolt_request.body):
            log.warning("Slack is holding back event deliveries to this app (app_rate_limited)")
            return web.Response(status=200)
        response = await bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    database = DatabaseCheck(services.db)

    async def healthz(_: web.Request) -> web.Response:
        report = await health(
            services,
            database,
            background=background() if background is not None else services,
            workers_enabled=workers_enabled,
            scheduler_enabled=scheduler_enabled,
        )
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
    if bolt is not None and bolt.oauth_flow is not None:
        oauth.add_routes(app, bolt.oauth_flow)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app


def _signed(verifier: SignatureVerifier, request: web.Request, body: str) -> bool:
    """One well-formed timestamp and one well-formed signature, and they verify `body`.

    Checked for form before slack_sdk sees them: `int()` raises on "abc" and on 5000 digits
    (and takes " 1" or Arabic-Indic digits), `hmac.compare_digest` raises on non-ASCII, and a
    header sent twice would be verified on one value while another reached bolt.
    """
    timestamps = request.headers.getall("X-Slack-Request-Timestamp", [])
    signatures = request.headers.getall("X-Slack-Signature", [])
    if len(timestamps) != 1 or len(signatures) != 1:
        return False
    timestamp, signature = timestamps[0], signatures[0]
    if not (TIMESTAMP.fullmatch(timestamp) and SIGNATURE.fullmatch(signature)):
        return False
    return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)


def _reparse_form(request: AsyncBoltRequest, body: str) -> None:
    """Give bolt the form a slash command is when its text says "payload".

    bolt's parse_body takes any form body containing the word "payload" for an
    interactivity payload (`payload=<JSON>`), and a form without that field for `{}`: so
    `/agent check the payload size` was lost. Such a form is parsed again as the plain form
    it is, and the request's context (team, user, channel) built from it, as bolt builds it.
    """
    if request.body or "payload" not in body or body.lstrip().startswith("{"):
        return
    form = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" in form:
        return  # an interactivity payload indeed (an empty one: refused by its shape)
    request.body = form
    request.context = build_async_context(AsyncBoltContext({}), form)


def _refused(why: str) -> web.Response:
    """A signed payload Slack would never send: refused once, and Slack told not to retry it.

    A warning, not an error: it is the sender's mistake (or an attack), not ours.
    """
    log.warning("Slack payload refused: %s", why)
    return web.json_response({"error": "malformed payload"}, status=400, headers={"X-Slack-No-Retry": "1"})


class DatabaseCheck:
    """The database's part of /healthz: "ok", "unreachable", "read-only" or "not writable: ...".

    Reachable is a read; writable is a committed write (storage.health). /healthz is polled
    by load balancers and can be called by anyone, so one check runs at a time and its
    answer serves every /healthz for FRESH seconds: however often it is asked, the database
    sees at most one probe write a second.
    """

    FRESH = 1.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._answer: tuple[float, str] | None = None
        self._running: asyncio.Future[str] | None = None

    async def state(self) -> str:
        loop = asyncio.get_running_loop()
        if self._answer is not None and loop.time() - self._answer[0] < self.FRESH:
            return self._answer[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check())
        # Shielded: a caller that hangs up does not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> str:
        if not await self.db.ping():
            answer = "unreachable"
        else:
            answer = await write_refusal(self.db) or "ok"
        self._answer = (asyncio.get_running_loop().time(), answer)
        return answer


async def health(
    services: Services,
    database: DatabaseCheck,
    *,
    background: Services,
    workers_enabled: bool,
    scheduler_enabled: bool,
) -> dict[str, Any]:
    db_state = await database.state()
    workers_ok = background.worker.alive or not workers_enabled
    scheduler_ok = background.scheduler_running or not scheduler_enabled
    paused: list[str] = []
    if db_state != "unreachable":  # a database that refuses writes still answers reads
        try:
            async with services.db.read() as session:
                paused = [c.scope for c in await controls.all_controls(session=session) if c.paused]
        except Exception:  # broad on purpose: gone since the check; the report says what it knows
            log.warning("healthz: could not read the paused agents")
    return {
        "ok": db_state == "ok" and workers_ok and scheduler_ok,
        "scheduler": {"enabled": scheduler_enabled, "running": background.scheduler_running},
        "database": db_state,
        "workers": {
            "enabled": workers_enabled,
            "alive": background.worker.alive,
            "runs_in_flight": len(background.worker.tasks),
        },
        "paused": paused,
        "mcp_servers": _mcp_servers(background),
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
