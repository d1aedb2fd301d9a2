"""Benchmark 1: ack latency of `chatops serve` against a bare bolt app, at 50, 200 and 500 events/s.

Both servers run in their own processes on 127.0.0.1 (so the load generator does not share
their event loop); the fake Slack Web API runs in a third. For each rate, signed
`app_mention` deliveries are sent open-loop (at fixed instants, whatever the answers do)
for BENCH_ACK_SECONDS (default 10) to the bare app and then to chatops, each on a new
connection, and the time from sending to the full answer is recorded. 2% of deliveries
are Slack retries of an earlier event (same event_id, X-Slack-Retry-Num: 1).

`chatops serve` is the real command with its workers and scheduler: it works the runs
(offline planner, a ticket per request) while it acks. Between rates it is given up to
BENCH_DRAIN_SECONDS (default 240) to finish the runs queued so far, so each rate starts
from an empty queue; after the last rate, BENCH_FINAL_DRAIN_SECONDS (default 60). Then the
database is counted: every accepted event must be exactly one request and one run (the
table also says how many runs were still queued when the bounded wait ended).

BENCH_PATCHES=a,b (bench/patches.py) runs chatops with those changes applied.

Targets: p99 <= 1.5x the bare app at 200 events/s; no ack over 3 s at 500 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    BOT_TOKEN,
    PYTHON,
    REPO,
    SIGNING_SECRET,
    USERS,
    Child,
    FakeSlackProcess,
    Postgres,
    banner,
    children,
    cpu_seconds,
    emit,
    free_port,
    ms,
    peak_rss_mb,
    percentile,
    save_json,
    table,
    wait_http,
)
from fakes.slack_api import BOT_USER_ID
from fakes.slack_events import app_mention
from slack_sdk.signature import SignatureVerifier

from storage.engine import Database

RETRY_EVERY = 50  # one delivery in 50 is a retry of an earlier one


@dataclass
class Delivery:
    body: bytes
    retry: bool


@dataclass
class Phase:
    target: str
    rate: int
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    lags: list[float] = field(default_factory=list)
    """How late the generator sent each delivery (it should stay near 0)."""
    accepted_new: int = 0
    """Deliveries of new events answered 200 (retries excluded)."""
    cpu: float = float("nan")
    """CPU seconds the server used during the phase (until its last answer)."""

    def row(self, bare: Phase | None = None) -> list[str]:
        lat = self.latencies
        p99 = percentile(lat, 99)
        ratio = f"{p99 / percentile(bare.latencies, 99):.2f}" if bare and bare.latencies else ""
        over = sum(1 for x in lat if x > 3.0)
        return [
            self.target,
            str(self.rate),
            str(self.sent),
            ms(percentile(lat, 50)),
            ms(percentile(lat, 95)),
            ms(percentile(lat, 99)),
            ms(max(lat) if lat else float("nan")),
            ratio,
            str(over),
            ", ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
            + (f", err:{self.errors}" if self.errors else ""),
            ms(self.cpu / self.sent if self.sent else float("nan")),
            ms(percentile(self.lags, 99)),
        ]


def mention(k: int, *, event_prefix: str = "EvBench") -> dict[str, Any]:
    """The k-th bench request: an `app_mention` asking for a ticket, from one of the bench's
    users, in one of 10 channels."""
    return app_mention(
        f"<@{BOT_USER_ID}> create a ticket for bench request {k}",
        user=USERS[k % len(USERS)],
        channel=f"C{k % 10:03d}",
        ts=f"{1700000000 + k // 1000}.{k % 1000:06d}",
        event_id=f"{event_prefix}{k:08d}",
    )


def deliveries(rate: int, seconds: float, start_id: int) -> list[Delivery]:
    """Signed Slack deliveries: new mentions, and now and then a retry of an earlier one."""
    n = int(rate * seconds)
    out: list[Delivery] = []
    bodies: list[bytes] = []
    for i in range(n):
        if i % RETRY_EVERY == RETRY_EVERY - 1 and bodies:
            out.append(Delivery(bodies[i // 2], retry=True))
            continue
        body = json.dumps(mention(start_id + i)).encode()
        bodies.append(body)
        out.append(Delivery(body, retry=False))
    return out


async def send_all(url: str, rate: int, items: list[Delivery], phase: Phase) -> None:
    """Open-loop: delivery i leaves at start + i/rate, on its own connection."""
    verifier = SignatureVerifier(SIGNING_SECRET)
    ts = str(int(time.time()))
    signed = [
        (d, str(verifier.generate_signature(timestamp=ts, body=d.body.decode()))) for d in items
    ]  # signed before the clock starts, so the generator only sends
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(d: Delivery, sig: str, at: float) -> None:
            headers = {
                "Content-Type": "application/json",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sig,
            }
            if d.retry:
                headers.update({"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
            start = loop.time()
            phase.lags.append(start - at)
            try:
                async with session.post(url, data=d.body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except Exception:  # broad on purpose: a refused or timed-out delivery is counted
                phase.errors += 1
                return
            phase.latencies.append(loop.time() - start)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
            if status == 200 and not d.retry:
                phase.accepted_new += 1

        t0 = loop.time() + 0.1
        tasks = []
        for i, (d, sig) in enumerate(signed):
            at = t0 + i / rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(d, sig, at)))
            phase.sent += 1
        await asyncio.gather(*tasks)


def db_counts(url: str) -> dict[str, Any]:
    """Requests, runs and their statuses, read directly (sqlite3 or psycopg)."""
    if url.startswith("sqlite"):
        con: Any = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30)
    else:
        import psycopg

        con = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        statuses = dict(q("SELECT status, count(*) FROM runs GROUP BY status"))
        return {
            "requests": q("SELECT count(*) FROM requests")[0][0],
            "runs": q("SELECT count(*) FROM runs")[0][0],
            "runs_per_request_max": q(
                "SELECT coalesce(max(n), 0) FROM "
                "(SELECT count(*) AS n FROM runs GROUP BY request_id) AS per_request"
            )[0][0],
            "processed_events": q("SELECT count(*) FROM processed_events")[0][0],
            "statuses": statuses,
            "active": sum(n for s, n in statuses.items() if s in ("queued", "running", "waiting")),
        }
    finally:
        con.close()


async def drain(path: str, limit: float) -> float:
    """Wait until chatops has no active run (bounded); returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if db_counts(path)["active"] == 0:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - start


def chatops_command(profile: str, patch: str) -> list[str]:
    """The real `chatops` console script; with a profile or patches, the same entry point wrapped."""
    if not profile and not patch:
        return [str(Path(PYTHON).parent / "chatops")]
    wrapped = [str(REPO / "bench" / "chatops_patched.py")]
    return [PYTHON, "-m", "cProfile", "-o", profile, *wrapped] if profile else [PYTHON, *wrapped]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=os.environ.get("BENCH_ACK_RATES", "50,200,500"))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_ACK_SECONDS", "10")))
    parser.add_argument("--drain", type=float, default=float(os.environ.get("BENCH_DRAIN_SECONDS", "240")))
    parser.add_argument(
        "--final-drain",
        type=float,
        default=float(os.environ.get("BENCH_FINAL_DRAIN_SECONDS", "60")),
        help="how long the last rate's runs are given to finish before the counts",
    )
    parser.add_argument("--serve-args", default="", help="extra `chatops serve` arguments (experiments)")
    parser.add_argument(
        "--split",
        action="store_true",
        help="`chatops serve --no-workers` for the acks and one `chatops worker` for the runs",
    )
    parser.add_argument(
        "--split-on", choices=["postgresql", "sqlite"], default="postgresql", help="the database of --split"
    )
    parser.add_argument("--profile", default="", help="write a cProfile of chatops serve to this file")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for chatops serve (experiments)"
    )
    parser.add_argument("--patch", default=os.environ.get("BENCH_PATCHES", ""), help="bench/patches.py names")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    banner("1. Ack latency: chatops serve vs a bare bolt AsyncApp (aiohttp)")
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-ack-"))
    pg = Postgres("chatops_bench_ack") if args.split and args.split_on == "postgresql" else None
    db_path = pg.url if pg else f"sqlite:///{tmp / 'chatops.db'}"
    with children() as started:
        slack = FakeSlackProcess()
        started.append(slack)
        bare_port, chatops_port = free_port(), free_port()
        bare = Child(
            "bare-bolt", [PYTHON, str(REPO / "bench" / "bare_bolt_app.py"), str(bare_port), slack.url]
        )
        started.append(bare)
        bare.read_line("READY")
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.url,
            "DATABASE_URL": db_path,
            **dict(kv.split("=", 1) for kv in args.env),
        }
        migrated = Database(db_path, pooled=False)  # the release step: `serve` refuses an old schema
        await migrated.migrate()
        await migrated.dispose()
        chatops = Child(
            "chatops-serve",
            [
                *chatops_command(args.profile, args.patch),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(chatops_port),
                *(["--no-workers"] if args.split else []),
                *args.serve_args.split(),
            ],
            env={**env, "BENCH_PATCHES": args.patch},
            cwd=tmp,
        )
        started.append(chatops)
        wait_http(f"http://127.0.0.1:{chatops_port}/healthz", child=chatops)
        if args.split:
            worker = Child("chatops-worker", [*chatops_command("", args.patch), "worker"], env=env, cwd=tmp)
            started.append(worker)
        targets = {
            "bare bolt": f"http://127.0.0.1:{bare_port}/slack/events",
            "chatops": f"http://127.0.0.1:{chatops_port}/slack/events",
        }
        # Warm-up: first requests pay for auth.test, imports and connection pools.
        warmup = 0
        for name, url in targets.items():
            warm = Phase(name, 20)
            await send_all(url, 20, deliveries(20, 1, 9_000_000), warm)
            if name == "chatops":
                warmup = warm.accepted_new
        await drain(db_path, args.drain)

        phases: list[tuple[Phase, Phase]] = []
        drains: dict[int, float] = {}
        next_id = 0
        accepted_new = 0
        sent_new = 0
        for rate in rates:
            items = deliveries(rate, args.seconds, next_id)
            next_id += len(items)
            bare_phase = Phase("bare bolt", rate)
            cpu = cpu_seconds(bare.pid)
            await send_all(targets["bare bolt"], rate, items, bare_phase)
            bare_phase.cpu = cpu_seconds(bare.pid) - cpu
            chatops_phase = Phase("chatops", rate)
            cpu = cpu_seconds(chatops.pid)
            await send_all(targets["chatops"], rate, items, chatops_phase)
            chatops_phase.cpu = cpu_seconds(chatops.pid) - cpu
            accepted_new += chatops_phase.accepted_new
            sent_new += sum(1 for d in items if not d.retry)
            last = rate == rates[-1]
            drains[rate] = await drain(db_path, args.final_drain if last else args.drain)
            phases.append((bare_phase, chatops_phase))
            emit(
                f"  {rate}/s: chatops p99 {ms(percentile(chatops_phase.latencies, 99))} ms, "
                f"bare p99 {ms(percentile(bare_phase.latencies, 99))} ms; "
                f"queue drained in {drains[rate]:.1f} s"
            )
        chatops_rss = peak_rss_mb(chatops.pid)
        counts = db_counts(db_path)
    if pg:
        pg.close()

    rows = []
    for bare_phase, chatops_phase in phases:
        rows.append(bare_phase.row())
        rows.append(chatops_phase.row(bare_phase))
    headers = [
        "server",
        "events/s",
        "sent",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "p99 ratio",
        "acks > 3 s",
        "HTTP statuses",
        "server CPU ms/event",
        "sender lag p99 ms",
    ]
    patched = f"; patches: {args.patch}" if args.patch else ""
    if args.split:
        patched += "; PostgreSQL, serve --no-workers + 1 chatops worker"
    emit(
        table(
            f"Ack latency ({args.seconds:g} s per rate, new connection per delivery{patched})", headers, rows
        )
    )
    expected = accepted_new + warmup
    # A delivery that failed (500, timeout) may still have been stored: Slack delivers it
    # again and the event_id makes the retry no second run. So: one run per stored request,
    # every acked event stored, and nothing stored that was never sent.
    exact = (
        counts["runs"] == counts["requests"]
        and counts["runs_per_request_max"] == 1
        and expected <= counts["requests"] <= sent_new + warmup
    )
    emit(
        table(
            "Every accepted event is exactly one run",
            [
                "new events acked 200",
                "new events sent",
                "requests stored",
                "runs stored",
                "max runs per request",
                "runs still active",
                "final statuses",
                "drain seconds per rate",
                "chatops peak RSS MB",
                "exact",
            ],
            [
                [
                    expected,
                    sent_new + warmup,
                    counts["requests"],
                    counts["runs"],
                    counts["runs_per_request_max"],
                    counts["active"],
                    ", ".join(f"{k}:{v}" for k, v in sorted(counts["statuses"].items())),
                    ", ".join(f"{r}/s:{s:.0f}" for r, s in drains.items()),
                    f"{chatops_rss:.0f}",
                    "yes" if exact else "NO",
                ]
            ],
        )
    )
    verdicts = []
    for bare_phase, chatops_phase in phases:
        if chatops_phase.rate == 200 and bare_phase.latencies and chatops_phase.latencies:
            ratio = percentile(chatops_phase.latencies, 99) / percentile(bare_phase.latencies, 99)
            verdicts.append(
                ["p99 <= 1.5x bare at 200/s", f"{ratio:.2f}x", "met" if ratio <= 1.5 else "NOT met"]
            )
        if chatops_phase.rate == 500:
            worst = max(chatops_phase.latencies, default=float("inf"))
            ok = worst <= 3.0 and not chatops_phase.errors
            verdicts.append(
                [
                    "no ack over 3 s at 500/s",
                    f"max {ms(worst)} ms, {chatops_phase.errors} errors",
                    "met" if ok else "NOT met",
                ]
            )
    verdicts.append(
        [
            "exactly one run per accepted event",
            f"{counts['runs']} runs for {counts['requests']} requests stored; {expected} events acked",
            "met" if exact else "NOT met",
        ]
    )
    emit(table("Targets", ["target", "measured", "status"], verdicts))
    save_json(
        "ack_latency",
        {
            "phases": [
                {
                    "target": p.target,
                    "rate": p.rate,
                    "sent": p.sent,
                    "statuses": p.statuses,
                    "errors": p.errors,
                    "p50": percentile(p.latencies, 50),
                    "p95": percentile(p.latencies, 95),
                    "p99": percentile(p.latencies, 99),
                    "max": max(p.latencies, default=None),
                }
                for pair in phases
                for p in pair
            ],
            "counts": counts,
            "drains": drains,
            "chatops_peak_rss_mb": chatops_rss,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
