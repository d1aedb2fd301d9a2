"""Shell quoting that follows the template: each `{{ ... }}` is escaped for where it stands.

`shlex.quote` is right for an unquoted word, but an operator may write
`echo "{{ msg }}"` or `grep '{{ word }}'`. Inside double quotes `$(...)` and
backticks still run, so a single-quoted value is not enough there. The template is
lexed once, and every expression gets the filter of its context:

- unquoted (or inside `$(...)` / backticks): `sh`, a shlex-quoted word;
- inside double quotes: `sh_dq`, backslash before `\\ " $` and backtick;
- inside single quotes: `sh_sq`, every `'` becomes `'\\''`.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

NORMAL, SINGLE, DOUBLE = "sh", "sh_sq", "sh_dq"


class ShellTemplateError(ValueError):
    """The template's quotes do not balance."""


def text(value: Any) -> str:
    """A template value as the shell sees it (booleans as true/false, None as empty)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def sh(value: Any) -> str:
    return shlex.quote(text(value))


def sh_dq(value: Any) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", text(value))


def sh_sq(value: Any) -> str:
    return text(value).replace("'", "'\\''")


_HEREDOC = re.compile(r"<<(-?)[ \t]*(?:'([^']*)'|\"([^\"]*)\"|\\?([A-Za-z_][A-Za-z0-9_]*))")


def contextualize(template: str) -> str:
    """The template with a quoting filter appended to every `{{ ... }}` expression.

    A value inside a heredoc body is refused: a line of it equal to the end marker
    would end the heredoc early, whatever the escaping.
    """
    out: list[str] = []
    stack = [NORMAL]  # quoting contexts; `$(` and backticks inside double quotes push NORMAL
    heredocs: list[tuple[str, bool]] = []  # markers opened on this line, bodies start at its end
    i, n = 0, len(template)
    while i < n:
        if template[i] == "\n" and heredocs and stack[-1] == NORMAL:
            i = _skip_heredoc_bodies(template, i + 1, heredocs, out)
            heredocs = []
            continue
        if stack[-1] == NORMAL and template.startswith("<<", i) and not template.startswith("<<<", i):
            m = _HEREDOC.match(template, i)
            if m:
                marker = next(g for g in m.groups()[1:] if g is not None)
                heredocs.append((marker, m.group(1) == "-"))
                out.append(m.group(0))
                i = m.end()
                continue
        if template.startswith("{{", i):
            end = template.find("}}", i + 2)
            if end < 0:
                raise ShellTemplateError("an expression `{{` is not closed")
            expr = template[i + 2 : end].strip().rstrip("-").lstrip("-")
            out.append("{{ (" + expr + ") | " + stack[-1] + " }}")
            i = end + 2
            continue
        if template.startswith("{%", i) or template.startswith("{#", i):
            close = "%}" if template[i + 1] == "%" else "#}"
            end = template.find(close, i + 2)
            if end < 0:
                raise ShellTemplateError(f"a block `{template[i : i + 2]}` is not closed")
            out.append(template[i : end + 2])
            i = end + 2
            continue
        c = template[i]
        state = stack[-1]
        if state == SINGLE:
            if c == "'":
                stack.pop()
        elif c == "\\" and i + 1 < n:
            out.append(template[i : i + 2])
            i += 2
            continue
        elif state == DOUBLE:
            if c == '"':
                stack.pop()
            elif template.startswith("$(", i):
                stack.append("(")
                stack.append(NORMAL)
                out.append("$(")
                i += 2
                continue
            elif c == "`":
                stack.append("`")
                stack.append(NORMAL)
        else:  # NORMAL
            if c == "'":
                stack.append(SINGLE)
            elif c == '"':
                stack.append(DOUBLE)
            elif c == ")" and len(stack) >= 3 and stack[-2] == "(":
                stack.pop()
                stack.pop()
            elif c == "`" and len(stack) >= 3 and stack[-2] == "`":
                stack.pop()
                stack.pop()
        out.append(c)
        i += 1
    if stack != [NORMAL]:
        raise ShellTemplateError("its quotes are not balanced")
    return "".join(out)


def _skip_heredoc_bodies(template: str, i: int, heredocs: list[tuple[str, bool]], out: list[str]) -> int:
    """Copy heredoc bodies (from `i`) verbatim; refuse an expression inside one."""
    out.append("\n")
    for marker, strip_tabs in heredocs:
        while i < len(template):
            end = template.find("\n", i)
            line = template[i : len(template) if end < 0 else end]
            if "{{" in line:
                raise ShellTemplateError(
                    "a value cannot be put inside a heredoc (a line of it could end the heredoc); "
                    "pass it as an argument, e.g. printf '%s\\n' {{ value }}"
                )
            out.append(line + ("" if end < 0 else "\n"))
            i = len(template) if end < 0 else end + 1
            if (line.lstrip("\t") if strip_tabs else line) == marker:
                break
    return i
