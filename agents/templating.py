"""jinja2 templates for configured actions, where every substituted value is quoted.

A value from the model can never become shell syntax or a second URL segment:
the environment's `finalize` quotes each `{{ ... }}` output for its target
(shell or URL). Only values marked `Trusted` (environment variables in URLs and
headers) pass unquoted; a filter applied to them makes a plain string again,
which is quoted as usual.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agents import shell
from agents.errors import ActionError


class Trusted(str):
    """A string that the operator controls (an environment variable)."""


def _finalize(quote_fn: Callable[[str], str]) -> Callable[[Any], str]:
    def finalize(value: Any) -> str:
        if isinstance(value, Trusted):
            return str(value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        return quote_fn("" if value is None else str(value))

    return finalize


def _env(quote_fn: Callable[[str], str]) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, finalize=_finalize(quote_fn), autoescape=False
    )


_SHELL = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_SHELL.filters.update(sh=shell.sh, sh_dq=shell.sh_dq, sh_sq=shell.sh_sq)
_URL = _env(lambda s: quote(s, safe=""))
_PLAIN = _env(lambda s: s)


def environ(trusted: bool) -> dict[str, str]:
    wrap: Callable[[str], str] = Trusted if trusted else str
    return {k: wrap(v) for k, v in os.environ.items()}


def render_shell(template: str, params: Mapping[str, Any]) -> str:
    """A shell command with every substituted value quoted for where it stands (see agents.shell)."""
    try:
        source = shell.contextualize(template)
    except shell.ShellTemplateError as e:
        raise ActionError(f"template error: {e}") from None
    return _render(_SHELL, source, {**params, "env": environ(trusted=False)})


def check_shell(template: str) -> None:
    """Raise ValueError when a command template cannot be rendered safely."""
    try:
        _SHELL.parse(shell.contextualize(template))
    except (shell.ShellTemplateError, TemplateError) as e:
        raise ValueError(str(e)) from None


def render_url(template: str, params: Mapping[str, Any]) -> str:
    """A URL with every parameter percent-encoded; `{{ env.X }}` is inserted as is."""
    return _render(_URL, template, {**params, "env": environ(trusted=True)})


def render_text(template: str, params: Mapping[str, Any]) -> str:
    """Plain text (headers, bodies, instructions): values inserted as they are."""
    return _render(_PLAIN, template, {**params, "env": environ(trusted=True)})


def render_data(value: Any, params: Mapping[str, Any]) -> Any:
    """Render every string inside a TOML table/list (a JSON body), keeping the structure.

    A string that is exactly one `{{ name }}` of a parameter keeps that parameter's
    type (an integer stays an integer in the JSON body).
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{{") and stripped.endswith("}}"):
            name = stripped[2:-2].strip()
            if name in params:
                return params[name]
        return render_text(value, params)
    if isinstance(value, dict):
        return {k: render_data(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render_data(v, params) for v in value]
    return value


def _render(env: ImmutableSandboxedEnvironment, template: str, context: Mapping[str, Any]) -> str:
    try:
        return env.from_string(template).render(context)
    except TemplateError as e:
        raise ActionError(f"template error: {e}") from None
