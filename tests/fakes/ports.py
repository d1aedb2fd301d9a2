"""Ports for servers the tests start in other processes (`chatops serve --port N`, the HTTP
widgets server), which must be named before the process binds them.

A port the kernel hands out (bind to port 0, read it, close) is free only until the kernel
hands it out again, which it may do to anyone before the process binds it: another xdist
worker's fake server takes it now and then, and the process fails to bind or, worse, the test
talks to the other server. These ports come from below the kernel's ephemeral range, which it
never hands out by itself, from a band of each xdist worker's own, in turn, each checked free.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

LOWEST = 10000  # below it are the well-known and registered ports that services use
_lock = threading.Lock()
_next: int | None = None


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, not handed out before in this process
    (until the band wraps around)."""
    global _next
    band = _band()
    if band is None:  # no room below the ephemeral range: the kernel's choice
        return _kernel_port()
    low, high = band
    with _lock:
        if _next is None:
            _next = random.randrange(low, high)  # two suites on one machine: not in lockstep
        for _ in range(high - low):
            port = _next
            _next = low if _next + 1 >= high else _next + 1
            if _bindable(port):
                return port
    raise AssertionError(f"no free port between {low} and {high}")


def _band() -> tuple[int, int] | None:
    """This worker's share of the ports between LOWEST and the ephemeral range."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    size = (ephemeral - LOWEST) // max(workers, 1)
    if size < 100:
        return None
    low = LOWEST + index * size
    return low, low + size


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        # As the servers bind (aiohttp, uvicorn): connections in TIME_WAIT are no obstacle.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
