"""What the fault-injection and monitoring scenarios share: real `chatops` processes around the
loopback fakes, the database seen from outside those processes, a throwaway PostgreSQL
database, and a clock the test moves.

A `chatops` process here is the installed console script (`chatops serve`, `chatops worker`,
`chatops summary`) with its environment pointing at the fakes; the test can SIGKILL it at
any moment and start another on the same database, which is what a crash and a restart are.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from fakes import FakeModel, FakeSlack, SlackSender, free_port, wait_until
from migrated import migrate_now, seed_sqlite
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from storage.engine import Database
from storage.models import FINAL_STATUSES, Run, Step
from storage.runs import PENDING

SIGNING_SECRET = "a3f1c0ffee5ecret0f0rthefau1tsu1te"
BOT_TOKEN = "xoxb-faults"
START_LIMIT = 60.0  # seconds a process may take to answer /healthz (15 s seen on a busy machine)
STOP_LIMIT = 15.0  # seconds a process may take to stop on SIGTERM


def chatops_command() -> list[str]:
    """The installed console script, next to this interpreter (the project's .venv)."""
    script = Path(sys.executable).with_name("chatops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def quoted(path: Path) -> str:
    """A path as one shell word, for command templates in a config file."""
    return shlex.quote(str(path))


def environment(
    *,
    slack: FakeSlack,
    database_url: str,
    model: FakeModel | None = None,
    config: Path | None = None,
    **extra: str | float | int,
) -> dict[str, str]:
    """The environment of a `chatops` process: credentials, the fakes, the database.

    Keywords are further variables, e.g. `CHATOPS_LEASE_SECONDS=2`.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "CHATOPS_")) and k not in ("DATABASE_URL", "PORT")
    }
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.url,
        DATABASE_URL=database_url,
        CHATOPS_POLL_SECONDS="0.05",
        CHATOPS_EDIT_INTERVAL="0.05",
    )
    if model is not None:
        env.update(OPENAI_API_KEY="sk-faults", OPENAI_BASE_URL=model.url, CHATOPS_MODEL="fake-model")
    if config is not None:
        env["CHATOPS_CONFIG"] = str(config)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class ChatopsProcess:
    """One `chatops <args>` subprocess; its stderr (JSON log lines) goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, *, name: str) -> None:
        self.args = args
        self.env = env
        self.cwd = cwd
        self.log_path = cwd / f"{name}.log"
        self.port: int | None = None
        if args and args[0] == "serve":
            self.port = int(args[args.index("--port") + 1])
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*chatops_command(), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def url(self) -> str:
        assert self.port is not None, "not a `chatops serve` process"
        return f"http://127.0.0.1:{self.port}"

    def sender(self) -> SlackSender:
        """Deliveries to this process's /slack/events, signed as Slack signs them."""
        return SlackSender(f"{self.url}/slack/events", SIGNING_SECRET)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-whatever it was doing."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_LIMIT)
        self._log.close()

    def stop(self) -> int:
        """SIGTERM, as a supervisor stops it; returns the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"chatops {self.args[0]} did not stop on SIGTERM:\n{self.log_tail()}"
            ) from None
        finally:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(f"{self.url}{path}") as response:
                return response.status, await response.text()

    async def ready(self, timeout: float = START_LIMIT) -> None:
        """Wait until /healthz answers 200; fail with the log if the process dies first."""

        async def healthy() -> bool:
            if not self.alive:
                raise AssertionError(
                    f"chatops {self.args[0]} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                status, _ = await self.get("/healthz")
                return status == 200
            return False

        await wait_until(healthy, timeout, interval=0.05, message=lambda: f"/healthz:\n{self.log_tail()}")


class Processes:
    """Starts `chatops` processes for one test and leaves none behind."""

    def __init__(self, home: Path, *, template: Path | None = None) -> None:
        self.home = home
        self.template = template
        """A migrated SQLite database that a new SQLite database starts as a copy of."""
        self.started: list[ChatopsProcess] = []
        self.migrated: set[str] = set()
        """Databases the release step already ran on."""
        self.groups: list[int] = []
        """Process groups a test found orphaned (commands a killed process had started)."""

    def start(self, *args: str, env: dict[str, str], name: str | None = None) -> ChatopsProcess:
        self.migrate(env)
        label = name or f"{args[0]}-{len(self.started) + 1}"
        proc = ChatopsProcess(list(args), env, self.home, name=label)
        self.started.append(proc)
        return proc

    async def serve(self, env: dict[str, str], *extra: str, name: str | None = None) -> ChatopsProcess:
        """`chatops serve --port <free port>`, ready (its /healthz answers 200)."""
        for attempt in range(3):
            proc = self.start(
                "serve", "--port", str(free_port()), "--host", "127.0.0.1", *extra, env=env, name=name
            )
            try:
                await proc.ready()
            except AssertionError:
                # Someone else took the free port between our look and the bind: another port.
                if proc.alive or "address already in use" not in proc.log_tail().lower() or attempt == 2:
                    raise
                continue
            return proc
        raise AssertionError("unreachable")

    def migrate(self, env: dict[str, str]) -> None:
        """The release step, once per database, before a process uses it: `serve` and `worker`
        refuse a database behind the newest schema revision. What `chatops migrate` does, done
        in this process (a `chatops` process costs ~2 s of CPU to start; the command itself is
        tested in test_migrate_command.py), a new SQLite file starting as a copy of `template`."""
        url = env.get("DATABASE_URL", "")
        assert url, "a chatops process here is given its DATABASE_URL (environment())"
        if url in self.migrated:
            return
        if self.template is not None:
            seed_sqlite(url, self.template)
        migrate_now(url)
        self.migrated.add(url)

    def run(
        self, *args: str, env: dict[str, str], timeout: float = START_LIMIT, migrate: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """A short command (`chatops summary ...`) to completion."""
        if migrate:
            self.migrate(env)
        return subprocess.run(
            [*chatops_command(), *args],
            cwd=self.home,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.alive:
                proc.proc.kill()
            with contextlib.suppress(Exception):
                proc.proc.wait(timeout=STOP_LIMIT)
            proc._log.close()
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


# --- the database, from outside the processes ---------------------------------------------


class Outside:
    """The test's own connection to the database the processes share."""

    def __init__(self, url: str) -> None:
        self.db = Database(url, pooled=False)

    async def close(self) -> None:
        await self.db.dispose()

    async def rows(self, model: type[Any], *where: Any) -> list[Any]:
        async with self.db.read() as session:
            stmt = select(model).where(*where) if where else select(model)
            return list((await session.exec(stmt.order_by(*model.__table__.primary_key.columns))).all())

    async def runs(self) -> list[Run]:
        return await self.rows(Run)

    async def run(self, run_id: int) -> Run:
        [run] = await self.rows(Run, col(Run.id) == run_id)
        return run

    async def steps(self, run_id: int) -> list[Step]:
        return await self.rows(Step, col(Step.run_id) == run_id)

    async def run_where(self, run_id: int, check: Callable[[Run], bool], timeout: float, what: str) -> Run:
        last: list[Run] = []

        async def probe() -> Run | None:
            run = await self.run(run_id)
            last[:] = [run]
            return run if check(run) else None

        try:
            return await wait_until(probe, timeout, message=what)
        except AssertionError:
            raise AssertionError(f"run #{run_id}: timed out waiting for {what}; last: {last}") from None

    async def finished(self, run_id: int, timeout: float = 20.0) -> Run:
        """The run, once final with its outcome reply posted."""
        return await self.run_where(
            run_id,
            lambda r: r.status in FINAL_STATUSES and r.outcome_ts not in (None, PENDING),
            timeout,
            "a final status and a posted outcome",
        )


@contextlib.asynccontextmanager
async def outside(url: str) -> AsyncIterator[Outside]:
    seen = Outside(url)
    try:
        yield seen
    finally:
        await seen.close()


# --- PostgreSQL ------------------------------------------------------------------------------


# Read on import (at collection), before each test's environment clean-up removes it.
_CLUSTER = os.environ.get("CHATOPS_TEST_POSTGRES_URL", "")


def postgres_url() -> str:
    """CHATOPS_TEST_POSTGRES_URL (set by `make test`); skipped without it, failed under CI."""
    url = _CLUSTER
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but CHATOPS_TEST_POSTGRES_URL is unset: run the suite with `make test`")
        pytest.skip("CHATOPS_TEST_POSTGRES_URL is unset (`make test` sets it)")
    if make_url(url).get_backend_name() != "postgresql":
        pytest.fail(f"CHATOPS_TEST_POSTGRES_URL is not a PostgreSQL URL: {url}")
    return url


def libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg's conninfo."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A database of its own on the test cluster (so nothing else's rows are in the way, not
    even those of a test running beside it under xdist), dropped afterwards with whatever is
    still connected to it. Yields its SQLAlchemy URL."""
    base = postgres_url()
    name = f"chatops_faults_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(libpq(base), autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(libpq(base), autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database_sync() -> Iterator[str]:
    """`fresh_database` for synchronous code (a module-scoped fixture)."""
    base = postgres_url()
    name = f"chatops_faults_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq(base), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq(base), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- time ------------------------------------------------------------------------------------


class TestClock:
    """Stored time under the test's control: it flows like the wall clock, from an instant the
    test chooses (`set`), and jumps when the test says (`advance`). Pass it to `set_clock`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, at: datetime) -> None:
        self._base = at.astimezone(UTC)
        self._t0 = time.monotonic()

    def advance(self, delta: timedelta) -> None:
        self._base += delta

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._t0)
