"""The `chatops` command: run, serve, worker, console, migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from datetime import date

from agents.config import load_config
from agents.errors import ConfigError
from bot import logs
from bot.redaction import redactor_for
from bot.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatops", description="An AI-operated operations desk in Slack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="Slack if credentials are set, otherwise the local console")
    serve = sub.add_parser("serve", help="HTTP server for Slack, plus workers")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")
    serve.add_argument("--no-workers", action="store_true", help="do not work runs in this process")
    serve.add_argument("--no-scheduler", action="store_true", help="do not run scheduled jobs here")
    sub.add_parser("worker", help="workers only (scale-out on PostgreSQL)")
    sub.add_parser("console", help="the local console workspace")
    summary = sub.add_parser("summary", help="post the daily summary now")
    summary.add_argument(
        "--date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today so far)"
    )
    summary.add_argument("--force", action="store_true", help="post again even if already posted")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
        quiet = args.command == "console" or (
            args.command == "run" and not (settings.slack_http or settings.slack_socket)
        )
        config = load_config(settings.config_path())  # fail before anything starts
        logs.setup(quiet=quiet, redactor=redactor_for(settings, config))
    except ConfigError as e:
        print(f"chatops: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # pydantic-settings: a bad environment variable
        print(f"chatops: invalid environment: {e}", file=sys.stderr)
        return 2

    from bot import runner  # imported late: the heavy imports follow a valid configuration

    command = args.command
    if command == "run":
        if settings.slack_socket:
            print("chatops: Slack credentials found: connecting in Socket Mode.", file=sys.stderr)
            return _run(runner.socket_mode(settings, migrate=True))
        if settings.slack_http:
            print(f"chatops: Slack credentials found: serving HTTP on port {settings.port}.", file=sys.stderr)
            return _run(runner.serve(settings, host="0.0.0.0", port=settings.port, migrate=True))
        print(
            "chatops: no Slack credentials (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): "
            "starting the local console.",
            file=sys.stderr,
        )
        return _run(runner.console(settings))
    if command == "serve":
        if not settings.slack_http:
            print(
                "chatops serve: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or use `chatops console`).",
                file=sys.stderr,
            )
            return 2
        return _run(
            runner.serve(
                settings,
                host=args.host,
                port=args.port or settings.port,
                workers=not args.no_workers,
                scheduler=not args.no_scheduler,
            )
        )
    if command == "worker":
        if settings.slack_bot_token is None:
            print("chatops worker: set SLACK_BOT_TOKEN (workers report in Slack).", file=sys.stderr)
            return 2
        return _run(runner.worker(settings))
    if command == "console":
        return _run(runner.console(settings))
    if command == "migrate":
        return _run(runner.migrate(settings))
    if command == "summary":
        return _run(runner.summary(settings, day=args.date, force=args.force))
    parser.error(f"unknown command {command}")
    return 2


def _run(coro) -> int:
    try:
        return asyncio.run(_until_signal(coro))
    except KeyboardInterrupt:
        return 130


async def _until_signal(coro) -> int:
    """Run the command; SIGTERM/SIGINT cancel it so it can stop its workers cleanly."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        result = await task
    except asyncio.CancelledError:
        return 0
    return int(result or 0)
