"""An OpenAI-compatible model on loopback for the benchmarks, in its own process.

Completions are built by the tests' fake (`FakeModel._completion`, tests/fakes/model.py);
what differs is how a turn is chosen and how the latency is simulated. The fake pops
turns from one shared script and sleeps on a thread per request (behind a listen backlog
of 5); with hundreds of runs at once the turns would interleave and connections would
be dropped. Here the turn depends on the conversation itself: a run's first `turns - 1`
requests get one tool call each, the last one gets an answer; the latency is an
`asyncio.sleep`, so 500 requests wait at once in one thread.

`--handoffs`: a run offered a `transfer_to_<agent>` tool calls it in its first turn (a brief
for the next agent) and answers in its second, once the handoff's outcome came back; a run
offered none goes as above. With `--turns 2`, agents A -> B -> C configured with `handoffs`
make the chain A hands to B, B hands to C, C calls `--tool` and answers, B answers, A answers.
Turns are counted after the conversation's last user message, so a thread's history does not
move a run on.

Prints `PORT <n>` when listening; stops on SIGTERM.  GET /_bench/stats: counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import _common  # noqa: F401  (sys.path: the project and tests/)
from aiohttp import web
from fakes.model import FakeModel, ScriptedTurn


def choose(body: dict[str, Any], args: argparse.Namespace) -> ScriptedTurn:
    """The run's next turn, from its own conversation (and, with --handoffs, its tools)."""
    messages = body.get("messages", [])
    asked = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    done = sum(1 for m in messages[asked:] if m.get("role") == "assistant")
    if args.handoffs:
        names = [t.get("function", {}).get("name", "") for t in body.get("tools") or []]
        transfer = next((n for n in names if n.startswith("transfer_to_")), None)
        if transfer is not None:
            target = transfer.removeprefix("transfer_to_")
            if done == 0:
                brief = json.dumps({"brief": f"Please take this over ({target})."})
                return ScriptedTurn(tool_calls=[(transfer, brief)])
            return ScriptedTurn(content=f"Done: {target} took care of it.")
    if done < args.turns - 1:
        return ScriptedTurn(tool_calls=[(args.tool, args.args)])
    return ScriptedTurn(content=f"Done after {done + 1} turns.")


def build(args: argparse.Namespace, stats: dict[str, int]) -> web.Application:
    fake = FakeModel()  # not started: only its completion format is used

    async def completions(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            turn = choose(body, args)
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
    parser.add_argument("--handoffs", action="store_true", help="call an offered transfer_to_* tool first")
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
