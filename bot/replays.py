"""What `chatops replay` and `chatops eval` print: a recorded run beside its dry replay, and a
score table. Plain text for a terminal (or a pipe); every line passes the redactor."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator

from agents.dryrun import Call, Outcome
from agents.evals import Scored
from agents.redaction import Redactor
from agents.replay import Replay

NONE = "(no call)"


def replay_text(replay: Replay, *, planner: str, redactor: Redactor, width: int | None = None) -> str:
    """The original run's tool calls and outcome beside the replay's, call by call."""
    width = width or min(shutil.get_terminal_size((140, 24)).columns, 200)
    column = max((width - 7) // 2, 30)
    original, new = replay.original, replay.new
    request = replay.request
    lines = [
        f"Replay of run #{original.run_id} (agent {original.agent}), asked by {request.user_id} in "
        f"{request.channel_id} on {request.created_at:%Y-%m-%d %H:%M} UTC:",
        *(f"> {line}" for line in request.text.splitlines() or [""]),
        f"original: {original.planner or 'no model turn'}, {original.tokens:,} tokens, {original.status}",
        f"replay:   {planner}, {new.tokens:,} tokens, {_ended(new)}; dry run on a throwaway database: "
        "no action was run",
        "",
    ]
    header = [f"run #{original.run_id} (recorded)", "replay (dry run)"]
    rows: list[tuple[str, list[str], list[str]]] = [("", [header[0]], [header[1]])]
    for i in range(max(len(original.calls), len(new.calls), 1)):
        left = _call(original.calls[i]) if i < len(original.calls) else [NONE]
        right = _call(new.calls[i]) if i < len(new.calls) else [NONE]
        rows.append((str(i + 1), left, right))
    rows.append(("=", [_answer(original)], [_answer(new)]))
    rule = f"{'-' * 3}+{'-' * (column + 2)}+{'-' * (column + 1)}"
    for n, (label, left, right) in enumerate(rows):
        lines += _side_by_side(label, left, right, column)
        if n == 0 or n == len(rows) - 2:
            lines.append(rule)
    same = [c.action for c in original.calls] == [c.action for c in new.calls]
    lines += [
        "",
        f"The replay made {'the same' if same else 'different'} tool calls ({len(new.calls)} against "
        f"{len(original.calls)}); {_sources(new.calls)}.",
    ]
    return redactor.clean("\n".join(lines))


def eval_text(scored: list[Scored], *, planner: str, source: str, redactor: Redactor) -> str:
    """A score table: each case, its checks, the calls it made; then the totals."""
    rows = [["case", "result", "expected", "forbidden", "tool calls made", "run"]]
    for s in scored:
        made, avoided = s.made, s.avoided
        rows.append(
            [
                s.case.name,
                "pass" if s.passed else "FAIL",
                f"{sum(made)}/{len(made)}" if made else "-",
                f"{len(avoided) - sum(avoided)} made" if avoided else "-",
                ", ".join(_short(c) for c in s.outcome.calls) or "(none)",
                _ended(s.outcome),
            ]
        )
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(len(rows[0]))]
    lines = [
        f"Evaluation of {source} with {planner} (dry run on a throwaway database: no action was run)",
        "",
    ]
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(_fit(cell, w) for cell, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    passed = sum(s.passed for s in scored)
    checks = [s.checks for s in scored]
    lines += [
        "",
        f"score: {passed}/{len(scored)} cases passed, "
        f"{sum(c[0] for c in checks)}/{sum(c[1] for c in checks)} checks",
    ]
    for s in scored:
        if not s.passed:
            missing = [str(e) for e, ok in zip(s.case.expect, s.made, strict=True) if not ok]
            broken = [str(f) for f, ok in zip(s.case.forbid, s.avoided, strict=True) if not ok]
            why = "; ".join(
                [*(f"expected {m}" for m in missing), *(f"forbidden {m} was made" for m in broken)]
            )
            lines.append(f"FAIL {s.case.name}: {why}" + (f" ({s.outcome.error})" if s.outcome.error else ""))
    return redactor.clean("\n".join(lines))


def _call(call: Call) -> list[str]:
    note = f" [{call.note}]" if call.note else ""
    status = "" if call.status in ("succeeded", "compensated") else f" ({call.status})"
    undone = " (later undone)" if call.status == "compensated" else ""
    return [_short(call, full=True), f"-> {call.result}{status}{undone}{note}"]


def _short(call: Call, *, full: bool = False) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items() if v not in (None, ""))
    text = f"{call.action}({args})"
    return text if full or len(text) <= 60 else text[:57] + "..."


def _answer(outcome: Outcome) -> str:
    said = outcome.answer or outcome.error or outcome.wait_reason or ""
    return f"{_ended(outcome)}: {said}" if said else _ended(outcome)


def _ended(outcome: Outcome) -> str:
    if outcome.status == "waiting":
        return f"stopped waiting ({outcome.wait_reason})" if outcome.wait_reason else "stopped waiting"
    return outcome.status.replace("_", " ")


def _sources(calls: list[Call]) -> str:
    counts: dict[str, int] = {}
    for c in calls:
        source = c.note.split(";")[0] or "-"
        counts[source] = counts.get(source, 0) + 1
    return ", ".join(f"{n} {source}" for source, n in counts.items()) or "no calls"


def _side_by_side(label: str, left: list[str], right: list[str], column: int) -> Iterator[str]:
    a = [w for line in left for w in textwrap.wrap(line, column) or [""]]
    b = [w for line in right for w in textwrap.wrap(line, column) or [""]]
    a += [""] * (len(b) - len(a))
    b += [""] * (len(a) - len(b))
    for i, (left_line, right_line) in enumerate(zip(a, b, strict=True)):
        yield f"{label if i == 0 else '':>3}| {left_line:<{column}} | {right_line}".rstrip()


def _fit(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return (text if len(text) <= width else text[: width - 3] + "...").ljust(width)
