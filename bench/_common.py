"""What every benchmark script shares: paths, subprocesses, statistics, tables, machine facts.

Everything listens on 127.0.0.1 and every wait is bounded, so a script always ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PYTHON = sys.executable
# The project itself, and the loopback fakes of tests/ (imported as `fakes`, as the tests do).
for path in (str(REPO), str(REPO / "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-bench"
USERS = [f"U{i:03d}" for i in range(20)]
"""Full members of the fake workspace; requests come from these (users.info is cached per user)."""


# Numbers ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f}"


# Tables -------------------------------------------------------------------------------


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into docs/benchmarks.md)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [f"\n### {title}\n", line(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def emit(text: str) -> None:
    print(text, flush=True)


def save_json(name: str, data: Any) -> None:
    """Results also go to bench/results/<name>.json (untracked), for the record."""
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


# The machine --------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    mem = "unknown"
    with contextlib.suppress(OSError):
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else mem
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def load_average() -> str:
    """The 1-minute load average: how busy the (shared) machine was."""
    with contextlib.suppress(OSError):
        return Path("/proc/loadavg").read_text().split()[0]
    return "?"


def banner(what: str) -> None:
    m = machine()
    emit(
        f"\n## {what}\n\n{time.strftime('%Y-%m-%d %H:%M:%S')} · {m['cpus']} CPUs ({m['cpu']}) · "
        f"{m['memory']} · Python {m['python']} · load average {load_average()} at start"
    )


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size in MiB, from /proc (no psutil)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def postgres_cpu_seconds(database: str) -> float:
    """CPU time so far of the PostgreSQL backends serving `database` (their title names it)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                title = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if title.startswith("postgres: ") and f" {database} " in title:
                    total += cpu_seconds(proc.name)
    return total


# Processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A subprocess this script started (and stops, by its own pid only)."""

    def __init__(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.log_path = Path(tempfile.gettempdir()) / f"chatops-bench-{name}-{os.getpid()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd or REPO,
            env={**clean_env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, prefix: str, timeout: float = 60.0) -> str:
        """Wait for a stdout line starting with `prefix`; return the rest of it."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.proc.stdout.fileno(), False)
        buffer = b""
        while time.monotonic() < deadline:
            chunk = self.proc.stdout.read()
            if chunk:
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith(prefix):
                        return line[len(prefix) :].strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not say {prefix!r}; its log: {self.log_path}\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def wait_http(url: str, timeout: float = 60.0, child: Child | None = None) -> None:
    """Poll a URL until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        if child is not None and child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited early; its log:\n{child.tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post_json(url: str, body: Any = None, timeout: float = 30.0) -> Any:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class FakeSlackProcess(Child):
    """bench/fake_slack_server.py: the loopback fake Slack Web API, served by aiohttp."""

    def __init__(self) -> None:
        super().__init__("fake-slack", [PYTHON, str(BENCH / "fake_slack_server.py")])
        self.port = int(self.read_line("PORT "))
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/api/"

    def log(self) -> list[dict[str, Any]]:
        """Every call received: {t, method, channel, ts, thread_ts, timestamp, user}."""
        return list(get_json(f"{self.base}/_bench/log", timeout=60))

    def reset(self) -> None:
        post_json(f"{self.base}/_bench/reset")


class ModelProcess(Child):
    """bench/model_server.py: an OpenAI-compatible model on loopback, one turn per request."""

    def __init__(
        self, *, delay: float, turns: int, tool: str = "noop", args: str = "{}", handoffs: bool = False
    ) -> None:
        argv = [
            PYTHON,
            str(BENCH / "model_server.py"),
            f"--delay={delay}",
            f"--turns={turns}",
            f"--tool={tool}",
            f"--args={args}",
            *(["--handoffs"] if handoffs else []),
        ]
        super().__init__("model", argv)
        self.port = int(self.read_line("PORT "))
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        return dict(get_json(f"http://127.0.0.1:{self.port}/_bench/stats"))


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Stop every child registered in the list on the way out, whatever happened."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            with contextlib.suppress(Exception):
                child.stop()


def settings(**overrides: Any) -> Any:
    """chatops Settings for a benchmark: the fake Slack, a given database, no .env file."""
    from bot.settings import Settings

    fields: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "openai_api_key": None,
        "chatops_config": None,
    }
    fields.update(overrides)
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def clean_env() -> dict[str, str]:
    """The environment for chatops subprocesses: nothing of the developer's leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "CHATOPS_")) and k not in ("DATABASE_URL", "PORT")
    }
    return env


# PostgreSQL -----------------------------------------------------------------------------


class Postgres:
    """The project's throwaway cluster (scripts/postgres.sh), with a fresh database of our own.

    Started only if it is not running (and then stopped again by `close()`); a cluster that
    was already running (e.g. for `make test`) is left as it was, and its databases untouched.
    """

    def __init__(self, database: str) -> None:
        script = ["bash", str(REPO / "scripts" / "postgres.sh")]
        self.script = script
        self.started_here = subprocess.run([*script, "status"], cwd=REPO, check=False).returncode != 0
        if self.started_here:
            subprocess.run([*script, "start"], cwd=REPO, check=True)
        base = subprocess.run([*script, "url"], cwd=REPO, check=True, capture_output=True, text=True)
        self.admin_url = base.stdout.strip()
        self.url = self.admin_url.rsplit("/", 1)[0] + f"/{database}"
        self.database = database
        self._recreate()

    def _dsn(self, url: str) -> str:
        return url.replace("postgresql+psycopg://", "postgresql://")

    def _recreate(self) -> None:
        import psycopg

        with psycopg.connect(self._dsn(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def connections(self) -> int:
        """Client connections to our database (other than this one)."""
        import psycopg

        with psycopg.connect(self._dsn(self.url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        import psycopg

        with contextlib.suppress(Exception):
            with psycopg.connect(self._dsn(self.admin_url), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if self.started_here:
            subprocess.run([*self.script, "stop"], cwd=REPO, check=False)
