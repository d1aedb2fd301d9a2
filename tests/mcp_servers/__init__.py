"""Real MCP servers for the tests (written with the `mcp` SDK), and how a test runs them.

`widgets.py` is started by chatops itself over stdio (a `command` in the configuration), or
by `HttpWidgets` as a streamable-HTTP server on loopback. Its store, call log and gate are
files in the test's tmp_path, so a test sees from outside what the server did.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from fakes import free_port

WIDGETS = Path(__file__).with_name("widgets.py")
START_LIMIT = 60.0  # seconds an HTTP server may take to listen (importing the SDK is slow)


@dataclass
class WidgetFiles:
    """The files a widgets server works with (passed through its environment)."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "widgets.json"

    @property
    def log(self) -> Path:
        return self.root / "widgets.log"

    @property
    def gate(self) -> Path:
        return self.root / "widgets.gate"

    def environ(self) -> dict[str, str]:
        return {"WIDGETS_FILE": str(self.store), "WIDGETS_LOG": str(self.log), "WIDGETS_GATE": str(self.gate)}

    def widgets(self) -> dict[str, Any]:
        return json.loads(self.store.read_text()) if self.store.exists() else {}

    def calls(self, tool: str | None = None, phase: str = "start") -> list[dict[str, Any]]:
        """The calls the server received, in order (`phase` "end": those that finished)."""
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [c for c in lines if c["phase"] == phase and (tool is None or c["tool"] == tool)]


def stdio_server(name: str = "widgets", *, extra: str = "") -> str:
    """A `[[mcp_servers]]` entry that starts widgets.py over stdio, its files from the environment."""
    return f"""
[[mcp_servers]]
name = "{name}"
command = [{json.dumps(sys.executable)}, {json.dumps(str(WIDGETS))}]
connect_timeout = 20
{extra}
[mcp_servers.env]
WIDGETS_FILE = "{{{{ env.WIDGETS_FILE }}}}"
WIDGETS_LOG = "{{{{ env.WIDGETS_LOG }}}}"
WIDGETS_GATE = "{{{{ env.WIDGETS_GATE }}}}"
"""


class HttpWidgets:
    """widgets.py as a streamable-HTTP server on 127.0.0.1 (a real process), startable again
    on the same port after `kill()`."""

    def __init__(self, files: WidgetFiles, *, token: str = "") -> None:
        self.files = files
        self.token = token
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> HttpWidgets:
        env = {**_base_environment(), **self.files.environ(), "WIDGETS_TOKEN": self.token}
        self.proc = subprocess.Popen(
            [sys.executable, str(WIDGETS), "--http", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(self.files.root / "http-server.log").open("ab"),
        )
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the HTTP widgets server exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the HTTP widgets server did not listen in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> HttpWidgets:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


def _base_environment() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
