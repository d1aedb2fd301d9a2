"""What the Socket Mode scenarios share: a real `chatops run` with SLACK_APP_TOKEN, connected to
the loopback Socket Mode server (fakes.socket_mode) through the fake Web API's
apps.connections.open, and the database seen from outside.

No HTTP door is involved: no signing secret is set (a Socket Mode app needs none), every
delivery is an envelope on the WebSocket, and chatops answers each with an ack on it. The desk
has the interface the HTTP scenarios' helpers use (`desk.send.event(...)` answering a
Delivery, `desk.slack`, `desk.runs()`, `desk.finished(...)`), so the same stories are told
with the same helpers (scenarios.control_support).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fakes import FakeModel, FakeSlack, wait_until
from fakes.socket_mode import Connection, Envelope, FakeSocketMode, SocketSender

from scenarios.faults_support import START_LIMIT, ChatopsProcess, Outside, Processes, environment, sqlite_url
from storage.models import ProcessedEvent, Request, Ticket


class SocketDesk(Outside):
    """A running `chatops run` in Socket Mode, the fakes around it, and its database."""

    def __init__(self, url: str, proc: ChatopsProcess, socket: FakeSocketMode, slack: FakeSlack) -> None:
        super().__init__(url)
        self.proc = proc
        self.socket = socket
        self.slack = slack
        self.send = SocketSender(socket, explain=proc.log_tail)
        """Deliveries as envelopes, each answered when acked."""

    async def connected(self, count: int = 1, timeout: float = START_LIMIT) -> Connection:
        """Wait until chatops has opened its `count`th connection (and one is open); fail with
        its log if it exits first."""

        def ready() -> Connection | None:
            if not self.proc.alive:
                raise AssertionError(
                    f"chatops run exited ({self.proc.proc.returncode}):\n{self.proc.log_tail()}"
                )
            with self.socket.lock:
                enough = len(self.socket.connections) >= count
            return self.socket.current if enough else None

        return await wait_until(
            ready,
            timeout,
            message=lambda: f"connection #{count}: {self.socket.connections}\n{self.proc.log_tail()}",
        )

    async def acked(self, envelope: Envelope, timeout: float = 10.0) -> dict[str, Any]:
        """The ack of `envelope` (failing with chatops's log when it does not come)."""
        try:
            return await self.socket.acked(envelope, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.proc.log_tail()}") from None

    def every_envelope_acked_once(self) -> None:
        """Each envelope sent was acked exactly once, with its own id and nothing else."""
        with self.socket.lock:
            envelopes = list(self.socket.envelopes)
            stray = list(self.socket.stray)
        assert envelopes, "no envelope was sent"
        for e in envelopes:
            assert len(e.acks) == 1, (e.type, e.envelope_id, e.acks)
            assert set(e.acks[0]) <= {"envelope_id", "payload"}, e.acks[0]
            assert e.acks[0]["envelope_id"] == e.envelope_id
        assert stray == [], stray

    async def requests(self) -> list[Request]:
        return await self.rows(Request)

    async def deliveries(self) -> list[ProcessedEvent]:
        return await self.rows(ProcessedEvent)

    async def tickets(self) -> list[Ticket]:
        return await self.rows(Ticket)

    async def only_run(self, timeout: float = 20.0) -> Any:
        """The single run there is (failing if there are more), finished and reported."""
        runs = await wait_until(self.runs, timeout, message="a run to be queued")
        assert len(runs) == 1, f"expected one run, got {runs}"
        return await self.finished(runs[0].id, timeout)


def socket_environment(
    slack: FakeSlack,
    database_url: str,
    *,
    model: FakeModel | None = None,
    config: Path | None = None,
    **extra: str | float | int,
) -> dict[str, str]:
    """A Socket Mode app's environment: the bot token and the app-level token, no signing secret
    (unless `extra` sets one)."""
    env = environment(slack=slack, database_url=database_url, model=model, config=config)
    env.pop("SLACK_SIGNING_SECRET")
    env["SLACK_APP_TOKEN"] = slack.app_token
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextlib.asynccontextmanager
async def socket_desk(
    processes: Processes,
    slack: FakeSlack,
    home: Path,
    *,
    config: str | None = None,
    model: FakeModel | None = None,
    **extra: str | float | int,
) -> AsyncIterator[SocketDesk]:
    """`chatops run` connected in Socket Mode (after `chatops migrate`, as a release step would);
    stopped with SIGTERM afterwards, which must close its connection."""
    path = None
    if config is not None:
        path = home / "chatops.toml"
        path.write_text(config)
    url = sqlite_url(home / "chatops.db")
    env = socket_environment(slack, url, model=model, config=path, **extra)
    with FakeSocketMode(slack) as socket:
        proc = processes.start("run", env=env, name="run")
        desk = SocketDesk(url, proc, socket, slack)
        try:
            await desk.connected()
            yield desk
            assert proc.stop() == 0, proc.log_tail()
            await wait_until(
                lambda: not any(c.open for c in socket.connections),
                message="chatops to close its connection on SIGTERM",
            )
        finally:
            await desk.close()
