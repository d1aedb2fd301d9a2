"""Reversing an MCP tool's call: the compensation the configuration maps it to.

`undo = { create_widget = { tool = "delete_widget", args = { name = "{{ args.name }}" } } }`
calls another tool of the same server. A string is a command, and a table with `url` an
HTTP request: those run exactly as a configured action's undo runs (agents/actions/
configured.py: values quoted for the shell or percent-encoded, a minimal environment, the
URL kept to its template's host and path). Every template sees `args` (the call's
arguments) and `result` (its structured content, else its text parsed as JSON, else its
text).

What is journaled with the step is {"params": {"args": ..., "result": ...}}: the templates
are rendered when the compensation runs, so a secret a template reads from the
environment never lands in the journal. They are also rendered once right after the call
(`prepare`), so a template that cannot render (the result lacks a field) makes the step
irreversible at once, where people see it, instead of failing a human's undo later.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from agents.actions.base import ActionContext
from agents.actions.configured import CommandAction, ConfiguredAction, HttpAction
from agents.config import CommandActionConfig, HttpActionConfig, HttpRequestSpec
from agents.config_mcp import McpUndo
from agents.errors import ActionError
from agents.mcp import results
from agents.mcp.arguments import arguments_model
from agents.mcp.connection import ServerConnection
from agents.templating import (
    environ,
    inspect,
    render_data,
    render_shell,
    render_text,
    render_url,
    url_departure,
)

_EXPRESSIONS = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
_ONE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\}\}).)*)\}\}\s*$", re.S)


def prepare(
    spec: McpUndo, args: dict[str, Any], result: Any, *, connection: ServerConnection
) -> dict[str, Any]:
    """The undo data of a call that succeeded; raises ActionError when its undo cannot be rendered."""
    params = {"args": args, "result": result}
    if spec.tool is not None:
        _check_arguments(spec, render_arguments(spec.args, params), connection)
    elif spec.command is not None:
        render_shell(spec.command, params)
    else:
        assert spec.url is not None
        url = render_url(spec.url, params)
        if departure := url_departure(spec.url, url):
            raise ActionError(departure)
        for value in spec.headers.values():
            render_text(value, params)
        if spec.body is not None:
            render_data(spec.body, params)
    return {"params": params}


async def compensate(
    spec: McpUndo,
    undo: dict[str, Any],
    *,
    connection: ServerConnection,
    action: str,
    timeout: float,
    ctx: ActionContext,
) -> str:
    """Run the compensation of one call; returns what was done. Raises ActionError when it failed."""
    params = undo["params"]
    if spec.tool is None:
        return await _configured(spec, action, timeout).compensate(ctx, {"params": params})
    arguments = render_arguments(spec.args, params)
    _check_arguments(spec, arguments, connection)
    result = await connection.call(spec.tool, arguments, timeout=timeout, key=ctx.idempotency_key)
    if result.is_error:
        raise ActionError(f"{spec.tool} failed: {results.cut(results.text_of(result), 1000)}")
    return f"called {spec.tool} on {connection.name}"


def leading_dash_arguments(spec: McpUndo | None) -> frozenset[str]:
    """The call's arguments an undo command puts on its command line."""
    if spec is None or spec.command is None:
        return frozenset()
    return inspect(spec.command, "shell").attributes.get("args", frozenset())


def render_arguments(value: Any, params: dict[str, Any]) -> Any:
    """Render a table of templates; a string that is one `{{ expression }}` keeps its type
    (`{{ args.count }}` stays a number, `{{ result.tags }}` a list)."""
    if isinstance(value, str):
        one = _ONE_EXPRESSION.match(value)
        if one is None:
            return render_text(value, params)
        try:
            found = _EXPRESSIONS.compile_expression(one.group(1), undefined_to_none=False)(
                **params, env=environ(trusted=True)
            )
        except TemplateError as e:
            raise ActionError(f"template error: {e}") from None
        if isinstance(found, Undefined):
            raise ActionError(f"template error: {one.group(1).strip()} is undefined")
        return found
    if isinstance(value, dict):
        return {k: render_arguments(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render_arguments(v, params) for v in value]
    return value


def _check_arguments(spec: McpUndo, arguments: Any, connection: ServerConnection) -> None:
    """The compensating tool's arguments fit its schema, when the server listed it."""
    tool = connection.tools.get(spec.tool or "")
    if tool is None:
        return
    try:
        model = arguments_model(f"{connection.name}__{spec.tool}", tool.input_schema)
    except jsonschema.SchemaError:
        return  # the server's schema cannot check anything; the server will
    try:
        model.model_validate(arguments)
    except ValidationError as e:
        why = "; ".join(str(err["msg"]) for err in e.errors())
        raise ActionError(f"the arguments of {spec.tool} do not fit its schema: {why}") from None


def _configured(spec: McpUndo, action: str, timeout: float) -> ConfiguredAction:
    """A configured action whose undo is this command or request (built from the file's
    already-checked values, so without validating them again)."""
    if spec.command is not None:
        return CommandAction(
            CommandActionConfig.model_construct(
                kind="command",
                name=action,
                description=f"the undo of {action}",
                run="true",
                undo=spec.command,
                timeout=timeout,
            )
        )
    assert spec.url is not None
    request = HttpRequestSpec(method=spec.method, url=spec.url, headers=spec.headers, body=spec.body)
    return HttpAction(
        HttpActionConfig.model_construct(
            kind="http",
            name=action,
            description=f"the undo of {action}",
            method=spec.method,
            url=spec.url,
            undo=request,
            timeout=timeout,
        )
    )
