"""The composition root: settings -> database, config, runtime, worker, presenter, intake."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from agents import tracing
from agents.actions.registry import Registry
from agents.config import AgentConfig, Config, load_config
from agents.mcp import McpManager
from agents.model import OpenAIPlanner, Planner, make_client
from agents.offline import OfflinePlanner
from agents.redaction import Redactor
from agents.runtime import Runtime
from agents.worker import Worker, new_worker_id
from bot.controls import Controls
from bot.intake import Intake
from bot.presenter import Presenter
from bot.redaction import redactor_for
from bot.settings import Settings
from bot.summary import Summaries
from bot.surface import OneSurface, Surface, Surfaces
from bot.watchdog import SlackHealth, Watchdog
from storage.engine import Database

CLOSE_GRACE = 5.0  # seconds for the presenter to finish what it is showing when the process stops

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    config: Config
    db: Database
    surface: Surface
    presenter: Presenter
    runtime: Runtime
    worker: Worker
    intake: Intake
    controls: Controls
    summaries: Summaries
    watchdog: Watchdog
    scheduler_running: bool = False
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Close what the services hold open: MCP servers, the model client, the database.

        Outcomes still being shown get a few seconds; the next start's sweep delivers the rest.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.presenter.drain(), CLOSE_GRACE)
        for closer in self.closers:
            await closer()
        await self.db.dispose()


async def _stop_tracing() -> None:
    """Export the spans still buffered (a blocking HTTP post: off the event loop) and stop."""
    await asyncio.to_thread(tracing.shutdown)


def planner_factory(
    settings: Settings, config: Config
) -> tuple[Callable[[AgentConfig], Planner], Callable[[], Awaitable[None]] | None]:
    """One planner per model and output limit (the offline planner when no API key is set), and
    how to close the model client. Each asks its model as its `[models."<name>"]` entry says."""
    if settings.openai_api_key is None:
        offline = OfflinePlanner()
        return (lambda agent: offline), None
    client = make_client(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout=settings.chatops_model_timeout,
    )
    planners: dict[tuple[str, int], Planner] = {}

    def planner_for(agent: AgentConfig) -> Planner:
        model = agent.model or settings.chatops_model
        key = (model, agent.max_output_tokens)
        if key not in planners:
            shape = config.model(model)
            planners[key] = OpenAIPlanner(
                client,
                model,
                max_output_tokens=agent.max_output_tokens,
                max_tokens_param=shape.max_tokens_param,
                temperature=None if shape.temperature is False else shape.temperature,
                retries=settings.chatops_model_retries,
            )
        return planners[key]

    return planner_for, client.close


def build_services(
    settings: Settings,
    surface: Surface,
    *,
    config: Config | None = None,
    db: Database | None = None,
    slack_health: SlackHealth | None = None,
    redactor: Redactor | None = None,
    surfaces: Surfaces | None = None,
) -> Services:
    config = config or load_config(settings.config_path())
    redactor = redactor or redactor_for(settings, config)
    db = db or Database(settings.database_url)
    surfaces = surfaces or OneSurface(surface)  # many workspaces: bot.workspaces
    presenter = Presenter(
        db,
        surface,
        edit_interval=settings.chatops_edit_interval,
        loading=settings.chatops_loading_status,
        loading_refresh=settings.chatops_loading_refresh_seconds,
        stream_answers=settings.chatops_stream_answers,
        surfaces=surfaces,
    )
    planner_for, close_model = planner_factory(settings, config)
    mcp = McpManager(config.mcp_servers)  # connects when started (bot/runner.py) or first needed
    runtime = Runtime(
        db=db,
        config=config,
        registry=Registry(config, mcp=mcp),
        planner_for=planner_for,
        chat=surface,
        chats=surfaces.for_team,
        owner=surfaces.owner,
        reporter=presenter,
        worker_id=new_worker_id(),
        lease=timedelta(seconds=settings.chatops_lease_seconds),
        model_outage=timedelta(minutes=settings.chatops_model_outage_minutes),
        max_crashes=settings.chatops_max_crashes,
        redactor=redactor,
        mcp=mcp,
    )
    worker = Worker(
        runtime, concurrency=settings.chatops_workers, poll_interval=settings.chatops_poll_seconds
    )
    summaries = Summaries(db, config, surface, surfaces=surfaces)
    controls = Controls(
        db, config, surface, presenter, wake=worker.wake, summaries=summaries, surfaces=surfaces
    )
    runtime.roles = controls.authority
    intake = Intake(db, config, presenter, on_queued=worker.wake, role_of=controls.role_of)
    watchdog = Watchdog(
        db,
        config,
        surface,
        slack_health or SlackHealth(),
        max_crashes=settings.chatops_max_crashes,
        mcp=mcp,
        surfaces=surfaces,
    )
    services = Services(
        settings, config, db, surface, presenter, runtime, worker, intake, controls, summaries, watchdog
    )
    services.closers.append(mcp.stop)  # after the workers: no run is left to call a tool
    if tracing.wanted() and not tracing.enabled():  # the process's first services: traces on
        tracing.configure(redactor=redactor)
        services.closers.append(_stop_tracing)
    if close_model is not None:
        services.closers.append(close_model)
    close_surface = getattr(surface, "close", None)
    if close_surface is not None:
        services.closers.append(close_surface)
    return services
