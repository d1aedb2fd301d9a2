"""Benchmark 4: Slack economy: Web API calls per run, and edits per second per thread.

`chatops serve` (bot.runner.Server, in this process, default settings: one edit per
second per thread) takes signed mentions over HTTP; the model (bench/model_server.py,
0.25 s per turn) creates a ticket in each of 5 turns and answers in the 6th, so a run has
11 steps and lasts about 1.5 s, long enough for its status message to want many edits.
The fake Slack (own process) logs every call with its arrival time; calls are attributed
to runs by the request's ts (reactions), the run's thread (posts) and its status
message (edits). users.info is per user and cached, so it is counted apart.

Targets: calls per run <= steps + 4; at most 1 edit per second per thread.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
import patches
from _common import (
    SIGNING_SECRET,
    USERS,
    FakeSlackProcess,
    ModelProcess,
    banner,
    children,
    emit,
    median,
    save_json,
    settings,
    table,
)
from fakes.slack_api import BOT_USER_ID
from fakes.slack_events import SlackSender, app_mention
from sqlmodel import col, func, select

from bot.runner import Server
from storage.models import FINAL_STATUSES, Request, Run, Step
from storage.runs import PENDING


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events within any `window` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def settled(server: Server, n: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with server.services.db.read() as session:
            done = (
                await session.exec(
                    select(func.count()).where(
                        col(Run.status).in_(FINAL_STATUSES),
                        col(Run.outcome_ts).is_not(None),
                        col(Run.outcome_ts) != PENDING,
                    )
                )
            ).one()
        presenter = server.services.presenter
        if done >= n and not presenter._pending and not presenter._background:
            return True
        await asyncio.sleep(0.1)
    return False


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_SLACK_RUNS", "40")))
    parser.add_argument("--rate", type=float, default=10.0, help="mentions per second")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--delay", type=float, default=0.25)
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    args = parser.parse_args()
    applied = patches.apply(args.patch)
    banner("4. Slack economy: Web API calls per run, edits per second per thread")
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-slack-"))
    with children() as started:
        slack = FakeSlackProcess()
        started.append(slack)
        model = ModelProcess(
            delay=args.delay, turns=args.turns, tool="ticket_create", args='{"title": "bench"}'
        )
        started.append(model)
        s = settings(
            slack_api_url=slack.url,
            database_url=f"sqlite:///{tmp / 'chatops.db'}",
            openai_api_key="sk-bench",
            openai_base_url=model.url,
            chatops_model="bench-model",
        )
        server = Server(s, host="127.0.0.1", port=0, scheduler=False, migrate=True)
        await server.start()
        sender = SlackSender(f"http://127.0.0.1:{server.port}/slack/events", SIGNING_SECRET)
        try:
            slack.reset()  # auth.test at start-up is not a run's
            statuses: Counter[int] = Counter()
            for i in range(args.runs):
                body = app_mention(
                    f"<@{BOT_USER_ID}> open tickets for incident {i}",
                    user=USERS[i % len(USERS)],
                    channel=f"C{i % 4:03d}",
                    ts=f"1700000000.{i:06d}",
                )
                statuses[(await sender.event(body)).status] += 1
                await asyncio.sleep(1 / args.rate)
            ok = await settled(server, args.runs, timeout=120)
            async with server.services.db.read() as session:
                runs = list((await session.exec(select(Run))).all())
                requests = {r.id: r for r in (await session.exec(select(Request))).all()}
                steps = Counter(
                    dict(
                        (
                            await session.exec(select(Step.run_id, func.count()).group_by(col(Step.run_id)))
                        ).all()
                    )
                )
        finally:
            await sender.close()
            await server.stop()
        log = slack.log()

    by_request_ts: dict[Any, int | None] = {requests[r.request_id].ts: r.id for r in runs}
    by_thread: dict[Any, int | None] = {(r.channel_id, r.thread_ts): r.id for r in runs}
    by_status: dict[Any, int | None] = {(r.channel_id, r.status_ts): r.id for r in runs}
    per_run: dict[int, Counter[str]] = defaultdict(Counter)
    edits: dict[int, list[float]] = defaultdict(list)
    posts_per_channel: dict[str, list[float]] = defaultdict(list)
    shared: Counter[str] = Counter()
    for call in log:
        method = str(call["method"])
        run_id = None
        if method.startswith("reactions."):
            run_id = by_request_ts.get(call.get("timestamp"))
        elif method == "chat.postMessage":
            run_id = by_thread.get((call.get("channel"), call.get("thread_ts")))
            posts_per_channel[call.get("channel", "")].append(call["t"])
        elif method == "chat.update":
            run_id = by_status.get((call.get("channel"), call.get("ts")))
            if run_id is not None:
                edits[run_id].append(call["t"])
        if run_id is None:
            shared[method] += 1
        else:
            per_run[run_id][method] += 1
    rows = []
    over_budget = 0
    worst_window = 0
    min_gaps: list[float] = []
    for r in runs:
        assert r.id is not None
        calls = sum(per_run[r.id].values())
        budget = steps[r.id] + 4
        over_budget += calls > budget
        window = max_in_window(edits[r.id])
        worst_window = max(worst_window, window)
        times = sorted(edits[r.id])
        min_gaps += [b - a for a, b in itertools.pairwise(times)]
    total_calls = [sum(per_run[r.id].values()) for r in runs if r.id is not None]
    step_counts = [steps[r.id] for r in runs if r.id is not None]
    methods: Counter[str] = Counter()
    for c in per_run.values():
        methods.update(c)
    n = len(runs)
    rows.append(
        [
            n,
            f"{median(step_counts):.0f}",
            f"{median(total_calls):.0f}",
            max(total_calls, default=0),
            f"{sum(total_calls) / max(n, 1):.2f}",
            ", ".join(f"{m} {v / max(n, 1):.2f}" for m, v in sorted(methods.items())),
            ", ".join(f"{m} {v}" for m, v in sorted(shared.items())) or "-",
        ]
    )
    label = f"; patches: {','.join(applied)}" if applied else ""
    emit(
        table(
            f"Web API calls per run ({n} runs of {args.turns} model turns, {args.delay:g} s each{label})",
            [
                "runs",
                "steps per run",
                "median calls per run",
                "max calls per run",
                "mean calls per run",
                "per run, by method",
                "not tied to a run (total)",
            ],
            rows,
        )
    )
    gap = min(min_gaps) if min_gaps else float("nan")
    post_window = max((max_in_window(t) for t in posts_per_channel.values()), default=0)
    emit(
        table(
            "Edits of a run's status message",
            [
                "median edits per run",
                "most edits in any 1 s (worst thread)",
                "shortest gap between two edits s",
                "most posts in 1 s in one channel",
                "runs over steps + 4 calls",
                "all runs finished and reported",
            ],
            [
                [
                    f"{median([len(edits[r.id]) for r in runs if r.id is not None]):.0f}",
                    worst_window,
                    f"{gap:.3f}",
                    post_window,
                    over_budget,
                    "yes" if ok else "NO",
                ]
            ],
        )
    )
    emit(
        table(
            "Targets",
            ["target", "measured", "status"],
            [
                [
                    "calls per run <= steps + 4",
                    f"max {max(total_calls, default=0)} calls for {median(step_counts):.0f} steps",
                    "met" if over_budget == 0 and ok else "NOT met",
                ],
                [
                    "<= 1 edit per second per thread",
                    f"worst: {worst_window} edits within 1 s",
                    "met" if worst_window <= 1 else "NOT met",
                ],
            ],
        )
    )
    save_json(
        "slack_economy",
        {
            "patches": applied,
            "per_run": {str(k): dict(v) for k, v in per_run.items()},
            "shared": dict(shared),
            "steps": {str(k): v for k, v in steps.items()},
            "edits": {str(k): v for k, v in edits.items()},
            "http_statuses": {str(k): v for k, v in statuses.items()},
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
