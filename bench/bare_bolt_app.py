"""The baseline for the ack benchmark: a bolt AsyncApp that only acks app_mention.

Same stack as `chatops serve`: an aiohttp web server (AppRunner without access log,
backlog 1024, as bot/runner.py starts it) handing each POST to `AsyncApp.async_dispatch`
through bolt's aiohttp adapter. Its Web API client points at the fake Slack (auth.test
is called once, on the first request, as for chatops).

Usage: bare_bolt_app.py PORT SLACK_API_URL. Prints `READY` when listening; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import BOT_TOKEN, SIGNING_SECRET
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient


def build() -> web.Application:
    bolt = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=sys.argv[2]),
        signing_secret=SIGNING_SECRET,
    )

    @bolt.event("app_mention")
    async def on_mention(ack: Any) -> None:
        await ack()

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    return app


async def main() -> None:
    runner = web.AppRunner(build(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), backlog=1024).start()
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
