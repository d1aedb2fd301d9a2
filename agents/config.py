"""The configuration file (TOML): agents, actions, control and summary settings.

Every problem is reported with the file, the entry and the field, and the process
does not start. With no file, `default_config()` gives one agent with the built-in
ticket and Slack actions.
"""

from __future__ import annotations

import re
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(Strict):
    """One parameter of a configured action (the long form of `name = "type"`)."""

    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: str = ""
    enum: list[str | int | float] | None = None
    required: bool = True
    default: str | int | float | bool | None = None
    pattern: str | None = None


class HttpRequestSpec(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: str | dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class ActionBase(Strict):
    name: Annotated[str, Field(pattern=NAME)]
    description: str
    params: dict[str, Literal["string", "integer", "number", "boolean"] | ParamSpec] = Field(
        default_factory=dict
    )
    risk: Literal["low", "medium", "high"] = "low"
    reversible: bool | None = None  # default: true when an undo is given, or read_only
    read_only: bool = False  # no side effect: needs no undo and no approval
    idempotent: bool = False  # safe to run again after a crash left its result unknown
    resource: str | None = None  # jinja2 template naming what it touches ("service:{{ service }}")
    timeout: float = Field(default=60, gt=0, le=3600)
    autonomy: Autonomy | None = None  # at least this strict for every agent using it
    customers: bool = False  # may run on a customer's (guest's, external user's) request

    @field_validator("params")
    @classmethod
    def _param_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"parameter name {key!r} must be an identifier")
        return v

    def param_specs(self) -> dict[str, ParamSpec]:
        return {k: v if isinstance(v, ParamSpec) else ParamSpec(type=v) for k, v in self.params.items()}

    def is_reversible(self) -> bool:
        if self.reversible is not None:
            return self.reversible
        return self.read_only or getattr(self, "undo", None) is not None


class CommandActionConfig(ActionBase):
    kind: Literal["command"]
    run: str
    undo: str | None = None
    cwd: str | None = None

    @field_validator("run", "undo")
    @classmethod
    def _safe_template(cls, v: str | None) -> str | None:
        if v is not None:
            from agents.templating import check_shell  # local: templating imports config's errors

            try:
                check_shell(v)
            except ValueError as e:
                raise ValueError(f"not a usable command template: {e}") from None
        return v


class HttpActionConfig(ActionBase):
    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: str | dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    undo: HttpRequestSpec | None = None


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


class ControlConfig(Strict):
    admins: list[str] = Field(default_factory=list)
    approval_timeout_hours: float = Field(default=24, gt=0, le=24 * 30)


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


class AlertsConfig(Strict):
    channel: str | None = None  # where alerts go; the summary channel when unset
    stuck_minutes: float = Field(default=15, gt=0)  # a running run with no step for this long
    window_minutes: float = Field(default=60, gt=0)  # rates are computed over this window
    min_runs: int = Field(default=5, ge=1)  # no rate alert below this many finished runs
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    undo_rate: float = Field(default=0.3, gt=0, le=1)
    model_failures: int = Field(default=5, ge=1)  # failed model calls in the window
    slack_failures: int = Field(default=5, ge=1)  # failed Slack API calls in the window
    pause_on_breach: bool = True  # the circuit breaker: pause an agent whose rate is crossed


class Config(Strict):
    control: ControlConfig = Field(default_factory=ControlConfig)
    summary: SummaryConfig = Field(default_factory=SummaryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    prices: dict[str, Price] = Field(default_factory=dict)  # model name -> price
    agents: list[AgentConfig] = Field(min_length=1)
    actions: list[ActionConfig] = Field(default_factory=list)

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
                    problems.append((f"agents[{i}] ({agent.name})", "actions", f"unknown action {name!r}"))
            for name in agent.customer_actions or []:
                if name not in agent.actions:
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "customer_actions",
                            f"{name!r} is not in its actions",
                        )
                    )
            for name in agent.action_autonomy:
                if name not in agent.actions:
                    problems.append(
                        (
                            f"agents[{i}] ({agent.name})",
                            "action_autonomy",
                            f"{name!r} is not in its actions",
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
        if problems:
            raise _Problems(problems)
        return self

    def agent(self, name: str) -> AgentConfig | None:
        return next((a for a in self.agents if a.name == name), None)

    @property
    def default_agent(self) -> AgentConfig:
        return next((a for a in self.agents if a.default), self.agents[0])

    def agent_for_channel(self, channel_id: str) -> AgentConfig | None:
        return next((a for a in self.agents if channel_id in a.channels), None)

    def action_config(self, name: str) -> CommandActionConfig | HttpActionConfig | None:
        return next((a for a in self.actions if a.name == name), None)


class _Problems(ValueError):
    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{e}: {f}: {m}" for e, f, m in problems))
        self.problems = problems


def default_config() -> Config:
    """Built-in defaults: one default agent with the ticket and Slack actions."""
    return Config(agents=[AgentConfig(name="ops", default=True)])


def load_config(path: str | Path | None) -> Config:
    """Load and validate a TOML file; None means the built-in defaults."""
    if path is None:
        return default_config()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(p), [("file", "", "not found")]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [("file", "", f"not valid TOML: {e}")]) from None
    return parse_config(raw, source=str(p))


def parse_config(raw: dict[str, Any], *, source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _Problems):
                problems.extend(ctx_error.problems)
                continue
            problems.append(_locate(raw, err))
        raise ConfigError(source, problems) from None


def _locate(raw: dict[str, Any], err: Any) -> tuple[str, str, str]:
    """Turn a pydantic error location into (entry, field, message)."""
    loc = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "missing field"
    if not loc:
        return ("file", "", msg)
    if loc[0] in ("agents", "actions") and len(loc) > 1 and isinstance(loc[1], int):
        section, index = loc[0], loc[1]
        items = raw.get(section) or []
        name = items[index].get("name") if index < len(items) and isinstance(items[index], dict) else None
        entry = f"{section}[{index}]" + (f" ({name})" if name else "")
        rest = [str(x) for x in loc[2:] if x not in ("command", "http")]
        return (entry, ".".join(rest) or "kind", msg)
    if len(loc) == 1:
        return (str(loc[0]), "", msg)
    return (str(loc[0]), ".".join(str(x) for x in loc[1:]), msg)
