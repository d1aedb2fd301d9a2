"""jinja2 templates for configured actions, where every substituted value is quoted.

A value from the model can never become shell syntax or a second URL segment:
the environment's `finalize` quotes each `{{ ... }}` output for its target
(shell or URL). Only values marked `Trusted` (environment variables in URLs and
headers) pass unquoted; a filter applied to them makes a plain string again,
which is quoted as usual.

`inspect` reads what a template uses from its syntax tree, so that the configuration
can refuse a broken template when it is loaded rather than when it first runs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
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


Target = Literal["shell", "url", "text"]
_ENVIRONMENTS: dict[str, ImmutableSandboxedEnvironment] = {"shell": _SHELL, "url": _URL, "text": _PLAIN}


class TemplateProblem(ValueError):
    """A template cannot be rendered as written (the message says why, for the config file)."""


@dataclass(frozen=True)
class Uses:
    """What a template reads: its free variables, `env.NAME` names, and attributes read on names."""

    variables: frozenset[str]
    env: frozenset[str]
    attributes: dict[str, frozenset[str]] = field(default_factory=dict)


@functools.lru_cache(maxsize=4096)  # a file's templates are read again for every check of it
def inspect(template: str, target: Target) -> Uses:
    """Parse and compile `template` as it will be rendered for `target`, and say what it reads.

    Raises TemplateProblem for a syntax error, an unknown filter, unbalanced shell quotes,
    or an `env` read with a name that is not fixed (`env[name]`, `env` alone): the names
    a configuration reads must be known when it is loaded.
    """
    source = template
    if target == "shell":
        try:
            source = shell.contextualize(template)
        except shell.ShellTemplateError as e:
            raise TemplateProblem(f"not a usable command template: {e}") from None
    env = _ENVIRONMENTS[target]
    try:
        tree = env.parse(source)
        env.compile(tree)  # unknown filters and tests are found when compiling
    except TemplateSyntaxError as e:  # TemplateAssertionError too: an unknown filter or test
        what = "syntax error" if type(e) is TemplateSyntaxError else "error"
        raise TemplateProblem(f"template {what} on line {e.lineno}: {e.message}") from None
    variables = frozenset(meta.find_undeclared_variables(tree))
    lookups = [found for n in tree.find_all((nodes.Getattr, nodes.Getitem)) if (found := _lookup(n))]
    attributes: dict[str, set[str]] = {}
    for name, key in lookups:
        attributes.setdefault(name, set()).add(key)
    env_names = frozenset(attributes.get("env", set())) if "env" in variables else frozenset()
    env_reads = sum(1 for n in tree.find_all(nodes.Name) if n.name == "env" and n.ctx == "load")
    if "env" in variables and env_reads != sum(1 for name, _ in lookups if name == "env"):
        raise TemplateProblem("env can only be read with a fixed name, as env.NAME")
    return Uses(variables, env_names, {k: frozenset(v) for k, v in attributes.items()})


def url_problem(template: str, environ: Mapping[str, str]) -> str | None:
    """Why a URL template is unsafe, or None: a parameter must not stand in its scheme or host.

    The literal prefix (everything before the first parameter, `{{ env.X }}` counting as
    literal) must name the scheme and the whole host (and port) already.
    """
    prefix, whole = _literal_prefix(template, environ)
    scheme, sep, rest = prefix.partition("://")
    if not sep:
        if whole:
            return "must be an absolute URL starting with http:// or https://"
        return "a parameter cannot stand in the URL's scheme or host; start the URL with https://host/"
    if scheme.lower() not in ("http", "https"):
        return "must be an absolute URL starting with http:// or https://"
    if not whole and not any(c in rest for c in "/?#"):
        return (
            "a parameter cannot stand in the URL's host or port; "
            "name the host before the first parameter, e.g. https://host/items/{{ id }}"
        )
    return None


def url_departure(template: str, url: str) -> str | None:
    """Why a rendered URL left its template's scheme, host or literal path prefix, or None.

    Parameters are percent-encoded, so none can add a `/`, `?` or `#`; but `.` and `..`
    are left as they are, and an HTTP client resolves them (`/orders/..` is sent as `/`).
    """
    prefix, _ = _literal_prefix(template, os.environ)
    want, got = urlsplit(prefix), urlsplit(url)
    if any(unquote(segment) in (".", "..") for segment in got.path.split("/")):
        return "a '.' or '..' segment in the URL path would change the path"
    if "?" in prefix or "#" in prefix:  # the parameters are all in the query or fragment
        same_path = got.path == want.path
    else:
        same_path = got.path.startswith(want.path)
    if (got.scheme, got.netloc) != (want.scheme, want.netloc) or not same_path:
        return "the URL does not keep the scheme, host and path its template starts with"
    return None


def _literal_prefix(template: str, environ: Mapping[str, str]) -> tuple[str, bool]:
    """The URL template's text up to its first parameter (env values filled in), and whether
    that is the whole template."""
    parts: list[str] = []
    for node in _URL.parse(template).body:
        for child in node.nodes if isinstance(node, nodes.Output) else [node]:
            lookup = _lookup(child)
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
            elif lookup is not None and lookup[0] == "env":
                parts.append(environ.get(lookup[1], ""))
            else:
                return "".join(parts), False
    return "".join(parts), True


def _lookup(node: nodes.Node) -> tuple[str, str] | None:
    """(name, key) for `name.key` or `name["key"]`, else None."""
    if isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name):
        if isinstance(node, nodes.Getattr):
            return node.node.name, node.attr
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return node.node.name, node.arg.value
    return None


def _render(env: ImmutableSandboxedEnvironment, template: str, context: Mapping[str, Any]) -> str:
    try:
        return env.from_string(template).render(context)
    except TemplateError as e:
        raise ActionError(f"template error: {e}") from None
