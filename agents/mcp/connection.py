"""One MCP server, connected for the life of the process: started in the background,
restarted with backoff when it dies, its tool list kept current.

Its state is `starting` (connecting and listing its tools), `up`, `down` (the last attempt
failed or the connection was lost; the next attempt is at `retry_at`) or `stopped`. A call
to a server that is down fails at once with what is known (since when, why, the next try),
which the model reads; a call to a server being started waits for that attempt.

The connection lives in one task (`_supervise`): the SDK's client holds anyio task groups,
which must be entered and left in one task. Runs call tools from their own tasks through
that client, which multiplexes the requests.

How a lost connection is noticed: a stdio server's output ends (transport.py); on the
2026 protocol, the `subscriptions/listen` stream (which also brings list_changed) breaks;
an HTTP request that cannot be sent ends the client. On the handshake-era protocol the
list_changed notification arrives through the message handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.session import IncomingMessage
from mcp.client.subscriptions import SubscriptionLost
from mcp_types import (
    CONNECTION_CLOSED,
    METHOD_NOT_FOUND,
    REQUEST_TIMEOUT,
    CallToolResult,
    Tool,
    ToolListChangedNotification,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from agents.config_mcp import McpServerConfig
from agents.errors import ActionError, ActionTimeoutError
from agents.mcp import transport
from agents.metrics import REGISTRY
from storage.clock import now

log = logging.getLogger(__name__)

IDEMPOTENCY_META = "chatops/idempotency-key"
"""The `_meta` key of every call: the step's idempotency key, stable across retries and resumes."""
STABLE_SECONDS = 30.0  # a connection that lasted this long resets the backoff
LISTEN_AGAIN = 1.0  # seconds before listening again to a change stream the server closed on purpose
READY_GRACE = 2.0  # seconds beyond connect_timeout to wait for an attempt to end
STOP_GRACE = 10.0  # seconds a stop waits for the server to exit (the SDK escalates to SIGKILL)
MAX_PAGES = 100  # of a tool listing: a server that pages forever cannot hang its connection
STDERR_TAIL = 20

Status = Literal["starting", "up", "down", "stopped"]

SERVER_UP = Gauge(
    "chatops_mcp_server_up", "1 when the MCP server is connected", ["server"], registry=REGISTRY
)
CALLS = Counter(
    "chatops_mcp_calls_total", "MCP tool calls, by outcome", ["server", "outcome"], registry=REGISTRY
)


@dataclass(frozen=True)
class ServerState:
    """What is known of a server now (for the model's error messages, the watchdog, /healthz)."""

    name: str
    status: Status
    since: datetime
    """When it reached this status (for `down`: when it went down, however many tries since)."""
    error: str | None = None
    """Why it is down."""
    retry_at: datetime | None = None
    tools: int = 0

    @property
    def down(self) -> bool:
        """Down, or trying again after being down (not merely starting for the first time)."""
        return self.status == "down" or (self.status == "starting" and self.error is not None)

    def describe(self) -> str:
        if self.status == "up":
            return f"is up since {self.since:%H:%M:%S} UTC"
        if self.status == "starting" and not self.down:
            return "is starting and has not listed its tools yet"
        if self.status == "stopped":
            return "is stopped"
        if self.status == "starting":
            retry = "; it is being started again now"
        else:
            retry = f"; the next try is at {self.retry_at:%H:%M:%S} UTC" if self.retry_at else ""
        return f"is down since {self.since:%H:%M:%S} UTC ({self.error}){retry}"


@dataclass(frozen=True)
class Backoff:
    """Seconds between connection attempts: `first`, doubled after each quick failure, at most `most`."""

    first: float = 1.0
    most: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.first * 2 ** max(failures - 1, 0), self.most))


class ServerUnavailable(ActionError):
    """The tool's server is not connected: the call was not made."""

    def __init__(self, state: ServerState, action: str) -> None:
        super().__init__(
            f"{action} did not run: MCP server {state.name} {state.describe()}. chatops restarts it "
            "by itself; try again later, or tell the user the tool is unavailable right now.",
            transient=True,
        )
        self.state = state
        self.action = action


class CallInterrupted(ActionError):
    """The connection ended while the call was under way: whether it took effect is unknown."""

    def __init__(self, server: str, action: str, why: str) -> None:
        super().__init__(
            f"MCP server {server} stopped answering during the call ({why}): whether {action} "
            "took effect is unknown. Check before calling it again."
        )
        self.server = server
        self.action = action


class ServerConnection:
    def __init__(self, cfg: McpServerConfig, *, backoff: Backoff | None = None) -> None:
        self.cfg = cfg
        self.backoff = backoff or Backoff()
        self.tools: dict[str, Tool] = {}
        """The tools it listed (those its allow-list offers), kept while it is down."""
        self.version = 0
        """Bumped at every listing, so actions built from `tools` know when to be rebuilt."""
        self.state = ServerState(cfg.name, "stopped", now())
        self._client: Client | None = None
        self._scope: anyio.CancelScope | None = None
        self._modern = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._retired = False
        self._lost: str | None = None
        self._refresh = False
        self._attempted = asyncio.Event()  # the first attempt is over (up or down)
        self._settled = asyncio.Event()  # no attempt is under way
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)

    @property
    def name(self) -> str:
        return self.cfg.name

    def start(self) -> None:
        """Connect in the background (and keep connected). Idempotent; nothing after `stop`."""
        if self._retired:
            return
        if self._task is None or self._task.done():
            self._stopping = False
            self._set("starting")  # now, not when the task first runs: a call made meanwhile waits
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-server-{self.name}")

    async def stop(self) -> None:
        """Disconnect (a stdio server is stopped) for good: the process is shutting down."""
        self._retired = True
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        if self._scope is not None:
            self._scope.cancel()  # also while it is still starting
        done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
        if not done:
            log.warning(
                "MCP server %s did not stop within %gs; cancelling its connection", self.name, STOP_GRACE
            )
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def ready(self) -> None:
        """Start if needed, and wait until the first attempt is over (at most connect_timeout)."""
        self.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.connect_timeout + READY_GRACE):
                await self._attempted.wait()

    async def call(self, tool: str, arguments: dict[str, Any], *, timeout: float, key: str) -> CallToolResult:
        """Call a tool. Raises an ActionError the model can read when the call could not be made
        or its fate is unknown; a result with isError is returned as it is."""
        action = self.cfg.action_name(tool)
        client = await self._client_for(action)
        meta = cast(Any, {IDEMPOTENCY_META: key})
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout, meta=meta)
        except MCPError as e:
            if e.code == CONNECTION_CLOSED:
                if self._client is client:  # not a connection made since
                    self._poke(lost=self._closed_reason())
                self._count("lost")
                raise CallInterrupted(self.name, action, self._closed_reason()) from None
            if e.code == REQUEST_TIMEOUT:
                self._count("timeout")
                raise ActionTimeoutError(action, timeout) from None
            self._count("refused")
            raise ActionError(f"MCP server {self.name} refused the call of {tool}: {e.message}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if self._client is client:
                self._poke(lost="the connection broke")
            self._count("lost")
            raise CallInterrupted(self.name, action, "the connection broke") from None
        except (ValidationError, RuntimeError) as e:
            # The SDK checks the answer (its shape, and structured content against the tool's
            # output schema) after the tool ran: what it did is unknown to us.
            self._count("invalid")
            raise ActionError(
                f"MCP server {self.name} answered the call of {tool} with something that is not a valid "
                f"result ({type(e).__name__}: {str(e)[:300]}); whether it took effect is unknown"
            ) from None
        self._count("error" if result.is_error else "ok")
        return result

    async def _client_for(self, action: str) -> Client:
        self.start()
        if self.state.status == "starting":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.connect_timeout + READY_GRACE):
                    await self._settled.wait()
        client = self._client
        if self.state.status != "up" or client is None or self._lost is not None:
            self._count("unavailable")
            raise ServerUnavailable(self.state, action)
        return client

    # The connection's life -----------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        try:
            while not self._stopping:
                self._set("starting")
                began = time.monotonic()
                reason = await self._connection()
                if self._stopping:
                    break
                failures = 1 if time.monotonic() - began >= STABLE_SECONDS else failures + 1
                delay = self.backoff.delay(failures)
                self._set("down", error=reason, retry_at=now() + timedelta(seconds=delay))
                log.warning("MCP server %s is down (%s); next try in %gs", self.name, reason, delay)
                await self._pause(delay)
        finally:
            self._set("stopped")

    async def _connection(self) -> str:
        """Connect, list the tools, follow the connection until it ends; returns why it ended."""
        self._lost, self._refresh = None, False
        self._wake.clear()
        self._stderr.clear()
        reason = "the connection ended"
        # Starting and listing must end within connect_timeout (a server that never answers
        # would hold the attempt forever); a stop ends any phase. Cancelling this scope is the
        # SDK's own way out: the stdio server is stopped, shielded, on the way.
        with anyio.CancelScope(deadline=anyio.current_time() + self.cfg.connect_timeout) as scope:
            self._scope = scope
            try:
                reason = await self._connected()
            except Exception as e:  # broad on purpose: whatever ends a connection is reported and retried
                reason = self._lost or _describe(e, self.cfg)
        self._scope = None
        if scope.cancelled_caught and not self._stopping:
            reason = f"it did not start and list its tools within {self.cfg.connect_timeout:g}s"
        return self._with_stderr(reason)

    async def _connected(self) -> str:
        assert self._scope is not None
        async with transport.connect(
            self.cfg, on_message=self._on_message, on_closed=self._closed, on_stderr=self._on_stderr
        ) as client:
            self._modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
            await self._list_tools(client)
            self._scope.deadline = math.inf  # up: it stays connected for as long as it lasts
            self._client = client
            self._set("up")
            log.info(
                "MCP server %s is up (protocol %s): %s",
                self.name,
                client.protocol_version,
                ", ".join(sorted(self.tools)) or "no tools",
            )
            try:
                return await self._watch(client)
            finally:
                self._client = None

    async def _watch(self, client: Client) -> str:
        """Until the connection is lost or stopped; relists the tools when they change."""
        reason: str | None = None
        async with anyio.create_task_group() as tg:
            if self._modern:
                tg.start_soon(self._listen, client)
            try:
                while reason is None:
                    await self._wake.wait()
                    self._wake.clear()
                    if self._stopping:
                        reason = "stopped"
                    elif self._lost is not None:
                        reason = self._lost
                    elif self._refresh:
                        self._refresh = False
                        await self._list_tools(client)
            finally:
                tg.cancel_scope.cancel()
        return reason or "the connection ended"

    async def _listen(self, client: Client) -> None:
        """Follow the server's change stream (2026 protocol): tools changed, or the stream broke."""
        while not self._stopping:
            try:
                async with client.listen(tools_list_changed=True) as changes:
                    self._poke(refresh=True)  # nothing is replayed: a change before the stream opened
                    async for _ in changes:
                        self._poke(refresh=True)
            except SubscriptionLost:
                self._poke(lost="the connection was lost")
                return
            except MCPError as e:
                if e.code == METHOD_NOT_FOUND:
                    log.info("MCP server %s has no change stream: its tool list is read once", self.name)
                else:
                    self._poke(lost=f"its change stream failed: {e.message}")
                return
            except TimeoutError:
                log.warning(
                    "MCP server %s did not open its change stream; tool changes are missed", self.name
                )
                return
            await anyio.sleep(LISTEN_AGAIN)  # it closed the stream on purpose (shedding load)

    async def _list_tools(self, client: Client) -> None:
        listed: dict[str, Tool] = {}
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            listed.update((t.name, t) for t in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        missing = [t for t in self.cfg.tools or [] if t not in listed]
        if missing:
            log.warning("MCP server %s does not list %s (named in its tools)", self.name, ", ".join(missing))
        for tool, undo in self.cfg.undo.items():
            if undo.tool is not None and undo.tool not in listed:
                log.warning("MCP server %s does not list %s, the undo of %s", self.name, undo.tool, tool)
        self.tools = {n: t for n, t in listed.items() if self.cfg.offers(n)}
        self.version += 1
        if self.state.status == "up":
            self._set("up")

    async def _pause(self, seconds: float) -> None:
        """Sleep before the next attempt; a stop ends it early."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self._stopping:
                    await self._wake.wait()
                    self._wake.clear()

    # Signals from the connection -------------------------------------------------------

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            log.warning("MCP server %s: %s: %s", self.name, type(message).__name__, message)
        elif isinstance(message, ToolListChangedNotification) and not self._modern:
            self._poke(refresh=True)  # on the 2026 protocol the change stream says so (_listen)

    def _closed(self) -> None:
        self._poke(lost=self._closed_reason())

    def _closed_reason(self) -> str:
        return "its process exited" if self.cfg.command is not None else "it closed the connection"

    def _on_stderr(self, line: str) -> None:
        self._stderr.append(line)
        log.debug("MCP server %s: %s", self.name, line)

    def _poke(self, *, lost: str | None = None, refresh: bool = False) -> None:
        if lost is not None and self._lost is None:
            self._lost = lost
            if self.state.status == "up":
                self._set("down", error=lost)  # at once: a call made now must not find it "up"
        self._refresh = self._refresh or refresh
        self._wake.set()

    def _set(self, status: Status, *, error: str | None = None, retry_at: datetime | None = None) -> None:
        since, before = now(), self.state
        if status == "starting" and before.down:
            since, error = before.since, before.error  # a retry: still down
        elif (status == "down" and before.down) or (status == "up" and before.status == "up"):
            since = before.since
        self.state = ServerState(self.name, status, since, error, retry_at, len(self.tools))
        SERVER_UP.labels(self.name).set(1 if status == "up" else 0)
        if status == "starting":
            self._settled.clear()
        else:
            self._settled.set()
            self._attempted.set()

    def _with_stderr(self, reason: str) -> str:
        last = next((line for line in reversed(self._stderr) if line.strip()), None)
        return f"{reason}; it last wrote: {last[:300]}" if last and reason != "stopped" else reason

    def _count(self, outcome: str) -> None:
        CALLS.labels(self.name, outcome).inc()


def _describe(error: BaseException, cfg: McpServerConfig) -> str:
    """Why a connection attempt failed, in a sentence."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, OSError) and cfg.command is not None:
        return f"it could not be started ({cfg.command[0]}: {error.strerror or error})"
    if isinstance(error, MCPError):
        if error.code == REQUEST_TIMEOUT:
            return f"it did not answer within {cfg.connect_timeout:g}s"
        if error.code == CONNECTION_CLOSED:
            return "it closed the connection"
        return f"it refused: {error.message}"
    if isinstance(error, TimeoutError):
        return f"it did not answer within {cfg.connect_timeout:g}s"
    if isinstance(error, httpx2.HTTPError):
        return f"it cannot be reached ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"
