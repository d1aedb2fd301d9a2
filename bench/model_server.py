"""An OpenAI-compatible model on loopback for the benchmarks, in its own process.

Completions are built by the tests' fake (`FakeModel._completion`, tests/fakes/model.py);
what differs is how a turn is chosen and how the latency is simulated. The fake pops
turns from one shared script and sleeps on a thread per request (behind a listen backlog
of 5); with hundreds of runs at once the turns would interleave and connections would
be dropped. Here the turn depends on the conversation itself: a run's first `turns - 1`
requests get one tool call each, the last one gets an answer; the latency is an
`asyncio.sleep`, so 500 requests wait at once in one thread.

Prints `PORT <n>` when listening; stops on SIGTERM.  GET /_bench/stats: counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import _common  # noqa: F401  (sys.path: the project and tests/)
from aiohttp import web
from fakes.model import FakeModel, ScriptedTurn


def build(args: argparse.Namespace, stats: dict[str, int]) -> web.Application:
    fake = FakeModel()  # not started: only its completion format is used

    async def completions(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            done = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
            if done < args.turns - 1:
                turn = ScriptedTurn(tool_calls=[(args.tool, args.args)])
            else:
                turn = ScriptedTurn(content=f"Done after {done + 1} turns.")
            if args.delay:
                await asyncio.sleep(args.delay)
            return web.json_response(fake._completion(body, turn))
        finally:
            stats["in_flight"] -= 1

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/_bench/stats", get_stats)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each turn takes")
    parser.add_argument("--turns", type=int, default=3, help="model turns per run (the last answers)")
    parser.add_argument("--tool", default="noop", help="the tool the other turns call")
    parser.add_argument("--args", default="{}", help="its raw JSON arguments")
    args = parser.parse_args()
    stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}
    runner = web.AppRunner(build(args, stats), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
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
