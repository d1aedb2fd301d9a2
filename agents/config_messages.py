"""Validation errors in the words of the configuration file.

A person reading an error names TOML things (a string, a table, `[[agents]]`) and the
values that would be valid, never the validation library's own wording ("Input should
be a valid dictionary or instance of ParamSpec"). An unknown key or name comes with the
closest valid one: "unknown key 'timout' (did you mean 'timeout'?)".
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

SECTIONS = ("agents", "actions", "mcp_servers")  # arrays of tables whose entries are named by `name`
TAGS = ("command", "http")  # the action kinds, which pydantic puts into error locations

NAME_RULE = "must start with a letter and have only letters, digits, '_' and '-' (at most 64 characters)"

_PLAIN = {
    "missing": "missing field",
    "string_type": "must be a string (in quotes)",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": 'must be a list, like ["a", "b"]',
    "dict_type": 'must be a table, like { key = "value" }',
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "string_pattern_mismatch": NAME_RULE,
}
_BOUNDS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "too_short": ("min_length", "must have at least {} entries"),
    "too_long": ("max_length", "must have at most {} entries"),
    "string_too_short": ("min_length", "must have at least {} characters"),
    "string_too_long": ("max_length", "must have at most {} characters"),
}


def suggest(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'timeout'?)' for the closest candidate, or '' when none is close."""
    match = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def problem(raw: dict[str, Any], err: ErrorDetails, root: type[BaseModel]) -> tuple[str, str, str]:
    """(entry, field, message) for one validation error of the file `raw` validated as `root`."""
    entry, field = locate(raw, err["loc"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        field = ".".join(x for x in (field, "kind") if x)
    return entry, field, message(err, root)


def message(err: ErrorDetails, root: type[BaseModel]) -> str:
    kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(root, loc[:-1])
        return f"unknown key {key!r}" + (suggest(key, parent.model_fields) if parent else "")
    if kind == "literal_error":
        what = "type" if loc and loc[-1] == "type" else "value"
        return one_of(what, _quoted(ctx.get("expected", "")), err.get("input"))
    if kind == "union_tag_invalid":
        return one_of("kind", _quoted(ctx.get("expected_tags", "")), ctx.get("tag"))
    if kind == "union_tag_not_found":
        return "missing field (kind = " + " or ".join(f'"{t}"' for t in TAGS) + ")"
    if kind == "list_type" and len(loc) == 1 and loc[0] in SECTIONS:
        return f"must be an array of tables: write [[{loc[0]}]] above each one"
    if kind == "too_short" and len(loc) == 1 and loc[0] == "agents":
        return "at least one [[agents]] entry is needed"
    if kind in _BOUNDS:
        key, text = _BOUNDS[kind]
        bound = ctx.get(key)
        return text.format(f"{bound:g}" if isinstance(bound, float) else bound)
    return _PLAIN.get(kind, "is not a valid value here")


def locate(raw: dict[str, Any], loc: Sequence[str | int]) -> tuple[str, str]:
    """A pydantic error location as (entry, field): ("actions[0] (restart)", "params.service")."""
    parts = list(loc)
    if not parts:
        return ("file", "")
    if parts[0] in SECTIONS and len(parts) > 1 and isinstance(parts[1], int):
        section, index = str(parts[0]), parts[1]
        items = raw.get(section)
        item = items[index] if isinstance(items, list) and index < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        entry = f"{section}[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")
        rest = parts[2:]
        if section == "actions" and rest and rest[0] in TAGS:
            rest = rest[1:]  # the kind pydantic chose, not a key of the file
        return (entry, ".".join(str(x) for x in rest))
    return (str(parts[0]), ".".join(str(x) for x in parts[1:]))


def _quoted(expected: str) -> list[str]:
    """The allowed values from pydantic's "'a', 'b' or 'c'"."""
    return re.findall(r"'([^']*)'", expected)


def one_of(what: str, allowed: Sequence[str], given: Any) -> str:
    """ "unknown kind 'comand' (did you mean 'command'?); must be one of: command, http"."""
    listed = ", ".join(allowed)
    if isinstance(given, str):
        return f"unknown {what} {given!r}{suggest(given, allowed)}; must be one of: {listed}"
    return f"must be one of: {listed}"


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class found at `loc` inside `root` (None when the path leaves the models)."""
    tp: Any = root
    for part in loc:
        tp = _follow(tp, part)
        if tp is None:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _follow(tp: Any, part: str | int) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field else None
    origin = get_origin(tp)
    if origin is list and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    if origin in (Union, types.UnionType):  # a tagged union: the member whose `kind` is `part`
        for member in map(_unwrap, get_args(tp)):
            kind = getattr(member, "model_fields", {}).get("kind")
            if kind is not None and get_args(kind.annotation) == (part,):
                return member
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and `| None`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType) and type(None) in get_args(tp):
            members = [a for a in get_args(tp) if a is not type(None)]
            tp = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        else:
            return tp
