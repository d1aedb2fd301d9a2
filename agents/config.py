"""The configuration file (TOML): agents, actions, control and summary settings.

Every problem is reported with the file, the entry and the field, and the process
does not start: unknown keys and names (with the closest valid one), bad types (in the
words of `agents.config_messages`), and templates that could not render: a syntax
error, an undefined variable, an unset environment variable, a URL whose host a
parameter could change. With no file, `default_config()` gives one agent with the
built-in ticket and Slack actions.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agents import templating
from agents.config_mcp import McpServerConfig, split_action_name
from agents.config_messages import locate, one_of, problem, suggest
from agents.config_templates import (
    EntryProblems,
    TemplateField,
    environ_of,
    request_templates,
    template_problems,
)
from agents.errors import ConfigError

BUILTIN_ACTIONS = (
    "ticket_create",
    "ticket_update",
    "ticket_comment",
    "ticket_close",
    "ticket_find",
    "slack_reply",
    "slack_post",
)
NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
Autonomy = Literal["auto", "approve", "propose"]
AUTONOMY_ORDER = {"auto": 0, "approve": 1, "propose": 2}
DEFAULT_INSTRUCTIONS = (
    "You are {{ agent.name }}, an operations agent working for a team in Slack. "
    "Do what the request asks using your tools, one step at a time, and then answer "
    "with a short summary of what you did. If the request is unclear or outside your "
    "tools, say so instead of guessing."
)
INSTRUCTION_NAMES = frozenset({"agent", "request", "user", "channel", "now"})
"""The names `instructions` is rendered with (agents/loop.py, `_system_prompt`), besides `env`."""
BASE_ENVIRONMENT = ("PATH", "HOME", "LANG", "TZ")
"""Passed to every command from the process environment (when set); nothing else is, unless listed."""
OWN_ENVIRONMENT = ("SLACK_", "OPENAI_", "CHATOPS_", "DATABASE_URL")
"""chatops' own settings and credentials: a command's `env` cannot list them."""
PARAM_TYPES = ("string", "integer", "number", "boolean")
ParamType = Literal["string", "integer", "number", "boolean"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _scalar(value: Any) -> Any:
    if isinstance(value, (dict, list)) or not isinstance(value, (str, int, float, bool)):
        raise ValueError("must be a string, a number or true/false")
    return value


def _scalars(value: Any) -> Any:
    if not isinstance(value, list) or any(
        isinstance(v, bool) or not isinstance(v, (str, int, float)) for v in value
    ):
        raise ValueError('must be a list of strings or numbers, like ["api", "web"]')
    return value


def _text_or_table(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, dict)):
        raise ValueError("must be a string or a table")
    return value


class ParamSpec(Strict):
    """One parameter of a configured action (the long form of `name = "type"`)."""

    type: ParamType = "string"
    description: str = ""
    enum: Annotated[list[str | int | float] | None, BeforeValidator(_scalars)] = None
    required: bool = True
    default: Annotated[str | int | float | bool | None, BeforeValidator(_scalar)] = None
    pattern: str | None = None
    allow_leading_dash: bool = False
    """A command refuses a value starting with `-` (it would be read as an option) unless this is set."""

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                TypeAdapter(Annotated[str, Field(pattern=v)])  # the engine the arguments will use
            except Exception:  # broad: re.error, or pydantic's SchemaError from its Rust engine
                raise ValueError(f"not a valid regular expression: {v!r}") from None
        return v

    @model_validator(mode="after")
    def _default_fits(self) -> ParamSpec:
        d = self.default
        fits = {
            "string": isinstance(d, str),
            "integer": isinstance(d, int) and not isinstance(d, bool),
            "number": isinstance(d, (int, float)) and not isinstance(d, bool),
            "boolean": isinstance(d, bool),
        }
        if d is not None and not fits[self.type]:
            raise ValueError(f"the default {d!r} is not of type {self.type}")
        if d is not None and self.enum and d not in self.enum:
            raise ValueError(f"the default {d!r} is not one of its enum values")
        return self


def _param_spec(value: Any) -> Any:
    """`service = "string"` is short for `service = { type = "string" }`."""
    if isinstance(value, str):
        if value not in PARAM_TYPES:
            raise ValueError(one_of("type", PARAM_TYPES, value))
        return {"type": value}
    if not isinstance(value, dict):
        raise ValueError(
            "must be a type name (string, integer, number, boolean) or a table like { type = ... }"
        )
    return value


class HttpRequestSpec(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: Annotated[str | dict[str, Any] | None, BeforeValidator(_text_or_table)] = None
    headers: dict[str, str] = Field(default_factory=dict)


class ActionBase(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    description: str
    params: dict[str, Annotated[ParamSpec, BeforeValidator(_param_spec)]] = Field(default_factory=dict)
    risk: Literal["low", "medium", "high"] = "low"
    reversible: bool | None = None  # default: true when an undo is given, or read_only
    read_only: bool = False  # no side effect: needs no undo and no approval
    idempotent: bool = False  # safe to run again after a crash left its result unknown
    resource: str | None = None  # jinja2 template naming what it touches ("service:{{ service }}")
    timeout: float = Field(default=60, gt=0, le=3600)
    autonomy: Autonomy | None = None  # at least this strict for every agent using it
    customers: bool = False  # may run on a customer's (guest's, external user's) request
    approvers: list[str] | None = None
    """Who may Approve or Deny this action (Slack user ids); default: `[control] approvers`."""
    approvals: int | None = Field(default=None, ge=1, le=5)
    """How many different approvers must Approve it (2: a two-person rule); default: `[control] approvals`."""
    self_approval: bool | None = None
    """Whether the person whose request it serves may approve it; default: `[control] self_approval`."""

    reserved_params: ClassVar[frozenset[str]] = frozenset({"env"})  # names the templates get anyway

    @field_validator("params")
    @classmethod
    def _param_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"parameter name {key!r} must be an identifier")
            if key in cls.reserved_params:
                raise ValueError(f"parameter name {key!r} is reserved: templates use it already")
        return v

    @model_validator(mode="after")
    def _templates_render(self, info: ValidationInfo) -> ActionBase:
        environ = environ_of(info)
        problems = [p for t in self.templates() for p in template_problems(t, environ)]
        problems += self._more_problems(environ)
        if problems:
            raise EntryProblems(problems)
        return self

    def templates(self) -> Iterator[TemplateField]:
        """Every template of this action, with the names it is rendered with."""
        if self.resource is not None:
            yield TemplateField("resource", self.resource, "text", self._param_names_set())

    def _more_problems(self, environ: Mapping[str, str]) -> list[tuple[str, str]]:
        return []

    def _param_names_set(self) -> frozenset[str]:
        return frozenset(self.params)

    def param_specs(self) -> dict[str, ParamSpec]:
        return dict(self.params)

    def is_reversible(self) -> bool:
        if self.reversible is not None:
            return self.reversible
        return self.read_only or getattr(self, "undo", None) is not None


class CommandActionConfig(ActionBase):
    kind: Literal["command"]
    run: str
    undo: str | None = None
    cwd: str | None = None
    env: list[str] = Field(default_factory=list)
    """Environment variables the command gets besides PATH, HOME, LANG and TZ (values: the process's)."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.startswith(OWN_ENVIRONMENT):
                raise ValueError(f"{name} is chatops' own setting; it is never passed to a command")
        return v

    def templates(self) -> Iterator[TemplateField]:
        params = self._param_names_set()
        yield TemplateField("run", self.run, "shell", params)
        if self.undo is not None:
            yield TemplateField("undo", self.undo, "shell", params)
        yield from super().templates()

    def _more_problems(self, environ: Mapping[str, str]) -> list[tuple[str, str]]:
        return [("env", f"environment variable {n} is not set") for n in self.env if n not in environ]


class HttpActionConfig(ActionBase):
    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: Annotated[str | dict[str, Any] | None, BeforeValidator(_text_or_table)] = None
    headers: dict[str, str] = Field(default_factory=dict)
    undo: HttpRequestSpec | None = None

    reserved_params: ClassVar[frozenset[str]] = frozenset({"env", "response"})

    def templates(self) -> Iterator[TemplateField]:
        params = self._param_names_set()
        yield from request_templates("", url=self.url, headers=self.headers, body=self.body, names=params)
        if (u := self.undo) is not None:
            names = params | {"response"}
            yield from request_templates("undo.", url=u.url, headers=u.headers, body=u.body, names=names)
        yield from super().templates()


ActionConfig = Annotated[CommandActionConfig | HttpActionConfig, Field(discriminator="kind")]


class AgentConfig(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    description: str = ""
    channels: list[str] = Field(default_factory=list)
    default: bool = False
    instructions: str = DEFAULT_INSTRUCTIONS
    model: str | None = None
    actions: list[str] = Field(default_factory=lambda: list(BUILTIN_ACTIONS))
    max_steps: int = Field(default=12, ge=1, le=200)
    on_failure: Literal["rollback", "keep"] = "rollback"
    autonomy: Autonomy = "auto"  # auto: act; approve: ask before every side effect; propose: only say
    action_autonomy: dict[str, Autonomy] = Field(default_factory=dict)  # per action, for this agent
    customer_actions: list[str] | None = None  # what customers may reach; default: actions marked so
    history_tokens: int = Field(default=3000, ge=0, le=200_000)
    """How much of the thread's earlier conversation a run reads (about 4 characters a token);
    the oldest parts are condensed first, then left out. 0: none."""
    max_output_tokens: int = Field(default=1024, ge=16, le=200_000)
    """The most a model may write in one turn (sent with every request): a rambling model stops
    there, instead of holding a one-request-at-a-time server for its whole context."""
    handoffs: list[str] = Field(default_factory=list)
    """Agents this one may hand work to: its model gets a `transfer_to_<agent>(brief)` tool each."""
    mcp_servers: list[str] = Field(default_factory=list)  # MCP servers whose tools it gets (<server>__<tool>)
    max_tokens_per_run: int | None = Field(default=None, ge=1)
    """A run that has used this many model tokens (prompt and completion, every turn) stops at its
    next step and asks a human: Continue gives it as many again, Stop ends it. None: no limit."""
    max_cost_per_day: float | None = Field(default=None, gt=0)
    """US dollars a day (the summary's time zone), priced from `[prices]` for the agent's model:
    once the agent's runs have spent it, the agent pauses itself and an alert says so. None: no cap."""

    @model_validator(mode="after")
    def _instructions_render(self, info: ValidationInfo) -> AgentConfig:
        template = TemplateField("instructions", self.instructions, "text", INSTRUCTION_NAMES)
        fields = {"agent": frozenset(AgentConfig.model_fields)}
        if "request" in self.instructions:  # storage is a heavy import for a file read at start
            from storage.models import Request

            fields["request"] = frozenset(Request.model_fields)
        if problems := template_problems(template, environ_of(info), fields):
            raise EntryProblems(problems)
        return self

    def templates(self) -> Iterator[TemplateField]:
        yield TemplateField("instructions", self.instructions, "text", INSTRUCTION_NAMES)


class ControlConfig(Strict):
    admins: list[str] = Field(default_factory=list)
    approval_timeout_hours: float = Field(default=24, gt=0, le=24 * 30)
    max_handoff_depth: int = Field(default=3, ge=1, le=20)
    """How many handoffs deep a case may go (A hands to B hands to C: 2)."""
    handoff_cycles: bool = False
    """Whether an agent may be handed work again within one chain (A hands to B hands to A)."""
    role_cache_minutes: float = Field(default=60, gt=0, le=24 * 60 * 7)
    """How long what Slack said of a user (member, guest, stranger) is trusted before asking again;
    when Slack cannot answer, the last answer is used however old."""
    approvers: list[str] = Field(default_factory=list)
    """Who may Approve or Deny (Slack user ids); empty: whoever may control agents. An action's own
    `approvers` replaces it for that action."""
    approvals: int = Field(default=1, ge=1, le=5)
    """How many different approvers must Approve (2: a two-person rule); a Deny by one is final."""
    self_approval: bool = True
    """Whether the person whose request a run serves may approve its actions (false: someone else
    must; true lets a team of one work)."""


class SummaryConfig(Strict):
    channel: str | None = None
    time: str = "09:00"
    timezone: str = "UTC"

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        try:
            time.fromisoformat(v)
        except ValueError:
            raise ValueError("must be HH:MM, e.g. 09:00") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class Price(Strict):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


def _temperature(value: Any) -> float | Literal[False]:
    if value is False:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise ValueError("must be a number from 0 to 2, or false to send none")
    return float(value)


class ModelConfig(Strict):
    """How requests to one model are shaped (`[models."o3-mini"]`): reasoning models refuse
    `max_tokens` and `temperature`."""

    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    """The name the agent's max_output_tokens is sent under."""
    temperature: Annotated[float | Literal[False], PlainValidator(_temperature)] = 0.2
    """Sent with every request (low: choosing tools wants little randomness); false sends none."""


TEAM_ID = re.compile(r"T[A-Z0-9]{1,31}")
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{1,31}")


def _team_id(value: str | None) -> str | None:
    if value is not None and not TEAM_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a Slack workspace id (T0123ABC)")
    return value


def _channel_id(value: str | None) -> str | None:
    if value is not None and not CHANNEL_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a Slack channel id (C0123ABC)")
    return value


class TeamConfig(Strict):
    """One workspace's own channels when the app is installed in many (`[teams."T0123ABC"]`)."""

    summary_channel: Annotated[str | None, AfterValidator(_channel_id)] = None
    """Where its daily summary goes (only its own runs); none: it gets no summary."""
    alerts_channel: Annotated[str | None, AfterValidator(_channel_id)] = None
    """Where alerts about its runs go (stuck, failure and undo rates, crashes); none: nowhere."""


class AlertsConfig(Strict):
    channel: str | None = None  # where alerts go; the summary channel when unset
    team: Annotated[str | None, AfterValidator(_team_id)] = None
    """Many workspaces: the workspace `channel` is in (process-wide alerts are posted there)."""
    stuck_minutes: float = Field(default=15, gt=0)  # a running run with no step for this long
    window_minutes: float = Field(default=60, gt=0)  # rates are computed over this window
    min_runs: int = Field(default=5, ge=1)  # no rate alert below this many finished runs
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    undo_rate: float = Field(default=0.3, gt=0, le=1)
    model_failures: int = Field(default=5, ge=1)  # failed model calls in the window
    slack_failures: int = Field(default=5, ge=1)  # failed Slack API calls in the window
    negative_votes: int = Field(default=3, ge=1)  # 👎 on one agent's outcomes in the window
    pause_on_breach: bool = True  # the circuit breaker: pause an agent whose rate is crossed


class Config(Strict):
    control: ControlConfig = Field(default_factory=ControlConfig)
    summary: SummaryConfig = Field(default_factory=SummaryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)  # workspace id -> its channels
    prices: dict[str, Price] = Field(default_factory=dict)  # model name -> price
    models: dict[str, ModelConfig] = Field(default_factory=dict)  # model name -> request settings
    agents: list[AgentConfig] = Field(min_length=1)
    actions: list[ActionConfig] = Field(default_factory=list)
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        problems: list[tuple[str, str, str]] = []
        seen: dict[str, str] = {}
        for i, agent in enumerate(self.agents):
            if agent.name in seen:
                problems.append((f"agents[{i}] ({agent.name})", "name", "duplicate agent name"))
            seen[agent.name] = agent.name
        names = set(BUILTIN_ACTIONS)
        for i, action in enumerate(self.actions):
            if action.name in names:
                problems.append(
                    (f"actions[{i}] ({action.name})", "name", "duplicate or built-in action name")
                )
            names.add(action.name)
        served: dict[str, str] = {}
        defaults = [a.name for a in self.agents if a.default]
        if len(defaults) > 1:
            problems.append(("agents", "default", f"more than one default agent: {defaults}"))
        for i, agent in enumerate(self.agents):
            for name in agent.actions:
                if name not in names:
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "actions",
                            f"unknown action {name!r}{suggest(name, names)}",
                        )
                    )
            reachable = [*agent.actions, *self._mcp_tool_names(agent)]
            for name in agent.customer_actions or []:
                if name not in agent.actions and not self.offers_mcp_tool(agent, name):
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "customer_actions",
                            f"{name!r} is not in its actions{suggest(name, reachable)}",
                        )
                    )
            for name in agent.action_autonomy:
                if name not in agent.actions and not self.offers_mcp_tool(agent, name):
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "action_autonomy",
                            f"{name!r} is not in its actions{suggest(name, reachable)}",
                        )
                    )
            for name in agent.handoffs:
                if name == agent.name or name not in seen:
                    why = "an agent cannot hand work to itself" if name == agent.name else "unknown agent"
                    problems.append(
                        (f"agents[{i}] ({agent.name})", "handoffs", f"{why}: {name!r}{suggest(name, seen)}")
                    )
            if agent.max_cost_per_day is not None and agent.model and agent.model not in self.prices:
                problems.append(
                    (
                        f"agents[{i}] ({agent.name})",
                        "max_cost_per_day",
                        f"needs a price for its model {agent.model!r} in [prices]",
                    )
                )
            for channel in agent.channels:
                if channel in served:
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "channels",
                            f"channel {channel} is already served by {served[channel]}",
                        )
                    )
                served[channel] = agent.name
        for team_id in self.teams:
            if not TEAM_ID.fullmatch(team_id):
                problems.append(
                    (f"teams.{team_id}", "", f"{team_id!r} is not a Slack workspace id (T0123ABC)")
                )
        problems += self._mcp_problems()
        problems += self._policy_problems()
        if problems:
            raise _Problems(problems)
        return self

    def _mcp_problems(self) -> list[tuple[str, str, str]]:
        """MCP servers named once, known to the agents that use them, and owning their names."""
        problems: list[tuple[str, str, str]] = []
        servers: set[str] = set()
        for i, server in enumerate(self.mcp_servers):
            if server.name in servers:
                problems.append((f"mcp_servers[{i}] ({server.name})", "name", "duplicate MCP server name"))
            servers.add(server.name)
        for i, action in enumerate(self.actions):
            split = split_action_name(action.name)
            if split is not None and split[0] in servers:
                problems.append(
                    (
                        f"actions[{i}] ({action.name})",
                        "name",
                        f"names {split[0]}__<tool> are the tools of MCP server {split[0]}",
                    )
                )
        for i, agent in enumerate(self.agents):
            for name in agent.mcp_servers:
                if name not in servers:
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "mcp_servers",
                            f"unknown MCP server {name!r}{suggest(name, servers)}",
                        )
                    )
        return problems

    def mcp_server(self, name: str) -> McpServerConfig | None:
        return next((s for s in self.mcp_servers if s.name == name), None)

    def offers_mcp_tool(self, agent: AgentConfig, name: str) -> bool:
        """Whether `name` (`<server>__<tool>`) may be a tool of one of the agent's MCP servers.
        Only the allow-list can be checked here: what a server lists is known once it runs."""
        split = split_action_name(name)
        server = self.mcp_server(split[0]) if split and split[0] in agent.mcp_servers else None
        return server is not None and split is not None and server.offers(split[1])

    def _mcp_tool_names(self, agent: AgentConfig) -> list[str]:
        """The MCP tool names the file itself lists for the agent (for suggestions)."""
        servers = [s for s in self.mcp_servers if s.name in agent.mcp_servers]
        return [s.action_name(t) for s in servers for t in (s.tools or [*s.undo, *s.settings])]

    def team(self, team_id: str) -> TeamConfig:
        """A workspace's own channels (none when it has no `[teams."<id>"]` entry)."""
        return self.teams.get(team_id) or TeamConfig()

    def _policy_problems(self) -> list[tuple[str, str, str]]:
        """A two-person rule needs two people to be possible at all."""
        problems = []
        control = self.control
        if control.approvers and control.approvals > len(set(control.approvers)):
            problems.append(
                (
                    "control",
                    "approvals",
                    f"{control.approvals} approvals need as many approvers; approvers lists "
                    f"{len(set(control.approvers))}",
                )
            )
        for i, action in enumerate(self.actions):
            policy = self.approval_policy(action.name)
            if policy.approvers and policy.needed > len(policy.approvers):
                field = "approvals" if action.approvals is not None else "approvers"
                problems.append(
                    (
                        f"actions[{i}] ({action.name})",
                        field,
                        f"{policy.needed} approvals need as many approvers; its approvers are "
                        f"{len(policy.approvers)}",
                    )
                )
        return problems

    def approval_policy(self, action: str | None = None) -> ApprovalPolicy:
        """Who may decide an approval of `action` and how many must approve: the action's own
        settings, then `[control]`'s (for an approval that is no action's: `[control]`'s)."""
        control = self.control
        own = self.action_config(action) if action else None
        approvers = own.approvers if own is not None and own.approvers is not None else control.approvers
        needed = own.approvals if own is not None and own.approvals is not None else control.approvals
        mine = own.self_approval if own is not None and own.self_approval is not None else None
        return ApprovalPolicy(
            approvers=tuple(dict.fromkeys(approvers)),
            needed=needed,
            self_approval=control.self_approval if mine is None else mine,
        )

    def agent(self, name: str) -> AgentConfig | None:
        return next((a for a in self.agents if a.name == name), None)

    @property
    def default_agent(self) -> AgentConfig:
        return next((a for a in self.agents if a.default), self.agents[0])

    def model(self, name: str) -> ModelConfig:
        """How requests to the model `name` are shaped (the defaults when it has no entry)."""
        return self.models.get(name) or ModelConfig()

    def agent_for_channel(self, channel_id: str) -> AgentConfig | None:
        return next((a for a in self.agents if channel_id in a.channels), None)

    def action_config(self, name: str) -> CommandActionConfig | HttpActionConfig | None:
        return next((a for a in self.actions if a.name == name), None)

    def environment_names(self) -> frozenset[str]:
        """Every environment variable the configuration reads: `{{ env.NAME }}` in any
        template (MCP servers' env, headers and undo included), and the names listed in
        commands' `env`."""
        parts = (*self.agents, *self.actions, *self.mcp_servers)
        templates = [t for part in parts for t in part.templates()]
        names = {n for t in templates for n in templating.inspect(t.template, t.target).env}
        for action in self.actions:
            if isinstance(action, CommandActionConfig):
                names.update(action.env)
        return frozenset(names)

    def secret_values(self, environ: Mapping[str, str] | None = None) -> frozenset[str]:
        """The values of the environment variables the configuration reads, to be redacted
        wherever text leaves chatops. PATH, HOME, LANG and TZ are no secrets: every
        command gets them anyway, and redacting "/home/ops" everywhere would garble text."""
        environ = os.environ if environ is None else environ
        names = self.environment_names() - set(BASE_ENVIRONMENT)
        return frozenset(environ[n] for n in names if environ.get(n))


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who decides an approval, and how many must agree (`Config.approval_policy`)."""

    approvers: tuple[str, ...]
    """Slack user ids; empty: whoever may control agents."""
    needed: int
    """Different approvers who must Approve; one Deny decides at once."""
    self_approval: bool
    """Whether the person whose request the run serves may Approve."""


class _Problems(ValueError):
    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{e}: {f}: {m}" for e, f, m in problems))
        self.problems = problems


def default_config() -> Config:
    """Built-in defaults: one default agent with the ticket and Slack actions."""
    return Config(agents=[AgentConfig(name="ops", default=True)])


def load_config(path: str | Path | None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate a TOML file; None means the built-in defaults.

    `environ` (default: the process environment) is what `{{ env.NAME }}` and `env`
    lists are checked against.
    """
    if path is None:
        return default_config()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(p), [("file", "", "not found")]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [("file", "", f"not valid TOML: {e}")]) from None
    return parse_config(raw, source=str(p), environ=environ)


def parse_config(
    raw: dict[str, Any], *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    try:
        return Config.model_validate(raw, context={"environ": os.environ if environ is None else environ})
    except ValidationError as e:
        problems: list[tuple[str, str, str]] = []
        for err in e.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _Problems):
                problems.extend(ctx_error.problems)
            elif isinstance(ctx_error, EntryProblems):
                entry, _ = locate(raw, err["loc"])
                problems.extend((entry, f, m) for f, m in ctx_error.problems)
            else:
                problems.append(problem(raw, err, Config))
        raise ConfigError(source, problems) from None
