"""An MCP server's tool as an action: `<server>__<tool>`, run through the executor like any other.

Its flags come from the tool's annotations, each overridden by the server's `settings` for
the tool: `readOnlyHint` makes it read-only (no approval, nothing to undo), an explicit
`destructiveHint` makes its risk high (a human approves each call), `idempotentHint` lets
a crashed run repeat it. It is reversible when it is read-only or the configuration maps
it to an undo; otherwise, like any irreversible action, a human approves it first.

The model reads the tool's JSON schema as the server wrote it; the arguments are checked
against that schema before anything is journaled (agents/mcp/arguments.py).
"""

from __future__ import annotations

from typing import Any

from mcp_types import Tool, ToolAnnotations
from pydantic import BaseModel

from agents.actions.base import Action, ActionContext, ActionResult
from agents.config_mcp import McpServerConfig, McpToolSettings
from agents.errors import ActionError
from agents.mcp import results, undo
from agents.mcp.arguments import arguments_model
from agents.mcp.connection import ServerConnection
from agents.templating import render_text

ERROR_LIMIT = 1_500  # characters of a tool's error text the model reads
SHOWN_ARGUMENTS = 120  # characters of the arguments in the one line people read


class McpToolAction(Action):
    family = "mcp"

    def __init__(self, cfg: McpServerConfig, tool_name: str, tool: Tool | None, connection: ServerConnection):
        """`tool` is None for a tool the server has not listed (yet): such an action is never
        offered to the model, but a step of it can still be undone (rollback only needs the
        configuration's undo)."""
        settings = cfg.settings.get(tool_name) or McpToolSettings()
        hints = (tool.annotations if tool is not None else None) or ToolAnnotations()
        self.server = cfg.name
        self.tool_name = tool_name
        self.connection = connection
        self.settings = settings
        self.undo_spec = cfg.undo.get(tool_name)
        self.name = cfg.action_name(tool_name)
        self.description = (
            settings.description or _description(tool) or f"{tool_name} (MCP server {cfg.name})"
        )
        self.read_only = bool(_first(settings.read_only, hints.read_only_hint))
        self.risk = settings.risk or (
            "high" if hints.destructive_hint is True and not self.read_only else "low"
        )
        self.idempotent = bool(_first(settings.idempotent, hints.idempotent_hint)) or self.read_only
        self.reversible = _first(settings.reversible, self.read_only or self.undo_spec is not None)
        self.autonomy = settings.autonomy
        self.customers = settings.customers
        self.timeout = settings.timeout or cfg.timeout
        schema = tool.input_schema if tool is not None else {"type": "object"}
        self.args_model = arguments_model(
            self.name, schema, no_leading_dash=undo.leading_dash_arguments(self.undo_spec)
        )

    def tool(self) -> dict[str, Any]:
        """The tool as the server described it: its JSON schema is passed as it is."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.args_model.model_json_schema(),
            },
        }

    def resource(self, args: BaseModel, ctx: ActionContext) -> str | None:
        if self.settings.resource is None:
            return None
        try:
            return render_text(self.settings.resource, {"args": args.model_dump(mode="json")})
        except ActionError:  # the template names an argument this call left out
            return f"mcp:{self.server}:{self.tool_name}"  # the whole tool: coarser, still a lock

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        arguments = args.model_dump(mode="json")
        result = await self.connection.call(
            self.tool_name, arguments, timeout=self.timeout, key=ctx.idempotency_key
        )
        text = results.text_of(result)
        if result.is_error:
            raise ActionError(f"{self.name} failed: {results.cut(text, ERROR_LIMIT)}")
        undo_data, note = None, ""
        if self.undo_spec is not None:
            try:
                undo_data = undo.prepare(
                    self.undo_spec, arguments, results.value_of(result), connection=self.connection
                )
            except ActionError as e:
                note = f"\n(this call cannot be undone: its undo could not be prepared: {e})"
        return ActionResult(
            output=results.cut(text) + note,
            summary=f"called {self.name}({_shown(arguments)})",
            undo=undo_data,
            data={"mcp_server": self.server, "mcp_tool": self.tool_name},
        )

    async def compensate(self, ctx: ActionContext, undo_data: dict[str, Any]) -> str:
        if self.undo_spec is None:
            raise ActionError(f"{self.name} has no undo in the configuration any more")
        return await undo.compensate(
            self.undo_spec,
            undo_data,
            connection=self.connection,
            action=self.name,
            timeout=self.timeout,
            ctx=ctx,
        )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _description(tool: Tool | None) -> str | None:
    if tool is None:
        return None
    title = tool.title or (tool.annotations.title if tool.annotations else None)
    return tool.description or title


def _shown(arguments: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return text if len(text) <= SHOWN_ARGUMENTS else text[:SHOWN_ARGUMENTS] + "…"
