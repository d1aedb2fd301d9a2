"""How chatops reaches one configured MCP server: the official SDK's `Client` over stdio or
streamable HTTP, with what the configuration gives it.

- A stdio server gets the SDK's minimal environment (HOME, LOGNAME, PATH, SHELL, TERM,
  USER) plus its `env` (rendered: `{{ env.NAME }}` reads chatops' environment). Its PATH
  starts with the directory of the Python chatops runs on, so `python server.py` finds
  the interpreter that has the `mcp` SDK installed. What it writes to stderr goes to
  chatops' log, never to the terminal (the console draws there).
- An HTTP server gets its `headers` (rendered the same way) on every request.
- When a stdio server's output ends (the process exited), `on_closed` is called at once:
  nothing else in the protocol says so while no request is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

import anyio
import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

from agents.config_mcp import McpServerConfig
from agents.templating import render_text

MODE = "auto"
"""How the protocol version is chosen: "auto" asks for the 2026 protocol (`server/discover`) and
falls back to the `initialize` handshake of older servers (the tests pin "legacy" to play one)."""
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)  # the SDK's own: its streams stay open for minutes
STDERR_GRACE = 1.0  # seconds to read what a stopped server wrote last


def _client_info() -> Implementation:
    try:
        own = version("chatops")
    except PackageNotFoundError:  # running from a checkout that was not installed
        own = "0"
    return Implementation(name="chatops", version=own)


@asynccontextmanager
async def connect(
    cfg: McpServerConfig,
    *,
    on_message: MessageHandlerFnT,
    on_closed: Callable[[], None],
    on_stderr: Callable[[str], None],
) -> AsyncIterator[Client]:
    """A connected (negotiated) client of the server; leaving the block disconnects (and
    stops a stdio server: stdin closed, then SIGTERM, then SIGKILL, by the SDK)."""
    async with AsyncExitStack() as stack:
        transport: Any
        if cfg.command is not None:
            errlog = await stack.enter_async_context(_stderr_lines(on_stderr))
            transport = _watched(stdio_client(stdio_parameters(cfg), errlog=errlog), on_closed)
        else:
            assert cfg.url is not None
            headers = {k: render_text(v, {}) for k, v in cfg.headers.items()}
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT))
            transport = streamable_http_client(render_text(cfg.url, {}), http_client=http)
        client = Client(
            transport,
            mode=MODE,
            read_timeout_seconds=cfg.connect_timeout,  # the handshake and listings; calls set their own
            message_handler=on_message,
            client_info=_client_info(),
            cache=None,  # tool lists are refetched on list_changed, never served stale
        )
        async with client:
            yield client


def stdio_parameters(cfg: McpServerConfig) -> StdioServerParameters:
    assert cfg.command is not None
    env = {k: render_text(v, {}) for k, v in cfg.env.items()}
    own_python = os.path.dirname(sys.executable)
    env.setdefault("PATH", os.pathsep.join([own_python, os.environ.get("PATH", os.defpath)]))
    return StdioServerParameters(command=cfg.command[0], args=cfg.command[1:], env=env, cwd=cfg.cwd)


@asynccontextmanager
async def _watched(transport: Any, on_closed: Callable[[], None]) -> AsyncIterator[Any]:
    """The transport's streams, with `on_closed` called when the server's output ends."""
    async with transport as (read, write):
        forward, receive = anyio.create_memory_object_stream[Any](0)

        async def pump() -> None:
            try:
                async with forward:
                    async for item in read:
                        await forward.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # our own side closed: a disconnect, not the server's doing
            finally:
                on_closed()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                yield receive, write
            finally:
                tg.cancel_scope.cancel()


@asynccontextmanager
async def _stderr_lines(sink: Callable[[str], None]) -> AsyncIterator[TextIO]:
    """A file for a child's stderr whose lines are handed to `sink`."""
    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w")
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    pipe, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb")
    )

    async def pump() -> None:
        while line := await reader.readline():
            sink(line.decode("utf-8", "replace").rstrip())

    task = asyncio.create_task(pump())
    try:
        yield writer
    finally:
        writer.close()  # the child had its own copy: the reader ends once that is closed too
        try:
            with contextlib.suppress(TimeoutError):  # a grandchild may hold it open
                await asyncio.wait_for(task, STDERR_GRACE)  # the rest of what it said (a traceback)
        finally:
            pipe.close()
