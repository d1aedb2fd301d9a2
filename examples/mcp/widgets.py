"""An MCP server to try chatops with: widgets, kept in a JSON file.

chatops starts it for you over stdio when chatops.toml names it (see README, "MCP servers").
It is written with the official `mcp` SDK, which chatops installs, so `python` in the
command finds it. The widgets live in $WIDGETS_FILE (default: widgets.json where it runs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

mcp = MCPServer("widgets", log_level="WARNING")


def _store() -> Path:
    return Path(os.environ.get("WIDGETS_FILE", "widgets.json"))


def _load() -> dict[str, Any]:
    return json.loads(_store().read_text()) if _store().exists() else {}


def _save(widgets: dict[str, Any]) -> None:
    _store().write_text(json.dumps(widgets, indent=2, sort_keys=True))


@mcp.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=False))
def create_widget(name: str, size: int = 1) -> dict[str, Any]:
    """Create a widget of the given size."""
    widgets = _load()
    if name in widgets:
        raise ToolError(f"there is already a widget called {name}")
    widgets[name] = {"size": size}
    _save(widgets)
    return {"name": name, "size": size}


@mcp.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True))
def resize_widget(name: str, size: int) -> dict[str, Any]:
    """Change a widget's size; says what it was before."""
    widgets = _load()
    if name not in widgets:
        raise ToolError(f"there is no widget called {name}")
    previous = widgets[name]["size"]
    widgets[name]["size"] = size
    _save(widgets)
    return {"name": name, "size": size, "previous": previous}


@mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
def delete_widget(name: str) -> str:
    """Delete a widget for good."""
    widgets = _load()
    if widgets.pop(name, None) is None:
        return f"there was no widget called {name}"
    _save(widgets)
    return f"deleted {name}"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def list_widgets() -> dict[str, Any]:
    """Every widget and its size."""
    return _load()


if __name__ == "__main__":
    mcp.run()
