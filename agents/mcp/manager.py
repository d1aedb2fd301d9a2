"""The MCP servers of the configuration: connected once per process, shared by its runs.

The runtime owns one manager. Servers connect in the background (`start`), so a process
never waits on a slow one to come up; a run of an agent that uses a server waits at most
the server's connect_timeout for its first tool listing (`ready`). Its actions are rebuilt
whenever the server lists its tools again (list_changed, a restart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import jsonschema
from mcp_types import Tool

from agents.actions.base import Action
from agents.config_mcp import MAX_NAME, TOOL_NAME, McpServerConfig, split_action_name
from agents.mcp.action import McpToolAction
from agents.mcp.connection import Backoff, ServerConnection, ServerState

log = logging.getLogger(__name__)


class McpManager:
    def __init__(self, servers: Sequence[McpServerConfig], *, backoff: Backoff | None = None) -> None:
        self.connections = {s.name: ServerConnection(s, backoff=backoff) for s in servers}
        self._built: dict[str, tuple[int, dict[str, Action]]] = {}

    def start(self) -> None:
        """Connect every server in the background; returns at once."""
        for connection in self.connections.values():
            connection.start()

    async def stop(self) -> None:
        """Disconnect every server (stdio servers are stopped)."""
        await asyncio.gather(*(c.stop() for c in self.connections.values()))

    async def ready(self, names: Iterable[str]) -> None:
        """Start these servers if needed and wait until each has listed its tools or failed to
        (at most its connect_timeout)."""
        await asyncio.gather(*(c.ready() for n in names if (c := self.connections.get(n))))

    def states(self) -> list[ServerState]:
        return [c.state for c in self.connections.values()]

    def actions(self, server: str) -> dict[str, Action]:
        """The actions of the tools the server listed last (also while it is down: their calls
        then fail with a message that says so)."""
        connection = self.connections.get(server)
        if connection is None:
            return {}
        built = self._built.get(server)
        if built is None or built[0] != connection.version:
            built = (connection.version, self._build(connection))
            self._built[server] = built
        return built[1]

    def action(self, name: str) -> Action | None:
        """The action `<server>__<tool>`, listed or not: a step of a tool the server does not
        list (not yet, or no longer) can still be undone through the configuration's undo."""
        split = split_action_name(name)
        connection = self.connections.get(split[0]) if split else None
        if split is None or connection is None:
            return None
        listed = self.actions(split[0]).get(name)
        if listed is not None:
            return listed
        if not connection.cfg.offers(split[1]):
            return None
        return McpToolAction(connection.cfg, split[1], None, connection)

    def _build(self, connection: ServerConnection) -> dict[str, Action]:
        actions: dict[str, Action] = {}
        for name, tool in sorted(connection.tools.items()):
            why = _unusable(connection.cfg, tool)
            if why is None:
                try:
                    actions[connection.cfg.action_name(name)] = McpToolAction(
                        connection.cfg, name, tool, connection
                    )
                except jsonschema.SchemaError as e:
                    why = f"its input schema is not valid JSON schema ({e.message})"
            if why is not None:
                log.warning("MCP server %s: tool %s is not offered: %s", connection.name, name, why)
        return actions


def _unusable(cfg: McpServerConfig, tool: Tool) -> str | None:
    """Why the model could not be offered this tool, or None."""
    full = cfg.action_name(tool.name)
    if not TOOL_NAME.match(tool.name) or len(full) > MAX_NAME:
        return f"{full!r} is not a tool name the model API accepts (letters, digits, '_', '-'; 64 at most)"
    if tool.input_schema.get("type") != "object":
        return "its input schema does not describe an object of arguments"
    return None
