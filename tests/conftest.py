"""Fixtures shared by every test: a clean environment, the loopback fakes, and a running desk.

Tests fake only what sits across the network: Slack's Web API (`fakes.slack_api`), Slack's
deliveries to our Request URL (`fakes.slack_events`) and the model server (`fakes.model`).
Everything else is the real thing: `bot.runner.Server` listening on 127.0.0.1, its workers,
a SQLite file in the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeModel, FakeSlack, SlackSender, wait_until
from mcp_servers import WidgetFiles
from migrated import copy_database, migrate_now, seed_sqlite
from sqlmodel import col, select

from agents import tracing
from bot.runner import Server
from bot.services import Services
from bot.settings import Settings
from storage.clock import set_clock
from storage.engine import Database
from storage.models import FINAL_STATUSES, ProcessedEvent, Request, Run, Step, Ticket
from storage.runs import PENDING

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test"
CLEARED_PREFIXES = ("SLACK_", "OPENAI_", "CHATOPS_", "OTEL_")
CLEARED_NAMES = ("DATABASE_URL", "PORT")
# How long a desk's run may take to finish and report: most take well under a second, a few
# wait out Slack's or the model's retry pauses (3-5 s), all go slower on a busy machine. A
# bound for a failure; a passing test waits no longer than its run takes.
RUN_LIMIT = 30.0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No credential, database or config of the developer's leaks in; no real model is called."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no chatops.toml or .env from the working directory
    yield
    set_clock(None)
    tracing.shutdown()  # a test that turned traces on leaves them off for the next


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to the newest revision, made once per session (per xdist
    worker), for tests to copy (tests/migrated.py says why)."""
    path = tmp_path_factory.mktemp("migrated") / "chatops.db"
    migrate_now(f"sqlite:///{path}")
    return path


@pytest.fixture
async def db(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Database]:
    """A real, migrated SQLite database file for one test (tests/storage/test_postgres.py
    has its own, on PostgreSQL): a copy of the session's migrated one."""
    copy_database(migrated_sqlite, tmp_path / "chatops.db")
    database = Database(f"sqlite:///{tmp_path / 'chatops.db'}")
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def widget_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WidgetFiles:
    """The files of the widgets MCP server (tests/mcp_servers), named in the environment that
    `{{ env.WIDGETS_... }}` in a configuration reads."""
    files = WidgetFiles(tmp_path)
    for name, value in files.environ().items():
        monkeypatch.setenv(name, value)
    return files


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """Slack's Web API on loopback; U1 and U2 are full members of the workspace."""
    slack = FakeSlack()
    slack.add_user("U1", real_name="Ada")
    slack.add_user("U2", real_name="Grace")
    with slack:
        yield slack


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    """A scripted OpenAI-compatible model server on loopback."""
    with FakeModel() as model:
        yield model


@dataclass
class Desk:
    """A running `chatops serve` and the fakes around it."""

    server: Server
    slack: FakeSlack
    model: FakeModel | None
    send: SlackSender
    """Deliveries to our /slack/events, signed as Slack signs them."""
    home: Path
    stopped: bool = False

    async def stop(self) -> None:
        """Stop the server (a restart, when another desk is started afterwards)."""
        self.stopped = True
        await self.send.close()
        await _stop(self.server)

    @property
    def services(self) -> Services:
        return self.server.services

    @property
    def db(self) -> Database:
        return self.server.services.db

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def rows(self, model: type[Any], *where: Any) -> list[Any]:
        async with self.db.read() as session:
            stmt = select(model).where(*where) if where else select(model)
            return list((await session.exec(stmt.order_by(*model.__table__.primary_key.columns))).all())

    async def runs(self) -> list[Run]:
        return await self.rows(Run)

    async def requests(self) -> list[Request]:
        return await self.rows(Request)

    async def deliveries(self) -> list[ProcessedEvent]:
        return await self.rows(ProcessedEvent)

    async def tickets(self) -> list[Ticket]:
        return await self.rows(Ticket)

    async def steps(self, run_id: int) -> list[Step]:
        return await self.rows(Step, col(Step.run_id) == run_id)

    async def run(self, run_id: int) -> Run:
        async with self.db.read() as session:
            run = await session.get(Run, run_id, populate_existing=True)
        assert run is not None, f"no run #{run_id}"
        return run

    async def finished(self, run_id: int, timeout: float = RUN_LIMIT) -> Run:
        """Wait until the run is final and its outcome reply was posted; return the run."""

        async def done() -> Run | None:
            run = await self.run(run_id)
            delivered = run.outcome_ts not in (None, PENDING)
            return run if run.status in FINAL_STATUSES and delivered else None

        async def describe() -> str:
            return repr(await self.run(run_id))

        try:
            return await wait_until(done, timeout, message=f"run #{run_id} to finish and report")
        except AssertionError:
            raise AssertionError(f"run #{run_id} did not finish and report: {await describe()}") from None

    async def only_run(self, timeout: float = RUN_LIMIT) -> Run:
        """Wait for the single run there is (failing if there are more), finished and reported."""
        runs = await wait_until(self.runs, timeout, message="a run to be queued")
        assert len(runs) == 1, f"expected one run, got {runs}"
        assert runs[0].id is not None
        return await self.finished(runs[0].id, timeout)

    async def settled(self, timeout: float = RUN_LIMIT) -> None:
        """Wait until no run is active, every outcome is posted and the presenter is idle."""

        async def quiet() -> bool:
            for run in await self.runs():
                if run.status not in FINAL_STATUSES or run.outcome_ts in (None, PENDING):
                    return False
            presenter = self.services.presenter
            return not presenter._pending and not presenter._background and not self.services.worker.tasks

        await wait_until(quiet, timeout, message="the desk to settle")


StartDesk = Callable[..., Awaitable[Desk]]


@pytest.fixture
async def start_desk(
    request: pytest.FixtureRequest, fake_slack: FakeSlack, tmp_path: Path, migrated_sqlite: Path
) -> AsyncIterator[StartDesk]:
    """Start `chatops serve` in-process on 127.0.0.1:<free port>.

    `await start_desk(config=TOML, model=True, chatops_workers=...)`: `config` is written
    to tmp_path and passed as CHATOPS_CONFIG (None: the built-in defaults); `model=True`
    points OPENAI_BASE_URL at the fake model, otherwise there is no API key and agents use
    the offline planner; `scheduler=True` starts the scheduled jobs too (off by default, so
    no periodic job posts at an arbitrary moment); `runs_thread=True` works the runs on a thread
    and event loop of their own, as `chatops serve` does (off by default: with it, `desk.services`
    are the intake's, and the runs' are `desk.server.background`, on another loop); other
    keywords are Settings fields.
    Starting a second desk in one test reuses the database: a restart, or a second process.
    """
    desks: list[Desk] = []

    async def start(
        config: str | None = None,
        *,
        model: bool = False,
        scheduler: bool = False,
        runs_thread: bool = False,
        **overrides: Any,
    ) -> Desk:
        fields: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": fake_slack.url,
            "database_url": f"sqlite:///{tmp_path / 'chatops.db'}",
            "chatops_edit_interval": 0.05,
            "chatops_poll_seconds": 0.05,
            # Longer than any turn a test holds (`held=True`, `hold()`) while it does something
            # else, a `chatops` command included: a held turn the client gave up on is asked
            # again and answered by the next scripted turn. Tests of timeouts set their own.
            "chatops_model_timeout": 60.0,
            "chatops_model_retries": 2,
        }
        if config is not None:
            path = tmp_path / "chatops.toml"
            path.write_text(config, encoding="utf-8")
            fields["chatops_config"] = str(path)
        fake: FakeModel | None = None
        if model:
            fake = request.getfixturevalue("fake_model")
            fields.update(openai_api_key="sk-test", openai_base_url=fake.url, chatops_model="fake-model")
        fields.update(overrides)
        seed_sqlite(fields["database_url"], migrated_sqlite)  # a new file starts migrated
        migrated = Database(fields["database_url"], pooled=False)
        try:
            await migrated.migrate()  # the release step (`chatops migrate`), before the process starts
        finally:
            await migrated.dispose()
        server = Server(
            Settings(**fields), host="127.0.0.1", port=0, scheduler=scheduler, runs_thread=runs_thread
        )
        await server.start()
        desk = Desk(
            server,
            fake_slack,
            fake,
            SlackSender(f"http://127.0.0.1:{server.port}/slack/events", SIGNING_SECRET),
            tmp_path,
        )
        desks.append(desk)
        return desk

    yield start

    for desk in reversed(desks):
        if desk.stopped:
            continue
        if desk.model is not None:
            desk.model.release()  # a held model would keep the workers from stopping
        await desk.send.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(desk.services.presenter.drain(), timeout=5)
        await _stop(desk.server)  # the real shutdown path (SIGTERM), bounded so it cannot hang a run


STOP_LIMIT = 30.0


async def _stop(server: Server) -> None:
    """Stop a server, failing (with every task's stack) instead of hanging if it does not stop."""
    stopping = asyncio.create_task(server.stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_LIMIT)
    if stopping in done:
        stopping.result()
        return
    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=stacks)
        coro: Any = task.get_coro()
        while coro is not None:  # the await chain, innermost last
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                print(
                    f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=stacks
                )
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    pytest.fail(f"the server did not stop within {STOP_LIMIT:g}s; tasks:\n{stacks.getvalue()}")
