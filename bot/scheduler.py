"""Scheduled jobs (APScheduler 3.x): the daily summary, the watchdog, housekeeping."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.services import Services

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 30
WATCHDOG_SECONDS = 60


def build_scheduler(services: Services) -> AsyncIOScheduler:
    config = services.config
    scheduler = AsyncIOScheduler(timezone=config.summary.timezone)
    hour, minute = (int(x) for x in config.summary.time.split(":"))
    scheduler.add_job(
        _guarded(services.summaries.post_every),
        CronTrigger(hour=hour, minute=minute, timezone=config.summary.timezone),
        id="summary",
        misfire_grace_time=3600,
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        _guarded(services.watchdog.check),
        IntervalTrigger(seconds=WATCHDOG_SECONDS),
        id="watchdog",
        coalesce=True,
        max_instances=1,
    )
    for job in (services.presenter.redeliver, services.controls.expire_approvals):
        scheduler.add_job(
            _guarded(job),
            IntervalTrigger(seconds=HOUSEKEEPING_SECONDS),
            id=job.__name__,
            coalesce=True,
            max_instances=1,
        )
    return scheduler


async def start(services: Services) -> AsyncIOScheduler:
    """Start the jobs; a summary missed while nothing ran (a restart at 09:00) is posted now."""
    scheduler = build_scheduler(services)
    scheduler.add_job(_guarded(services.summaries.catch_up), id="summary_catch_up")  # runs at once
    scheduler.start()
    return scheduler


def _guarded(job: Callable[..., Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        try:
            return await job()
        except Exception:  # broad on purpose: a failed job is logged and runs again next time
            log.exception("scheduled job %s failed", getattr(job, "__name__", job))
            return None

    run.__name__ = getattr(job, "__name__", "job")
    return run
