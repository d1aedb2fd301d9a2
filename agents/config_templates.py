"""The templates of a configuration, and what would fail when they are rendered.

Each template is checked when the file is loaded, with the names it will be rendered
with (an action's parameters, `env`, `response` in an HTTP undo; for instructions the
names agents/loop.py gives), so that a typo stops chatops at start rather than failing
a run after a human approved it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationInfo

from agents import templating
from agents.config_messages import suggest


@dataclass(frozen=True)
class TemplateField:
    """One template of the configuration: where it is, how it is rendered, which names it gets."""

    field: str
    template: str
    target: templating.Target
    names: frozenset[str]


class EntryProblems(ValueError):
    """Problems of one entry (an agent, an action, an MCP server): (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def environ_of(info: ValidationInfo) -> Mapping[str, str]:
    """The environment templates are checked against: the validation context's, or the process's."""
    context = info.context if isinstance(info.context, dict) else {}
    environ: Mapping[str, str] = context.get("environ", os.environ)
    return environ


def template_problems(
    t: TemplateField, environ: Mapping[str, str], fields: Mapping[str, frozenset[str]] | None = None
) -> list[tuple[str, str]]:
    """What would fail when `t` is rendered; `fields` lists the attributes some names have."""
    try:
        uses = templating.inspect(t.template, t.target)
    except templating.TemplateProblem as e:
        return [(t.field, str(e))]
    problems = []
    for name in sorted(uses.variables - t.names - {"env"}):
        hint = suggest(name, t.names) or "; it can use " + ", ".join(sorted(t.names | {"env"}))
        problems.append((t.field, f"undefined variable {name!r}{hint}"))
    for name, known in (fields or {}).items():
        for attr in sorted(uses.attributes.get(name, frozenset()) - known):
            problems.append((t.field, f"{name} has no field {attr!r}{suggest(attr, known)}"))
    problems += [(t.field, f"environment variable {n} is not set") for n in sorted(uses.env - set(environ))]
    if t.target == "url" and not problems and (url := templating.url_problem(t.template, environ)):
        problems.append((t.field, url))
    return problems


def request_templates(
    prefix: str, *, url: str, headers: Mapping[str, str], body: Any, names: frozenset[str]
) -> Iterator[TemplateField]:
    """The templates of one HTTP request (an action's, or its undo's)."""
    yield TemplateField(f"{prefix}url", url, "url", names)
    for key, value in headers.items():
        yield TemplateField(f"{prefix}headers.{key}", value, "text", names)
    yield from data_templates(f"{prefix}body", body, names)


def data_templates(where: str, value: Any, names: frozenset[str]) -> Iterator[TemplateField]:
    """The strings inside a body (a string, or a TOML table/list rendered leaf by leaf)."""
    if isinstance(value, str):
        yield TemplateField(where, value, "text", names)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from data_templates(f"{where}.{key}", item, names)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from data_templates(f"{where}.{index}", item, names)
