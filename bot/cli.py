"""The `chatops` command: run, serve, worker, console, summary, migrate, pause, resume, replay, eval."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from datetime import date
from importlib import metadata
from typing import NoReturn

from agents.config import load_config
from agents.errors import ConfigError
from bot import logs
from bot.redaction import redactor_for
from bot.settings import Settings

DESCRIPTIONS = {
    "run": (
        "Start chatops the way the environment says: Slack over HTTP when SLACK_BOT_TOKEN and "
        "SLACK_SIGNING_SECRET are set, Socket Mode when SLACK_BOT_TOKEN and SLACK_APP_TOKEN are, "
        "and the local console when no Slack credential is set. With SLACK_CLIENT_ID and "
        "SLACK_CLIENT_SECRET (and SLACK_SIGNING_SECRET) instead of a bot token, it serves every "
        "workspace that installs the app through /slack/install. A partial set is an error that "
        "names the missing variable."
    ),
    "serve": (
        "Serve Slack over HTTP: POST /slack/events (Events API, slash commands, interactivity), "
        "GET /healthz and GET /metrics, with the workers and the scheduled jobs in the same "
        "process unless told otherwise. Needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or "
        "SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and SLACK_SIGNING_SECRET for many workspaces (then "
        "GET /slack/install and GET /slack/oauth_redirect install the app)."
    ),
    "worker": (
        "Work queued runs and nothing else: start as many as you need next to `chatops serve "
        "--no-workers` on one PostgreSQL database. Needs SLACK_BOT_TOKEN (workers report in Slack)."
    ),
    "console": (
        "A Slack-like workspace in this terminal, through the same handlers and runtime as "
        "Slack; no credentials needed. Reads typed lines, or stdin lines when it is not a "
        "terminal. /help lists the console commands."
    ),
    "summary": (
        "Post the daily summary now, to the [summary] channel of the configuration (once per "
        "date and channel unless --force). Without SLACK_BOT_TOKEN it is printed instead."
    ),
    "migrate": "Create or upgrade the database schema at DATABASE_URL; an existing database keeps its data.",
    "pause": (
        "Pause an agent (or all) in every workspace, from where chatops runs: the emergency stop "
        "that needs neither Slack nor a running desk, only DATABASE_URL. No new action starts; runs "
        "in flight wait at their next step, in every process. Audited as the operator."
    ),
    "resume": (
        "Lift a pause of every workspace set by `chatops pause`, or by an agent at its daily cost "
        "cap (then it may spend another cap's worth today); the runs that waited continue. A "
        "workspace's own pauses are lifted in that workspace, with `resume`."
    ),
    "replay": (
        "Run a recorded run's request again against the configuration of now (or --config FILE, "
        "or another --model), in a dry run: the real planner (OPENAI_API_KEY, else the offline "
        "planner) and loop on a throwaway database, where a call the recorded run made gets the "
        "result it got then and any other call is not run. Prints both runs' tool calls side by "
        "side. The database at DATABASE_URL is only read; nothing reaches Slack."
    ),
    "eval": (
        "Run a file of cases (a request, the tool calls it should make or must not) in a dry run "
        "and print a score table; exit status 1 when a case fails. evals/builtin.toml is a set "
        "for the built-in actions. No action is run, no database but a throwaway one is written."
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where the usage is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chatops",
        description="An AI-operated operations desk in Slack.",
        epilog="`chatops <command> --help` describes a command; `chatops run` starts chatops.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=DESCRIPTIONS[name])

    command("run", "Slack if credentials are set, otherwise the local console")
    serve = command("serve", "HTTP server for Slack, plus workers and scheduled jobs")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    serve.add_argument("--no-workers", action="store_true", help="do not work runs in this process")
    serve.add_argument("--no-scheduler", action="store_true", help="do not run scheduled jobs here")
    command("worker", "workers only (scale-out on PostgreSQL)")
    command("console", "the local console workspace")
    summary = command("summary", "post the daily summary now")
    summary.add_argument(
        "--date",
        type=_day,
        default=None,
        metavar="YYYY-MM-DD",
        help="the day to sum up (default: today so far)",
    )
    summary.add_argument("--force", action="store_true", help="post again even if already posted")
    command("migrate", "create or upgrade the database schema")
    pause = command("pause", "pause an agent, or all, in every workspace (no Slack needed)")
    pause.add_argument("agent", metavar="AGENT", help="an agent's name, or `all`")
    pause.add_argument("--reason", default=None, help="why (kept in the audit log and shown in status)")
    resume = command("resume", "lift a pause of every workspace (`chatops pause`, a daily cost cap)")
    resume.add_argument("agent", metavar="AGENT", help="an agent's name, or `all`")
    replay = command("replay", "run a recorded request again, in a dry run, and compare its tool calls")
    replay.add_argument("run", type=_run_number, metavar="RUN", help="the run's number (as in `run #12`)")
    evaluate = command("eval", "score a file of cases, in a dry run")
    evaluate.add_argument("file", metavar="FILE", help="a TOML file of [[cases]] (see evals/builtin.toml)")
    for dry in (replay, evaluate):
        dry.add_argument("--model", default=None, metavar="M", help="every agent's model, instead of its own")
        dry.add_argument(
            "--config", default=None, metavar="FILE", help="this configuration instead of CHATOPS_CONFIG's"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        # A bare `chatops` asks what this is: the help is the answer, on stdout with status 0
        # (as pip, docker and kubectl do); 2 stays the status of real usage errors.
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    command = args.command

    try:
        settings = Settings()
    except Exception as e:  # pydantic-settings: a bad environment variable
        print(f"chatops: invalid environment: {e}", file=sys.stderr)
        return 2
    problem = _credentials_problem(command, settings)
    if problem:
        print(f"chatops {command}: {problem}", file=sys.stderr)
        return 2
    try:
        quiet = command in ("console", "replay", "eval", "pause", "resume") or (
            command == "run" and not (settings.slack_http or settings.slack_socket or settings.slack_oauth)
        )
        chosen = getattr(args, "config", None)  # replay and eval may try another configuration
        config = load_config(chosen or settings.config_path())  # fail before anything starts
        logs.setup(quiet=quiet, redactor=redactor_for(settings, config))
    except ConfigError as e:
        print(f"chatops: {e}", file=sys.stderr)
        return 2

    from bot import runner  # imported late: the heavy imports follow a valid configuration
    from bot.background import intake_loop

    if command == "run":
        if settings.slack_oauth:
            print(
                f"chatops: Slack app credentials found (SLACK_CLIENT_ID): serving every workspace that "
                f"installs it over HTTP on port {settings.port} (install at /slack/install).",
                file=sys.stderr,
            )
            served = runner.serve(settings, host="0.0.0.0", port=settings.port, migrate=True)
            return _run(served, loop_factory=intake_loop)
        if settings.slack_socket:
            print("chatops: Slack credentials found: connecting in Socket Mode.", file=sys.stderr)
            return _run(runner.socket_mode(settings, migrate=True))
        if settings.slack_http:
            print(f"chatops: Slack credentials found: serving HTTP on port {settings.port}.", file=sys.stderr)
            served = runner.serve(settings, host="0.0.0.0", port=settings.port, migrate=True)
            return _run(served, loop_factory=intake_loop)
        print(
            "chatops: no Slack credentials (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): "
            "starting the local console.",
            file=sys.stderr,
        )
        return _run(runner.console(settings))
    if command == "serve":
        return _run(
            runner.serve(
                settings,
                host=args.host,
                port=args.port or settings.port,
                workers=not args.no_workers,
                scheduler=not args.no_scheduler,
            ),
            loop_factory=intake_loop,
        )
    if command == "worker":
        return _run(runner.worker(settings))
    if command == "console":
        return _run(runner.console(settings))
    if command == "migrate":
        return _run(runner.migrate(settings))
    if command == "summary":
        return _run(runner.summary(settings, day=args.date, force=args.force))
    if command in ("pause", "resume"):
        reason = getattr(args, "reason", None)
        return _run(runner.operate(settings, config, command, args.agent, reason=reason))
    if command == "replay":
        return _run(runner.replay(settings, config, run_id=args.run, model=args.model))
    if command == "eval":
        return _run(runner.evaluate(settings, config, path=args.file, model=args.model))
    parser.error(f"unknown command {command}")
    return 2


def _credentials_problem(command: str, settings: Settings) -> str | None:
    """What keeps `command` from starting with the Slack credentials as set, naming the variable."""
    if command in ("run", "serve", "worker", "summary") and settings.slack_oauth:
        from bot.oauth import problem  # many workspaces (installed through OAuth)

        return problem(settings, serving=command in ("run", "serve"))
    if command == "run":
        return settings.slack_partial()
    if command == "summary" and "SLACK_BOT_TOKEN" not in settings.slack_given():
        # Printed here when no Slack credential is set at all; posted with SLACK_BOT_TOKEN.
        return settings.slack_partial()
    if command == "serve":
        missing = settings.slack_missing("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
        why = "serving Slack over HTTP needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET"
        return f"{missing}: {why} (`chatops console` needs neither)" if missing else None
    if command == "worker":
        missing = settings.slack_missing("SLACK_BOT_TOKEN")
        return f"{missing}: workers report in Slack" if missing else None
    return None


def _day(text: str) -> date:
    """A --date value: exactly YYYY-MM-DD (fromisoformat alone would take 20240131 and 2024-W05-3)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}")


def _run_number(text: str) -> int:
    """A run's number: `12` or `#12`."""
    number = text.removeprefix("#")
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"expected a run number like 12, got {text!r}")
    return int(number)


def _version() -> str:
    try:
        return metadata.version("chatops")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _run(coro, *, loop_factory=None) -> int:
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_until_signal(coro))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `chatops summary | head`: the reader left, which is no error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush is quiet
        return 0


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
