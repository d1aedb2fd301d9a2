"""The loopback fake Slack Web API (tests/fakes/slack_api.py), served by aiohttp in its own process.

The fake's logic is reused as it is (`FakeSlack.handle`); only the transport differs: the
tests serve it with `http.server` on threads, whose listen backlog of 5 drops connections
when hundreds of runs call Slack at once (SLACK_FACTS.md §8.4). Here one asyncio server
with a backlog of 1024 answers, and every call is logged with the time it arrived, for
the Slack-economy benchmark.

Prints `PORT <n>` when listening; stops on SIGTERM.
  GET  /_bench/log    every call: {t, method, channel, channel_id, ts, thread_ts, timestamp, user}
  POST /_bench/reset  forget the calls (the workspace's messages stay)
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import _common  # noqa: F401  (sys.path: the project and tests/)
from _common import USERS
from aiohttp import web
from fakes.slack_api import FakeSlack

KEYS = ("channel", "channel_id", "ts", "thread_ts", "timestamp", "user", "name")


def build(fake: FakeSlack, log: list[dict[str, Any]]) -> web.Application:
    async def api(request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        reply = fake.handle(request.method, request.path_qs, headers, raw)
        call = fake.calls[-1]
        entry = {"t": time.time(), "method": call.method, "status": call.status, "error": call.error}
        entry.update({k: call.params.get(k) for k in KEYS if call.params.get(k) is not None})
        log.append(entry)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def get_log(_: web.Request) -> web.Response:
        return web.json_response(log)

    async def reset(_: web.Request) -> web.Response:
        log.clear()
        fake.calls.clear()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/_bench/log", get_log)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_route("*", "/api/{method}", api)
    return app


async def main() -> None:
    fake = FakeSlack()
    for user in USERS:
        fake.add_user(user)
    log: list[dict[str, Any]] = []
    runner = web.AppRunner(build(fake, log), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
