"""The `chatops` command explains itself: help, version, descriptions, one-line errors that
say what to do, partial Slack credentials named, and no library chatter on stderr.

Every test runs the installed console script, as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest
from fakes import FakeSlack, free_port, wait_until

from bot.cli import DESCRIPTIONS

COMMANDS = ["run", "serve", "worker", "console", "summary", "migrate", "replay", "eval"]


def _environment(**variables: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "CHATOPS_")) and k not in ("DATABASE_URL", "PORT")
    }
    env.update(variables)
    return env


def chatops(*args: str, stdin: str = "", **variables: str) -> subprocess.CompletedProcess[str]:
    """`chatops <args>` in the test's directory (cwd is tmp_path), with only `variables` set."""
    script = Path(sys.executable).with_name("chatops")
    return subprocess.run(
        [str(script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_environment(**variables),
        timeout=60,
    )


def test_chatops_alone_prints_the_help_and_succeeds() -> None:
    result = chatops()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: chatops")
    for name in COMMANDS:
        assert f"\n    {name} " in result.stdout, name
    assert result.stderr == ""


def test_version_comes_from_the_package_metadata() -> None:
    result = chatops("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"chatops {metadata.version('chatops')}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_describes_itself(name: str) -> None:
    result = chatops(name, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: chatops {name}")
    # argparse rewraps the description; compare its words.
    assert " ".join(DESCRIPTIONS[name].split()) in " ".join(result.stdout.split())


@pytest.mark.parametrize("value", ["2024-13-01", "20240131", "yesterday", "2024-1-5"])
def test_a_bad_date_says_the_expected_format_in_one_line(value: str) -> None:
    result = chatops("summary", "--date", value)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("chatops summary: argument --date:")
    assert "YYYY-MM-DD" in line and repr(value) in line


def test_a_usage_error_is_one_line() -> None:
    result = chatops("serve", "--port", "eighty")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "--port" in line and "chatops serve --help" in line


BOT, SECRET, APP = "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"
CLIENT_ID, CLIENT_SECRET = "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"
PARTIAL = [
    ("run", {BOT: "xoxb-1"}, f"chatops run: {BOT} is set but {SECRET} is missing"),
    ("run", {SECRET: "s3cret"}, f"chatops run: {SECRET} is set but {BOT} is missing"),
    ("run", {APP: "xapp-1"}, f"chatops run: {APP} is set but {BOT} is missing"),
    (
        "run",
        {APP: "xapp-1", SECRET: "s3cret", BOT: ""},
        f"chatops run: {SECRET} and {APP} are set but {BOT} is missing",
    ),
    ("serve", {BOT: "xoxb-1"}, f"chatops serve: {SECRET} is missing"),
    ("serve", {SECRET: "s3cret"}, f"chatops serve: {BOT} is missing"),
    ("serve", {}, f"chatops serve: {BOT} and {SECRET} are missing"),
    ("worker", {SECRET: "s3cret"}, f"chatops worker: {BOT} is missing"),
    ("summary", {APP: "xapp-1"}, f"chatops summary: {APP} is set but {BOT} is missing"),
    # Many workspaces (OAuth): the app's client id and secret instead of a bot token.
    (
        "run",
        {BOT: "xoxb-1", SECRET: "s3cret", CLIENT_ID: "1.2", CLIENT_SECRET: "c"},
        f"chatops run: {BOT} and {CLIENT_ID} are both set: one workspace by its bot token, or many",
    ),
    (
        "worker",
        {BOT: "xoxb-1", CLIENT_ID: "1.2", CLIENT_SECRET: "c"},
        f"chatops worker: {BOT} and {CLIENT_ID}",
    ),
    (
        "serve",
        {CLIENT_ID: "1.2", CLIENT_SECRET: "c"},
        f"chatops serve: {SECRET} is missing: installing in many",
    ),
    ("run", {CLIENT_ID: "1.2", CLIENT_SECRET: "c"}, f"chatops run: {SECRET} is missing: installing in many"),
    (
        "run",
        {CLIENT_ID: "1.2", SECRET: "s3cret"},
        f"chatops run: {CLIENT_ID} is set but {CLIENT_SECRET} is missing",
    ),
    (
        "serve",
        {CLIENT_SECRET: "c", SECRET: "s3cret"},
        f"chatops serve: {CLIENT_SECRET} is set but {CLIENT_ID} is",
    ),
    (
        "run",
        {CLIENT_ID: "1.2", CLIENT_SECRET: "c", SECRET: "s3cret", APP: "xapp-1"},
        f"chatops run: {APP} is set with {CLIENT_ID}: installing in many workspaces serves Slack over HTTP",
    ),
]


@pytest.mark.parametrize(("command", "variables", "message"), PARTIAL)
def test_partial_slack_credentials_name_the_missing_variable(
    command: str, variables: dict[str, str], message: str, tmp_path: Path
) -> None:
    """Never a silent fall-back to the console, never a start that fails later."""
    result = chatops(command, stdin="status\n", **variables)
    assert result.returncode == 2, result
    assert result.stdout == ""  # the console did not open
    [line] = result.stderr.splitlines()
    assert line.startswith(message), line
    assert not (tmp_path / "chatops.db").exists()  # nothing started


def test_without_slack_credentials_run_opens_the_console_saying_so_in_one_line(tmp_path: Path) -> None:
    result = chatops("run", stdin="status\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "chatops: no Slack credentials (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): starting the local console."
    ]
    assert "*Agents*" in result.stdout


@pytest.mark.parametrize("args", [["migrate"], ["summary"], ["console"]])
def test_commands_that_finish_print_no_warning(args: list[str]) -> None:
    if args != ["migrate"]:
        assert chatops("migrate").returncode == 0  # `summary` refuses a database without the schema
    result = chatops(*args, stdin="status\n")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower() and "Traceback" not in result.stderr


async def test_serve_starts_without_a_warning(fake_slack: FakeSlack, tmp_path: Path) -> None:
    """bolt warned that `client` wins over SLACK_BOT_TOKEN at every start: gone."""
    port = free_port()
    env = _environment(
        SLACK_BOT_TOKEN="xoxb-cli",
        SLACK_SIGNING_SECRET="cli-signing-secret",
        SLACK_API_URL=fake_slack.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'chatops.db'}",
    )
    log = tmp_path / "serve.log"
    assert _start(["migrate"], env, tmp_path / "migrate.log").wait(timeout=60) == 0  # the release step
    assert "warning" not in (tmp_path / "migrate.log").read_text().lower()
    proc = _start(["serve", "--port", str(port)], env, log)
    try:

        async def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
            return False

        await wait_until(ready, 60, interval=0.05, message=lambda: log.read_text())
    finally:
        assert _stop(proc) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines, "serve logs that it listens"
    assert [line for line in lines if line["level"] not in ("info", "debug")] == []


async def test_run_with_the_apps_credentials_serves_the_install_link_without_a_warning(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """SLACK_CLIENT_ID and SLACK_CLIENT_SECRET: `chatops run` migrates, says so in one line, and
    serves /slack/install (a redirect to Slack's authorize page) beside /slack/events."""
    port = free_port()
    env = _environment(
        SLACK_CLIENT_ID="1111.2222",
        SLACK_CLIENT_SECRET="cli-client-secret",
        SLACK_SIGNING_SECRET="cli-signing-secret",
        SLACK_API_URL=fake_slack.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'chatops.db'}",
        PORT=str(port),
    )
    log = tmp_path / "run.log"
    proc = _start(["run"], env, log)
    try:

        async def install_link() -> int | None:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with aiohttp.ClientSession() as session:
                    url = f"http://127.0.0.1:{port}/slack/install"
                    async with session.get(url, allow_redirects=False) as response:
                        assert response.headers["Location"].startswith(
                            "https://slack.com/oauth/v2/authorize?"
                        )
                        return response.status
            return None

        assert await wait_until(install_link, 60, interval=0.05, message=lambda: log.read_text()) == 302
    finally:
        assert _stop(proc) == 0
    said, *logged = log.read_text().splitlines()
    assert said.startswith("chatops: Slack app credentials found (SLACK_CLIENT_ID): serving every workspace")
    lines = [json.loads(line) for line in logged]
    assert [line for line in lines if line["level"] not in ("info", "debug")] == []


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("chatops")), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=15)
