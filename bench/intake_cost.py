"""Profile: the CPU of one delivery's intake, against a bare bolt app (not part of `make bench`).

Both apps get the same signed `app_mention` deliveries through `AsyncApp.async_dispatch`,
in this process, one after the other (no HTTP server, no load generator: what is left is
what the app itself costs). chatops is built as `chatops serve` builds its intake
(`bot.runner._slack`: the bolt app, the intake, the controls, on a real SQLite file) and
stores each request and its run before the ack; its announcements (the 👀 reaction and the
status message) are what the runs' side does in `chatops serve`, so they are counted here
and not sent. Users are full members, known from an earlier delivery (users.info is asked
once per user, as in benchmark 1).

    .venv/bin/python bench/intake_cost.py [--deliveries 3000] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlackProcess,
    banner,
    children,
    emit,
    save_json,
    settings,
    table,
)
from ack_latency import mention
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient


def bodies(n: int, start: int) -> list[tuple[str, dict[str, Any]]]:
    verifier = SignatureVerifier(SIGNING_SECRET)
    out = []
    for k in range(start, start + n):
        body = json.dumps(mention(k, event_prefix="EvCost"))
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": verifier.generate_signature(timestamp=ts, body=body),
        }
        out.append((body, headers))
    return out


async def dispatch_all(app: AsyncApp, items: list[tuple[str, dict[str, Any]]]) -> float:
    """CPU ms per delivery, every ack checked."""
    c = time.process_time()
    for body, headers in items:
        response = await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
        assert response.status == 200, (response.status, response.body)
    return (time.process_time() - c) / len(items) * 1000


def bare(slack_url: str) -> AsyncApp:
    app = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=slack_url), signing_secret=SIGNING_SECRET)

    @app.event("app_mention")
    async def on_mention(ack: Any) -> None:
        await ack()

    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--profile", default="", help="write a cProfile of chatops' deliveries here")
    args = parser.parse_args()
    banner("intake cost: CPU per delivery, in-process, bare bolt against chatops")
    from bot.runner import _slack

    with children() as started:
        slack = FakeSlackProcess()
        started.append(slack)
        tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-intake-"))
        s = settings(slack_api_url=slack.url, database_url=f"sqlite:///{tmp / 'chatops.db'}")
        services, bolt = _slack(s)
        await services.db.migrate()
        announced: list[int] = []
        services.presenter.announce = announced.append  # type: ignore[method-assign,assignment]
        bare_app = bare(slack.url)
        n = args.deliveries
        # Warm both (auth.test, users.info per user, SQLAlchemy's statement cache).
        await dispatch_all(bare_app, bodies(100, 0))
        await dispatch_all(bolt, bodies(100, 0))
        rows = []
        figures: dict[str, list[float]] = {"bare": [], "chatops": []}
        for round_ in range(3):  # interleaved, so a busy moment falls on both
            start = 1000 + round_ * n
            figures["bare"].append(await dispatch_all(bare_app, bodies(n, start)))
            items = bodies(n, start)
            profiler = cProfile.Profile() if args.profile and round_ == 2 else None
            if profiler:
                profiler.enable()
            figures["chatops"].append(await dispatch_all(bolt, items))
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
        stored = len(announced)
        await services.close()
    for name, values in figures.items():
        rows.append([name, str(n), " / ".join(f"{v:.2f}" for v in values), f"{min(values):.2f}"])
    headers = ["app", "deliveries per round", "CPU ms per delivery (3 rounds)", "best"]
    emit(table("CPU per delivery", headers, rows))
    emit(f"\nruns announced by chatops: {stored} (100 warm-up + {3 * n})")
    assert stored == 100 + 3 * n, "every delivery must be one run"
    save_json("intake_cost", {"deliveries": n, **figures})


if __name__ == "__main__":
    asyncio.run(main())
