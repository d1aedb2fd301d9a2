"""Long-running modes: serve (HTTP), Socket Mode, worker, console, migrate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from aiohttp import web

from bot.http import build_web_app
from bot.services import Services, build_services
from bot.settings import Settings
from bot.slack_app import build_app
from bot.surface import SlackSurface, make_client
from storage.engine import Database

log = logging.getLogger("chatops")

REDELIVER_SECONDS = 30.0


async def migrate(settings: Settings) -> int:
    db = Database(settings.database_url, pooled=False)
    try:
        await db.migrate()
    finally:
        await db.dispose()
    print(f"chatops: schema is up to date ({_safe_url(settings.database_url)}).")
    return 0


async def console(settings: Settings) -> int:
    from bot.console import Console

    await Console(settings).run(sys.stdin)
    return 0


def _slack(settings: Settings) -> tuple[Services, object]:
    assert settings.slack_bot_token is not None
    client = make_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    services = build_services(settings, SlackSurface(client))
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    bolt = build_app(services.intake, client=client, signing_secret=secret)
    return services, bolt


async def serve(
    settings: Settings, *, host: str, port: int, workers: bool = True, scheduler: bool = True
) -> int:
    services, bolt = _slack(settings)
    await services.db.migrate()
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = build_web_app(services, bolt, secret)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    log.info("listening on %s:%s (POST /slack/events, GET /healthz)", host, port)
    try:
        await _background(services, workers=workers, scheduler=scheduler)
    finally:
        await runner.cleanup()
        await services.close()
    return 0


async def socket_mode(settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    services, bolt = _slack(settings)
    await services.db.migrate()
    assert settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())  # type: ignore[arg-type]
    await handler.connect_async()
    log.info("connected to Slack in Socket Mode")
    try:
        await _background(services, workers=True, scheduler=True)
    finally:
        await handler.close_async()
        await services.close()
    return 0


async def worker(settings: Settings) -> int:
    from agents.errors import ActionError

    if settings.slack_bot_token is not None:
        client = make_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
        services = build_services(settings, SlackSurface(client))
    else:
        raise ActionError("chatops worker needs SLACK_BOT_TOKEN to report in Slack")
    await services.db.migrate()
    try:
        await _background(services, workers=True, scheduler=False)
    finally:
        await services.close()
    return 0


async def _background(services: Services, *, workers: bool, scheduler: bool) -> None:
    """Workers and periodic jobs until cancelled; then stop the workers gracefully."""
    tasks = []
    if workers:
        tasks.append(asyncio.create_task(services.worker.run_forever(), name="worker"))
    tasks.append(asyncio.create_task(_redeliver_forever(services), name="redeliver"))
    try:
        await asyncio.gather(*tasks)
    finally:
        if workers:
            await services.worker.stop()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def _redeliver_forever(services: Services) -> None:
    while True:
        await asyncio.sleep(REDELIVER_SECONDS)
        try:
            await services.presenter.redeliver()
        except Exception:  # broad on purpose: retried next period
            log.exception("redelivering outcomes failed")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
