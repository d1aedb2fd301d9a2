"""Slack's Socket Mode on loopback: the WebSocket server a `chatops run` with SLACK_APP_TOKEN uses.

How Slack does it (slack_sdk's socket_mode clients, and its tests' mock server): the app calls
`apps.connections.open` with its app-level token (`xapp-`) and gets a one-time `wss://` URL;
on connecting it receives `hello`; then every delivery comes as an envelope
`{"envelope_id", "type": "events_api" | "slash_commands" | "interactive", "payload",
"accepts_response_payload", ("retry_attempt", "retry_reason" for events)}` whose payload is
exactly what the HTTP body would have been, and the app acks each with
`{"envelope_id": <the same>}` (plus `"payload"` for a slash command's reply). Slack asks the
app to move with `{"type": "disconnect", "reason": ...}`, after which the app opens a new URL
through `apps.connections.open` again; a connection can also just drop.

This fake does all of that with aiohttp on 127.0.0.1, in a thread of its own (its own event
loop, as `fakes.loopback` serves the Web API from threads), and records every connection,
envelope and ack. The test's coroutines (`send`, `disconnect`, `drop`...) hand work to that
loop and wait for it; assertions read the records, and waits are on conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import WSMsgType, web

from fakes.slack_api import FakeSlack
from fakes.slack_events import APP_ID, Delivery
from fakes.waiting import wait_until

T = TypeVar("T")


@dataclass
class Connection:
    """One WebSocket the app opened."""

    number: int
    """1 for the first connection, 2 for the next..."""
    ticket: str
    """The one-time ticket of the URL apps.connections.open issued for it."""
    received: list[Any] = field(default_factory=list)
    """Every message the app sent on it, decoded (acks, and anything else)."""
    closed_by: str | None = None
    """None while open; then "app" (it closed), "server" (disconnect followed by close) or "drop"."""
    _ws: web.WebSocketResponse | None = field(default=None, repr=False)
    _request: web.Request | None = field(default=None, repr=False)

    @property
    def open(self) -> bool:
        return self.closed_by is None


@dataclass
class Envelope:
    """One delivery sent to the app, and its ack."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    message: dict[str, Any]
    """Exactly what went over the socket."""
    connection: int
    """The number of the connection it was sent on."""
    acks: list[dict[str, Any]] = field(default_factory=list)
    """Every ack of it received, in order (one is right; more would be a bug)."""
    ack_connections: list[int] = field(default_factory=list)

    @property
    def ack(self) -> dict[str, Any] | None:
        return self.acks[0] if self.acks else None

    @property
    def response(self) -> dict[str, Any] | None:
        """The payload the ack carried (a slash command's reply), or None."""
        ack = self.ack
        return ack.get("payload") if ack else None


class FakeSocketMode:
    """Slack's Socket Mode endpoint. Start it with the FakeSlack whose apps.connections.open
    hands out its URLs: `with FakeSocketMode(fake_slack) as socket: ...`."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.lock = threading.RLock()
        self.connections: list[Connection] = []
        self.envelopes: list[Envelope] = []
        self.tickets: list[str] = []
        """Every ticket issued through apps.connections.open, in order."""
        self.refused: list[str] = []
        """Tickets presented that were unknown or already used (each is good for one connection)."""
        self.stray: list[Any] = []
        """Messages from the app that ack no envelope this server sent."""
        self._used: set[str] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping: asyncio.Event | None = None

    # Lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as e:  # reported to start(), which raises it
                failure.append(e)
                started.set()
                return
            started.set()
            loop.run_until_complete(self._serve_until_stopped())
            loop.close()

        self._thread = threading.Thread(target=serve, name="FakeSocketMode", daemon=True)
        self._thread.start()
        started.wait(timeout=10)
        if failure:
            raise failure[0]
        self.slack.socket_url = self.issue_url

    def stop(self) -> None:
        self.slack.socket_url = None
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/link/", self._websocket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = getattr(site, "_server", None)
        assert server is not None and server.sockets
        self._port = int(server.sockets[0].getsockname()[1])

    async def _serve_until_stopped(self) -> None:
        assert self._stopping is not None and self._runner is not None
        await self._stopping.wait()
        for connection in self.connections:
            if connection._ws is not None and not connection._ws.closed:
                with contextlib.suppress(Exception):
                    await connection._ws.close()
        await self._runner.cleanup()

    # apps.connections.open ------------------------------------------------------

    def issue_url(self) -> str:
        """A fresh one-time URL (called by FakeSlack on apps.connections.open)."""
        ticket = uuid.uuid4().hex
        with self.lock:
            self.tickets.append(ticket)
        return f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={APP_ID}"

    # The WebSocket ----------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self.lock:
            if ticket not in self.tickets or ticket in self._used:
                self.refused.append(ticket)
                return web.Response(status=401, text="invalid ticket")
            self._used.add(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self.lock:
            connection = Connection(len(self.connections) + 1, ticket, _ws=ws, _request=request)
            self.connections.append(connection)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": sum(1 for c in self.connections if c.open),
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                self._received(connection, msg.data)
        finally:
            with self.lock:
                if connection.closed_by is None:
                    connection.closed_by = "app"
        return ws

    def _received(self, connection: Connection, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            message = data
        with self.lock:
            connection.received.append(message)
            envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
            for envelope in self.envelopes:
                if envelope.envelope_id == envelope_id:
                    envelope.acks.append(message)
                    envelope.ack_connections.append(connection.number)
                    return
            self.stray.append(message)

    # What the test does -----------------------------------------------------------

    @property
    def current(self) -> Connection | None:
        """The newest open connection (the one deliveries go to), if any."""
        with self.lock:
            open_ones = [c for c in self.connections if c.open]
        return open_ones[-1] if open_ones else None

    async def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        envelope_id: str | None = None,
    ) -> Envelope:
        """Send one envelope on the current connection (failing if none is open)."""
        connection = self.current
        assert connection is not None and connection._ws is not None, "no open Socket Mode connection"
        message: dict[str, Any] = {
            "envelope_id": envelope_id or f"{uuid.uuid4()}",
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            message["retry_attempt"] = retry_attempt
            message["retry_reason"] = retry_reason or ""
        envelope = Envelope(message["envelope_id"], kind, payload, message, connection.number)
        with self.lock:
            self.envelopes.append(envelope)
        await self._on_loop(connection._ws.send_str(json.dumps(message)))
        return envelope

    async def event(
        self, body: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> Envelope:
        """An Events API delivery (`body` as fakes.slack_events builds it). A retry carries the
        same payload with retry_attempt 1, 2, 3 and a reason (e.g. "timeout")."""
        return await self.send("events_api", body, retry_attempt=retry_attempt, retry_reason=retry_reason)

    async def command(self, fields: dict[str, Any]) -> Envelope:
        """A slash command (its form fields, as JSON); the reply rides on the ack's payload."""
        return await self.send("slash_commands", fields, accepts_response_payload=True)

    async def interaction(self, payload: dict[str, Any]) -> Envelope:
        """An interactivity payload (a button click)."""
        return await self.send("interactive", payload)

    async def acked(self, envelope: Envelope, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the ack of `envelope`; return it."""
        ack: dict[str, Any] = await wait_until(
            lambda: envelope.ack, timeout, message=f"the ack of {envelope.type} {envelope.envelope_id}"
        )
        return ack

    async def disconnect(self, reason: str = "refresh_requested") -> Connection:
        """Tell the app to move to a new connection (Slack's `disconnect` message); the current
        connection stays open until the app leaves it, as Slack's does."""
        connection = self.current
        assert connection is not None and connection._ws is not None, "no open Socket Mode connection"
        await self._on_loop(
            connection._ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )
        )
        return connection

    async def close(self) -> Connection:
        """Close the current connection from Slack's side (a WebSocket close frame)."""
        connection = self.current
        assert connection is not None and connection._ws is not None, "no open Socket Mode connection"
        with self.lock:
            connection.closed_by = "server"
        await self._on_loop(connection._ws.close())
        return connection

    async def drop(self) -> Connection:
        """Cut the current connection without a goodbye (the TCP connection is aborted)."""
        connection = self.current
        assert connection is not None and connection._request is not None, "no open Socket Mode connection"
        transport = connection._request.transport
        assert transport is not None
        with self.lock:
            connection.closed_by = "drop"
        assert self._loop is not None
        self._loop.call_soon_threadsafe(transport.abort)
        return connection

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "the fake Socket Mode server is not started"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))


class SocketSender:
    """What `fakes.slack_events.SlackSender` does over HTTP, as envelopes on the socket: each
    delivery waits for its ack and is answered as a Delivery (200 with the ack's payload as
    JSON text, "" for an ack without one; 504 when no ack came in time), so the scenario
    helpers written for the HTTP door read Socket Mode's answers unchanged."""

    def __init__(
        self, socket: FakeSocketMode, *, timeout: float = 10.0, explain: Callable[[], str] = lambda: ""
    ) -> None:
        self.socket = socket
        self.timeout = timeout
        self.explain = explain
        """What to add to a missing ack's answer (the app's log)."""

    async def event(self, body: dict[str, Any], *, retry_num: int | None = None, **_: Any) -> Delivery:
        """An events_api envelope; `retry_num` is Slack's retry_attempt (reason "timeout")."""
        envelope = await self.socket.event(
            body, retry_attempt=retry_num or 0, retry_reason="timeout" if retry_num else ""
        )
        return await self.answer(envelope)

    async def command(self, fields: dict[str, Any], **_: Any) -> Delivery:
        return await self.answer(await self.socket.command(fields))

    async def interaction(self, payload: dict[str, Any], **_: Any) -> Delivery:
        return await self.answer(await self.socket.interaction(payload))

    async def answer(self, envelope: Envelope) -> Delivery:
        start = time.monotonic()
        try:
            ack = await self.socket.acked(envelope, self.timeout)
        except AssertionError as e:
            return Delivery(504, f"{e}\n{self.explain()}", {}, time.monotonic() - start)
        payload = ack.get("payload")
        text = "" if payload is None else json.dumps(payload, ensure_ascii=False)
        return Delivery(200, text, {}, time.monotonic() - start)

    async def close(self) -> None:
        """Nothing to close (the socket belongs to the server); SlackSender's interface."""
