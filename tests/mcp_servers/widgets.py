"""A real MCP server for the tests, written with the `mcp` SDK: widgets kept in a JSON file.

`python widgets.py` serves over stdio; `python widgets.py --http PORT` serves streamable HTTP
on 127.0.0.1:PORT/mcp. What the tests look at from outside, through the environment:

- WIDGETS_FILE: the store (a JSON object name -> {size, color}); it outlives the process.
- WIDGETS_LOG: one JSON line per call: {"tool", "args", "key", "phase"} (`key`: the caller's
  idempotency key from `_meta`; `phase`: "start", and "end" for the slow tools).
- WIDGETS_GATE: a path; the slow tools (paint_widget, set_color) wait while it exists.
- WIDGETS_SECRET: what `reveal_secret` answers (the test checks chatops redacts it).
- WIDGETS_TOKEN: over HTTP, `whoami` says whether the X-Widgets-Token header matched it.
- WIDGETS_LICENCE: a path; when set and missing, the server refuses to start (exit status 2).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

mcp = MCPServer("widgets", log_level="WARNING")


def _store() -> Path:
    return Path(os.environ["WIDGETS_FILE"])


STORE = threading.Lock()  # plain-function tools run in worker threads, several at once


def _load() -> dict[str, Any]:
    path = _store()
    return json.loads(path.read_text()) if path.exists() else {}


def _save(widgets: dict[str, Any]) -> None:
    _store().write_text(json.dumps(widgets, sort_keys=True))


def _log(ctx: Context, tool: str, args: dict[str, Any], phase: str = "start") -> None:
    path = os.environ.get("WIDGETS_LOG")
    if not path:
        return
    meta = ctx.request_context.meta or {}
    line = {"tool": tool, "args": args, "key": meta.get("chatops/idempotency-key"), "phase": phase}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


async def _gate() -> None:
    gate = os.environ.get("WIDGETS_GATE")
    while gate and os.path.exists(gate):  # noqa: ASYNC110, ASYNC240 (a file the test removes)
        await asyncio.sleep(0.02)


@mcp.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False))
def create_widget(name: str, ctx: Context, size: int = 1) -> dict[str, Any]:
    """Create a widget."""
    _log(ctx, "create_widget", {"name": name, "size": size})
    with STORE:
        widgets = _load()
        if name in widgets:
            raise ToolError(f"widget {name} already exists")
        widgets[name] = {"size": size, "color": None}
        _save(widgets)
    return {"name": name, "size": size, "id": len(widgets)}


@mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
def delete_widget(name: str, ctx: Context) -> str:
    """Delete a widget."""
    _log(ctx, "delete_widget", {"name": name})
    with STORE:
        widgets = _load()
        if widgets.pop(name, None) is None:
            return f"there was no widget {name}"
        _save(widgets)
    return f"deleted widget {name}"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def list_widgets(ctx: Context) -> list[str]:
    """The names of the widgets."""
    _log(ctx, "list_widgets", {})
    with STORE:
        return sorted(_load())


@mcp.tool()
def break_widget(name: str, ctx: Context) -> str:
    """Always fails: widgets cannot be broken."""
    _log(ctx, "break_widget", {"name": name})
    raise ToolError(f"widget {name} is unbreakable")


@mcp.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False))
async def paint_widget(name: str, color: str, ctx: Context) -> str:
    """Paint a widget (slow: waits while WIDGETS_GATE exists). Not idempotent."""
    _log(ctx, "paint_widget", {"name": name, "color": color})
    await _gate()
    with STORE:
        widgets = _load()
        widgets.setdefault(name, {"size": 1})["color"] = color
        _save(widgets)
    _log(ctx, "paint_widget", {"name": name, "color": color}, "end")
    return f"painted {name} {color}"


@mcp.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True))
async def set_color(name: str, color: str, ctx: Context) -> str:
    """Set a widget's color (slow: waits while WIDGETS_GATE exists). Idempotent."""
    _log(ctx, "set_color", {"name": name, "color": color})
    await _gate()
    with STORE:
        widgets = _load()
        widgets.setdefault(name, {"size": 1})["color"] = color
        _save(widgets)
    _log(ctx, "set_color", {"name": name, "color": color}, "end")
    return f"{name} is {color}"


@mcp.tool()
def crash(ctx: Context) -> str:
    """The server dies."""
    _log(ctx, "crash", {})
    print("widgets: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


def count_gadgets() -> int:
    """How many gadgets there are (a tool that appears later)."""
    return 42


@mcp.tool()
async def add_gadgets(ctx: Context) -> str:
    """Adds the count_gadgets tool and says the tool list changed."""
    mcp.add_tool(count_gadgets)
    await ctx.notify_tools_changed()  # the 2026 protocol's change stream
    if ctx.protocol_version and ctx.protocol_version < "2026":
        await ctx.session.send_tool_list_changed()  # a handshake-era session's notification
    return "gadgets added"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def reveal_secret() -> str:
    """Says the secret it was given."""
    return f"the secret is {os.environ.get('WIDGETS_SECRET', '')}"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami(ctx: Context) -> dict[str, Any]:
    """Whether the caller sent the right token (HTTP), and the server's process id."""
    token = (ctx.headers or {}).get("x-widgets-token")
    ok = bool(token) and token == os.environ.get("WIDGETS_TOKEN")
    return {"token_ok": ok, "token": token, "pid": os.getpid()}


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def big_report() -> str:
    """A very long answer."""
    return "line of the report\n" * 2000


if __name__ == "__main__":
    licence = os.environ.get("WIDGETS_LICENCE")
    if licence and not os.path.exists(licence):
        print(f"widgets: no licence at {licence}", file=sys.stderr, flush=True)
        sys.exit(2)
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
