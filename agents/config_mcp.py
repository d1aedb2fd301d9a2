"""The `[[mcp_servers]]` entries of the configuration file: MCP servers whose tools are actions.

An entry names a server (its tools are offered as `<server>__<tool>`), how to reach it (a
stdio `command`, or a streamable-HTTP `url`), what it is given (`env` or `headers`, where
`{{ env.NAME }}` reads chatops' environment), which tools are offered (`tools`), how a call
of each is reversed (`undo`), and per-tool `settings` that override the tool's annotations.

What the server lists is known only once it runs, so the checks made here are those the
file alone allows: names, shapes, and every template with the names it will be rendered
with (`args` and `result` in an undo, `args` in a resource). Problems are reported like
the rest of the file: entry, field, message.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agents.config_messages import suggest
from agents.config_templates import (
    EntryProblems,
    TemplateField,
    data_templates,
    environ_of,
    request_templates,
    template_problems,
)

SEPARATOR = "__"
"""Between a server's name and its tool's in an action name: widgets__create_widget."""
UNDO_NAMES = frozenset({"args", "result"})
"""What an undo template sees: the call's arguments and its result (besides `env`)."""
RESOURCE_NAMES = frozenset({"args"})
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A name the model API accepts for a tool (Chat Completions function names)."""
MAX_NAME = 64
"""The longest tool name the model API accepts; `<server>__<tool>` must fit."""
SERVER_NAME_RULE = (
    "must start with a letter and have only letters, digits, '-' and single '_' "
    "(not '__', which separates the server from the tool; at most 32 characters)"
)
_SERVER_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]|_(?!_))*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Autonomy = Literal["auto", "approve", "propose"]  # the levels of agents.config.Autonomy
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _command(value: Any) -> Any:
    """`command = "python server.py"` is read as `["python", "server.py"]`."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise ValueError(f"not a valid command line ({e}); write it as a list, like [...]") from None
    return value


def _undo(value: Any) -> Any:
    """A string is a command: `undo = { create_widget = "rm -- {{ args.name }}" }`."""
    return {"command": value} if isinstance(value, str) else value


def _text_or_table(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, dict)):
        raise ValueError("must be a string or a table")
    return value


def _tool_name(name: str) -> str:
    if not TOOL_NAME.match(name):
        raise ValueError(f"{name!r} is not a tool name the model can call (letters, digits, '_' and '-')")
    return name


class McpUndo(_Strict):
    """How one tool's call is reversed: another tool of the same server, a command, or an
    HTTP request (like a configured action's undo)."""

    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    """The compensating tool's arguments; `{{ args.x }}` alone keeps the value's type."""
    command: str | None = None
    method: Method = "POST"
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: Annotated[str | dict[str, Any] | None, BeforeValidator(_text_or_table)] = None

    @field_validator("tool")
    @classmethod
    def _tool(cls, v: str | None) -> str | None:
        return v if v is None else _tool_name(v)

    @model_validator(mode="after")
    def _one_kind(self) -> McpUndo:
        kinds = [k for k in ("tool", "command", "url") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                'must be one of: { tool = "other_tool", args = { ... } } (a tool of the same server), '
                'a command (a string), or an HTTP request { url = "...", method = "POST", headers, body }'
            )
        allowed = {
            "tool": {"tool", "args"},
            "command": {"command"},
            "url": {"url", "method", "headers", "body"},
        }
        stray = sorted(self.model_fields_set - allowed[kinds[0]])
        if stray:
            raise ValueError(f"{', '.join(stray)} cannot go with {kinds[0]}")
        return self

    @property
    def kind(self) -> Literal["tool", "command", "http"]:
        return "tool" if self.tool is not None else "command" if self.command is not None else "http"

    def templates(self, where: str) -> Iterator[TemplateField]:
        if self.tool is not None:
            yield from data_templates(f"{where}.args", self.args, UNDO_NAMES)
        elif self.command is not None:
            yield TemplateField(where, self.command, "shell", UNDO_NAMES)
        else:
            assert self.url is not None
            yield from request_templates(
                f"{where}.", url=self.url, headers=self.headers, body=self.body, names=UNDO_NAMES
            )


class McpToolSettings(_Strict):
    """One tool's settings; each one set overrides what the tool's annotations say."""

    description: str | None = None  # what the model reads instead of the server's description
    risk: Literal["low", "medium", "high"] | None = None  # default: high when destructiveHint
    reversible: bool | None = None  # default: true when read-only or an undo is given
    read_only: bool | None = None  # default: readOnlyHint
    idempotent: bool | None = None  # default: idempotentHint (or read-only)
    customers: bool = False  # may run on a customer's request
    resource: str | None = None  # jinja2 with `args`: what the call touches, for locking
    timeout: float | None = Field(default=None, gt=0, le=3600)  # default: the server's timeout
    autonomy: Autonomy | None = None  # at least this strict for every agent using it


class McpServerConfig(_Strict):
    name: str
    command: Annotated[list[str] | None, BeforeValidator(_command)] = None  # stdio: the program and its args
    url: str | None = None  # streamable HTTP: the endpoint, e.g. https://host/mcp
    cwd: str | None = None  # where a stdio server starts; default: where chatops runs
    env: dict[str, str] = Field(default_factory=dict)  # a stdio server's variables (jinja2 with env.NAME)
    headers: dict[str, str] = Field(default_factory=dict)  # an HTTP server's headers (jinja2 with env.NAME)
    tools: list[str] | None = None  # the tools offered; default: every tool it lists
    undo: dict[str, Annotated[McpUndo, BeforeValidator(_undo)]] = Field(default_factory=dict)
    settings: dict[str, McpToolSettings] = Field(default_factory=dict)
    timeout: float = Field(default=60, gt=0, le=3600)  # seconds a call may take
    connect_timeout: float = Field(default=30, gt=0, le=600)  # seconds to start and list its tools

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _SERVER_NAME.match(v) or v.endswith("_") or len(v) > 32:
            raise ValueError(SERVER_NAME_RULE)
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            _tool_name(name)
        return v

    @field_validator("undo", "settings")
    @classmethod
    def _keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            _tool_name(name)
        return v

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> McpServerConfig:
        problems: list[tuple[str, str]] = []
        if (self.command is None) == (self.url is None):
            problems.append(("command", "give either command (a stdio server) or url (streamable HTTP)"))
        if self.command is not None and not (self.command and self.command[0]):
            problems.append(("command", 'must name the program to start, like ["python", "server.py"]'))
        if self.url is not None:
            wrong = [k for k in ("env", "cwd") if k in self.model_fields_set]
            problems += [
                (k, "only a stdio server (command) has it; an HTTP server gets headers") for k in wrong
            ]
        if self.command is not None and "headers" in self.model_fields_set:
            problems.append(("headers", "only an HTTP server (url) gets headers; a stdio server gets env"))
        if self.tools is not None:
            for section in ("undo", "settings"):
                for tool in getattr(self, section):
                    if tool not in self.tools:
                        problems.append(
                            (f"{section}.{tool}", f"{tool!r} is not in its tools{suggest(tool, self.tools)}")
                        )
        for tool in (*(self.tools or []), *self.undo, *self.settings):
            if len(self.action_name(tool)) > MAX_NAME:
                problems.append(("tools", f"{self.action_name(tool)!r} is longer than {MAX_NAME} characters"))
        environ = environ_of(info)
        problems += [p for t in self.templates() for p in template_problems(t, environ)]
        if problems:
            raise EntryProblems(problems)
        return self

    def templates(self) -> Iterator[TemplateField]:
        """Every template of this server, with the names it is rendered with."""
        for key, value in self.env.items():
            yield TemplateField(f"env.{key}", value, "text", frozenset())
        for key, value in self.headers.items():
            yield TemplateField(f"headers.{key}", value, "text", frozenset())
        if self.url is not None:
            yield TemplateField("url", self.url, "url", frozenset())
        for tool, undo in self.undo.items():
            yield from undo.templates(f"undo.{tool}")
        for tool, settings in self.settings.items():
            if settings.resource is not None:
                yield TemplateField(f"settings.{tool}.resource", settings.resource, "text", RESOURCE_NAMES)

    def action_name(self, tool: str) -> str:
        return f"{self.name}{SEPARATOR}{tool}"

    def offers(self, tool: str) -> bool:
        """Whether the allow-list (if any) lets the model see this tool."""
        return self.tools is None or tool in self.tools


def split_action_name(name: str) -> tuple[str, str] | None:
    """(server, tool) of `widgets__create_widget`, or None for a name of another form."""
    server, sep, tool = name.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None
