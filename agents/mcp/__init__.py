"""MCP servers as actions: the tools of the servers in `[[mcp_servers]]`, offered to agents as
`<server>__<tool>` and run through the one executor (journal, pause, locks, approval, undo).

- manager.py: the servers of a process, started once and shared by its runs
- connection.py: one server's connection: background start, restarts with backoff, tool list
- transport.py: how a server is reached (stdio or streamable HTTP, through the `mcp` SDK)
- action.py: a tool as an Action (flags from annotations and settings)
- arguments.py: arguments checked against the tool's JSON schema
- results.py: a result as the model reads it and an undo template sees it
- undo.py: the compensation a tool is mapped to (a tool, a command, an HTTP request)
"""

from agents.mcp.connection import Backoff, ServerState
from agents.mcp.manager import McpManager

__all__ = ["Backoff", "McpManager", "ServerState"]
