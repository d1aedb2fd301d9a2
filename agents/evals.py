"""Evaluations: a set of requests, each with the tool calls it should make (or must not), run
in a dry run (agents.dryrun) by the real loop and planner, and scored.

A case file (TOML):

    [[cases]]
    name = "file a ticket"
    request = "create a ticket for the login bug and assign it to me"
    expect = [{ action = "ticket_create", args = { title = "the login bug", assignee = "UEVAL" } }]
    forbid = ["ticket_close"]             # an action name, or { action = ..., args = ... }
    # agent = "ops"                       # default: the default agent
    # user = "UEVAL", channel = "CEVAL", customer = false   # who asks, and where
    # results = { ticket_find = "#3 open: login bug" }      # what such a call returns (default: not run)

An expected call matches a call of that action whose arguments include every `args` given
(a number and its text are the same value); a forbidden one, any such call. A call refused
before it would run (an unknown tool, invalid arguments, an action not for customers) was not
made. A case passes when every expected call was made and no forbidden one was.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agents.config import Config
from agents.config_messages import problem
from agents.dryrun import Call, DryDesk, Outcome, Script
from agents.errors import ConfigError
from storage.models import RequestBase, StepStatus


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Expected(_Strict):
    action: str
    args: dict[str, Any] = Field(default_factory=dict)

    def matches(self, call: Call) -> bool:
        """A call of this action with these arguments that would have run: one refused before
        that (an unknown tool, invalid arguments, an action not for customers) was not made."""
        return (
            call.action == self.action
            and call.status != StepStatus.rejected
            and all(k in call.arguments and _same(call.arguments[k], v) for k, v in self.args.items())
        )

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.action}({shown})"


def _expected(value: Any) -> Any:
    return {"action": value} if isinstance(value, str) else value


class Case(_Strict):
    name: str
    request: str
    agent: str | None = None
    user: str = "UEVAL"
    channel: str = "CEVAL"
    customer: bool = False
    expect: list[Annotated[Expected, BeforeValidator(_expected)]] = Field(default_factory=list)
    forbid: list[Annotated[Expected, BeforeValidator(_expected)]] = Field(default_factory=list)
    results: dict[str, str] = Field(default_factory=dict)


class Suite(_Strict):
    cases: list[Case] = Field(min_length=1)


def load_suite(path: str | Path, config: Config) -> Suite:
    """Read a case file; its problems are reported like the configuration's (file, entry, field),
    an agent the configuration does not have included."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(p), [("file", "", "not found")]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [("file", "", f"not valid TOML: {e}")]) from None
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(str(p), [problem(raw, err, Suite) for err in e.errors()]) from None
    unknown = [
        (f"cases[{i}] ({c.name})", "agent", f"no agent named {c.agent!r}")
        for i, c in enumerate(suite.cases)
        if c.agent is not None and config.agent(c.agent) is None
    ]
    if unknown:
        raise ConfigError(str(p), unknown)
    return suite


@dataclass
class Scored:
    case: Case
    outcome: Outcome
    made: list[bool]
    """For each expected call: was it made."""
    avoided: list[bool]
    """For each forbidden call: was it left alone."""

    @property
    def passed(self) -> bool:
        return all(self.made) and all(self.avoided)

    @property
    def checks(self) -> tuple[int, int]:
        """(checks passed, checks)."""
        return sum(self.made) + sum(self.avoided), len(self.made) + len(self.avoided)


def score(case: Case, outcome: Outcome) -> Scored:
    return Scored(
        case,
        outcome,
        made=[any(e.matches(c) for c in outcome.calls) for e in case.expect],
        avoided=[not any(f.matches(c) for c in outcome.calls) for f in case.forbid],
    )


async def evaluate(suite: Suite, desk: DryDesk) -> list[Scored]:
    """Run every case on the dry desk (a few at once) and score each."""
    default = desk.rt.config.default_agent.name
    queued = []
    for case in suite.cases:
        request = RequestBase(
            source="eval",
            kind="mention",
            team_id="TEVAL",
            channel_id=case.channel,
            user_id=case.user,
            ts="0",
            thread_ts="0",
            text=case.request,
            agent=case.agent or default,
            requester_role="customer" if case.customer else "member",
        )
        queued.append(await desk.queue(request, script=Script(fixed=dict(case.results))))
    await desk.work()
    return [score(case, await desk.outcome(run_id)) for case, run_id in zip(suite.cases, queued, strict=True)]


def _same(made: Any, expected: Any) -> bool:
    return bool(made == expected or str(made) == str(expected))
