"""Long-running modes: serve (HTTP), Socket Mode, worker, console, migrate."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from datetime import date

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from agents.config import Config, load_config
from agents.model import Planner
from agents.redaction import Redactor
from bot.background import RunsThread, share_the_interpreter, work
from bot.http import build_web_app
from bot.oauth import OAuth, app_client
from bot.redaction import redactor_for
from bot.services import Services, build_services
from bot.settings import Settings
from bot.slack_app import build_app
from bot.surface import SlackSurface, make_client
from bot.uninstall import Removal
from bot.watchdog import SlackHealth
from bot.workspaces import Workspaces
from storage.engine import Database
from storage.schema import SchemaOutOfDate

log = logging.getLogger("chatops")


async def migrate(settings: Settings) -> int:
    db = Database(settings.database_url, pooled=False)
    try:
        before = await db.schema_revision()
        await db.migrate()
        after = await db.schema_revision()
    finally:
        await db.dispose()
    where = _safe_url(settings.database_url)
    if before == after:
        print(f"chatops: the schema is up to date at revision {after} ({where}).")
    else:
        print(f"chatops: upgraded the schema from {before or 'nothing'} to revision {after} ({where}).")
    return 0


async def console(settings: Settings) -> int:
    from bot.console import Console

    await Console(settings).run(sys.stdin)
    return 0


def _slack(settings: Settings, health: SlackHealth | None = None) -> tuple[Services, AsyncApp]:
    """The services and the bolt app. `health`: the process's record of failed Slack calls,
    when another event loop of the process (bot.background) records them too."""
    services, bolt = _build(settings, health or SlackHealth(), intake=True)
    assert bolt is not None
    return services, bolt


def _runs(settings: Settings, health: SlackHealth) -> Services:
    """The services of a runs' side (the runs' thread of `chatops serve`, bot.background, or a
    `chatops worker`): no bolt app, no OAuth flow, and what the intake's side says at start-up
    is not said twice."""
    return _build(settings, health, intake=False)[0]


def _build(settings: Settings, health: SlackHealth, *, intake: bool) -> tuple[Services, AsyncApp | None]:
    config = load_config(settings.config_path())
    redactor = redactor_for(settings, config)
    if settings.slack_oauth:
        return _many_workspaces(settings, config, redactor, health, intake=intake)
    assert settings.slack_bot_token is not None
    client = make_client(
        settings.slack_bot_token.get_secret_value(), settings.slack_api_url, redactor=redactor
    )
    services = build_services(
        settings,
        SlackSurface(client, on_failure=health.failed),
        config=config,
        slack_health=health,
        redactor=redactor,
    )
    if not intake:
        return services, None
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    bolt = build_app(
        services.intake, services.controls, client=client, signing_secret=secret, redactor=redactor
    )
    return services, bolt


def _many_workspaces(
    settings: Settings, config: Config, redactor: Redactor, health: SlackHealth, *, intake: bool
) -> tuple[Services, AsyncApp | None]:
    """Every workspace that installed the app through OAuth (bot.oauth), each with its own
    bot token (bot.workspaces); a workspace that removes the app stops (bot.uninstall)."""
    assert settings.slack_client_id is not None
    if intake and not (config.alerts.team and (config.alerts.channel or config.summary.channel)):
        log.info(
            "alerts about the whole process (the model, Slack, MCP servers) are posted nowhere: "
            "[alerts] team and channel name the operator's workspace and channel"
        )
    db = Database(settings.database_url)
    workspaces = Workspaces(
        db,
        settings.slack_client_id,
        base_url=settings.slack_api_url,
        redactor=redactor,
        on_failure=health.failed,
    )
    services = build_services(
        settings,
        workspaces.for_team(config.alerts.team or ""),  # the operator's: what is no workspace's
        config=config,
        db=db,
        slack_health=health,
        redactor=redactor,
        surfaces=workspaces,
    )
    services.closers.append(workspaces.close)
    if not intake:
        return services, None
    oauth = OAuth.build(settings, db, workspaces)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    bolt = build_app(
        services.intake,
        services.controls,
        client=app_client(settings, redactor),
        signing_secret=secret,
        redactor=redactor,
        authorize=oauth.authorize,
        oauth_settings=oauth.settings,
        listeners=Removal(db, oauth.store, workspaces, services.presenter).listen,
    )
    return services, bolt


class Server:
    """`chatops serve` as an object: start it (port 0 picks a free port), use it, stop it.

    `runs_thread`: the workers and the scheduler on a thread and event loop of their own
    (bot.background), so that no run delays an ack; False keeps them on the intake's loop,
    where `services` is every service of the process (tests that reach into them).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "0.0.0.0",
        port: int = 3000,
        workers: bool = True,
        scheduler: bool = True,
        migrate: bool = False,
        runs_thread: bool = True,
    ) -> None:
        self.settings = settings
        self.migrate = migrate
        """Upgrade the schema first (`chatops run`); otherwise refuse a database behind head."""
        self.host = host
        self.port = port
        self.workers = workers
        self.scheduler = scheduler
        self.health = SlackHealth()
        self.services, self.bolt = _slack(settings, self.health)
        self.runs: RunsThread | None = None
        if runs_thread and (workers or scheduler):
            self.runs = RunsThread(lambda: _runs(settings, self.health), workers=workers, scheduler=scheduler)
        self._runner: web.AppRunner | None = None
        self._background: asyncio.Task[None] | None = None

    @property
    def background(self) -> Services:
        """The services that work the runs and the scheduled jobs (another thread's, or these)."""
        if self.runs is not None and self.runs.services is not None:
            return self.runs.services
        return self.services

    async def start(self) -> None:
        """Raises SchemaOutOfDate (before listening) when the database needs `chatops migrate`."""
        await _prepare(self.services.db, migrate=self.migrate)
        secret = self.settings.slack_signing_secret
        app = build_web_app(
            self.services,
            self.bolt,
            secret.get_secret_value() if secret else None,
            workers_enabled=self.workers,
            scheduler_enabled=self.scheduler,
            background=lambda: self.background,
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("listening on %s:%s (POST /slack/events, GET /healthz)", self.host, self.port)
        if self.runs is not None:
            # Started once listening, as the workers on one loop are: a run (a poisoned one
            # among them) is not taken before the process can say it is up.
            runs = await self.runs.start()
            assert self.runs.loop is not None
            self.services.presenter.forward_to(runs.presenter, self.runs.loop)
            self.services.intake.on_queued = self.runs.wake
            self.services.controls.wake = self.runs.wake
            self.runs.wake()  # for what was queued before the wiring
            share_the_interpreter()
            self._background = asyncio.create_task(self.runs.finished())
        else:
            self._background = asyncio.create_task(
                work(self.services, workers=self.workers, scheduler=self.scheduler)
            )
        await self._ready()

    async def _ready(self, timeout: float = 10.0) -> None:
        """Return once /healthz would say healthy (workers and scheduler running)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not (
                    (self.background.worker.alive or not self.workers)
                    and (self.background.scheduler_running or not self.scheduler)
                ):
                    if self._background is not None and self._background.done():
                        return  # it failed; stop() reports why
                    await asyncio.sleep(0.01)

    async def wait(self) -> None:
        assert self._background is not None
        await self._background

    async def stop(self) -> None:
        if self.runs is not None:
            await self.runs.stop()
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        if self._runner is not None:
            await self._runner.cleanup()
        await self.services.close()


def settle_memory() -> None:
    """Keep the garbage collector's pauses short in a long-running process.

    Python's cyclic collector walks every container object it tracks. After start-up most
    of them are the libraries' (SQLAlchemy's mappers and caches, pydantic models, slack-bolt,
    the OpenAI client), which live as long as the process: each full collection walked them
    all, holding the event loop for tens of milliseconds, which showed as the tail of the
    acks (docs/benchmarks.md). `gc.freeze()` moves what exists now out of the collector's
    sight; the objects made afterwards are collected as before. (Measured: ack p99 at
    50 events/s 84-107 ms before, 16 ms after.)
    """
    gc.collect()
    gc.freeze()


async def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: bool = True,
    scheduler: bool = True,
    migrate: bool = False,
) -> int:
    server = Server(settings, host=host, port=port, workers=workers, scheduler=scheduler, migrate=migrate)
    try:
        await server.start()
    except SchemaOutOfDate as e:
        await server.services.close()
        return _refuse(e)
    except BaseException:  # stopped (SIGTERM) or failed while starting: stop what did start
        await asyncio.shield(server.stop())
        raise
    settle_memory()
    try:
        await server.wait()
    finally:
        await server.stop()
    return 0


async def socket_mode(settings: Settings, *, migrate: bool = False) -> int:
    """Slack over a WebSocket (bot.socket_mode), with workers and the scheduler in-process."""
    from bot.socket_mode import AppTokenRefused, SocketModeDoor, check_app_token

    assert settings.slack_app_token is not None
    token = settings.slack_app_token.get_secret_value()
    try:
        check_app_token(token)
    except AppTokenRefused as e:
        return _refuse(e)
    services, bolt = _slack(settings)
    try:
        await _prepare(services.db, migrate=migrate)
    except SchemaOutOfDate as e:
        await services.close()
        return _refuse(e)
    door = SocketModeDoor(bolt, token)
    try:
        try:
            await door.open()
        except AppTokenRefused as e:
            return _refuse(e)
        log.info("connected to Slack in Socket Mode")
        settle_memory()
        await work(services, workers=True, scheduler=True)
    finally:
        await door.close_async()
        await services.close()
    return 0


async def worker(settings: Settings) -> int:
    services = _runs(settings, SlackHealth())  # no bolt app, no OAuth flow: it serves no HTTP
    try:
        await services.db.check_schema()
    except SchemaOutOfDate as e:
        await services.close()
        return _refuse(e)
    settle_memory()
    try:
        await work(services, workers=True, scheduler=False)
    finally:
        await services.close()
    return 0


async def summary(settings: Settings, *, day: date | None, force: bool) -> int:
    """Post the summary of `day` (default: today so far) now; without Slack credentials, print it.
    With many workspaces, each workspace's, to its own channel."""
    if settings.slack_bot_token is None and not settings.slack_oauth:
        from bot.console import ConsoleSurface

        services = build_services(settings, ConsoleSurface())
        try:
            await services.db.check_schema()
        except SchemaOutOfDate as e:
            await services.close()
            return _refuse(e)
        chosen = day or services.summaries.today()
        message = services.summaries.render(await services.summaries.report(chosen), chosen)
        print(message.text)
        await services.close()
        return 0
    services, _ = _slack(settings)
    try:
        await services.db.check_schema()
        day = day or services.summaries.today()
        print(f"chatops: {await services.summaries.post_every(day, force=force)}")
    except SchemaOutOfDate as e:
        return _refuse(e)
    finally:
        await services.close()
    return 0


async def operate(settings: Settings, config: Config, verb: str, agent: str, *, reason: str | None) -> int:
    """`chatops pause` and `chatops resume` (bot.operator): straight on the database."""
    from bot import operator

    db = Database(settings.database_url, pooled=False)
    try:
        await db.check_schema()
        if verb == "pause":
            outcome = await operator.pause(db, config, agent, reason=reason)
        else:
            outcome = await operator.resume(db, config, agent)
    except SchemaOutOfDate as e:
        return _refuse(e)
    except operator.UnknownAgent as e:
        print(f"chatops {verb}: {e}", file=sys.stderr)
        return 2
    finally:
        await db.dispose()
    print(f"chatops: {outcome.message}")
    return 0


async def replay(settings: Settings, config: Config, *, run_id: int, model: str | None) -> int:
    """`chatops replay`: the recorded run beside a dry replay of its request (agents.replay)."""
    from agents.dryrun import DryDesk, without_budgets
    from agents.replay import ReplayError
    from agents.replay import replay as replay_run
    from bot.replays import replay_text
    from bot.services import planner_factory

    db = Database(settings.database_url, pooled=False)
    dry = without_budgets(config, model)
    planner_for, close = planner_factory(settings, dry)
    redactor = redactor_for(settings, config)
    try:
        await db.check_schema()
        async with DryDesk.open(dry, planner_for, redactor) as desk:
            done = await replay_run(db, run_id, desk)
            agent = dry.agent(done.original.agent)
            assert agent is not None
            planner = _planner_label(planner_for(agent), model)
        print(replay_text(done, planner=planner, redactor=redactor))
        return 0
    except (SchemaOutOfDate, ReplayError) as e:
        return _refuse(e)
    finally:
        if close is not None:
            await close()
        await db.dispose()


async def evaluate(settings: Settings, config: Config, *, path: str, model: str | None) -> int:
    """`chatops eval`: every case of the file in a dry run, and a score table (agents.evals).
    Exit status 1 when a case fails."""
    from agents.dryrun import DryDesk, without_budgets
    from agents.errors import ConfigError
    from agents.evals import evaluate as evaluate_suite
    from agents.evals import load_suite
    from bot.replays import eval_text
    from bot.services import planner_factory

    try:
        suite = load_suite(path, config)
    except ConfigError as e:
        print(f"chatops: {e}", file=sys.stderr)
        return 2
    dry = without_budgets(config, model)
    planner_for, close = planner_factory(settings, dry)
    redactor = redactor_for(settings, config)
    try:
        async with DryDesk.open(dry, planner_for, redactor) as desk:
            scored = await evaluate_suite(suite, desk)
        planner = _planner_label(planner_for(dry.default_agent), model)
        print(eval_text(scored, planner=planner, source=path, redactor=redactor))
        return 0 if all(s.passed for s in scored) else 1
    finally:
        if close is not None:
            await close()


def _planner_label(planner: Planner, model: str | None) -> str:
    if planner.offline:
        ignored = f"; --model {model} needs OPENAI_API_KEY" if model else ""
        return f"the offline planner (no OPENAI_API_KEY{ignored})"
    return f"model {planner.label}"


async def _prepare(db: Database, *, migrate: bool) -> None:
    if migrate:
        await db.migrate()
    else:
        await db.check_schema()


def _refuse(e: Exception) -> int:
    """An error the operator must fix (the schema, a token), said in one line: exit status 2."""
    print(f"chatops: {e}.", file=sys.stderr)
    return 2


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
