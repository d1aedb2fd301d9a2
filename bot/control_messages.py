"""What the controls' replies look like: status, the undo choices, "did you mean", refusals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.commands import Command
from bot.render import Message, escape, render
from storage.clock import now
from storage.controls import ALL
from storage.models import Approval, Control, Run


@dataclass(frozen=True)
class Reply:
    """What a control answers, and who sees it."""

    text: str
    public: bool = False
    """Announced where it was asked (a pause, a resume), not only to the one who asked."""
    private: bool = False
    """Only the one who asked ever sees it (a refusal, a question), even for words typed in a
    channel."""
    blocks: list[dict[str, Any]] | None = None


REFUSED_TO = {
    "undo": "undo this run",
    "approve": "approve this action",
    "deny": "deny this action",
    "pause": "pause agents",
    "resume": "resume agents",
    "status": "see the agents' status",
    "summary": "post the summary",
}
"""What a refused person may not do, as the end of "you can't ..."."""


def refusal(user_id: str, verb: str, reason: str) -> str:
    """The sentence refusing `verb`: "Sorry <@U1>, you can't approve this action: guests ..."."""
    return f"Sorry <@{user_id}>, you can't {REFUSED_TO.get(verb, verb + ' agents')}: {reason}."


def status_text(
    agents: Sequence[str],
    flags: dict[str, Control],
    active: Sequence[Run],
    waiting: Sequence[Approval],
    *,
    here: str,
    cases: dict[int, list[Run]] | None = None,
) -> str:
    """The agents and their pause state (global), then the runs and approvals of `here`; a run of
    a case with several runs is shown as the case's tree (`cases`: case -> its runs)."""
    lines = ["*Agents*"]
    if ALL in flags:
        c = flags[ALL]
        lines.append(f":double_vertical_bar: ALL AGENTS PAUSED by <@{c.by_user}> since {clock(c.changed_at)}")
    for agent in agents:
        flag = flags.get(agent)
        state = f"paused by <@{flag.by_user}> since {clock(flag.changed_at)}" if flag else "active"
        if flag is None and ALL in flags:
            state = "paused (all agents)"
        mine = [r for r in active if r.agent == agent]
        lines.append(f"• *{agent}*: {state}; {len(mine)} run{'s' * (len(mine) != 1)} in flight")
    lines.append("*Runs in flight*" if active else "*Runs in flight*: none")
    cases = cases or {}
    shown: set[int] = set()
    for r in active[:20]:
        if r.case in cases:
            if r.case not in shown:
                shown.add(r.case)
                lines.extend(case_tree(r.case, cases[r.case]))
            continue
        lines.append(f"• {_run_state(r)}")
    if len(active) > 20:
        lines.append(f"• … and {len(active) - 20} more")
    lines.append("*Approvals waiting*" if waiting else "*Approvals waiting*: none")
    for a in waiting[:20]:
        lines.append(f"• run #{a.run_id}: {a.action} (expires {clock(a.expires_at)})")
    lines.append(f"_Runs and approvals {here}; pauses apply to every channel._")
    return "\n".join(lines)


def case_tree(case: int, members: Sequence[Run]) -> list[str]:
    """A case as a tree: each run under the run that handed it its work."""
    lines = [
        f"• case #{case} ({len(members)} runs, " + " → ".join(dict.fromkeys(m.agent for m in members)) + ")"
    ]
    depth: dict[int | None, int] = {}
    for m in members:  # parents come before their children
        depth[m.id] = depth.get(m.parent_id, -1) + 1 if m.parent_id is not None else 0
        lines.append("    " * (depth[m.id] + 1) + f"◦ {_run_state(m)}")
    return lines


def _run_state(r: Run) -> str:
    why = f" ({r.wait_reason})" if r.wait_reason else ""
    return f"run #{r.id} ({r.agent}): {r.status.replace('_', ' ')}{why}"


def undo_choices(choices: Sequence[tuple[Run, str]]) -> Message:
    """The recent runs one may undo here, each with its own Undo button."""
    header = "Which run should I undo? The latest runs here that can still be undone, newest first:"
    rows = [
        {
            "id": run.id,
            "line": f"*Run #{run.id}* ({run.agent}) · {clock(run.created_at)} · {run.status}\n"
            + f"> {escape(_one_line(asked, 150))}",
        }
        for run, asked in choices
    ]
    text = header + " " + ", ".join(f"#{run.id} ({run.agent})" for run, _ in choices) + "."
    return render("undo_choices.json.j2", text=text, header=header, choices=rows)


def did_you_mean(meant: Command, *, run_id: int | None = None, nothing: str | None = None) -> Message:
    """The question "did you mean `pause all agents`?", with a button that does it (or why not)."""
    words = meant.words() if meant.verb != "undo" else "undo"
    question = f"I did not pass that on to an agent: did you mean `{words}`?"
    context: dict[str, Any] = {"action_id": None, "value": "", "label": ""}
    if nothing is not None:
        question += f" {nothing}"
    elif meant.verb == "undo":
        context = {"action_id": "chatops_undo", "value": str(run_id), "label": f"Undo run #{run_id}"}
    else:
        context = {"action_id": "chatops_command", "value": words, "label": words[:1].upper() + words[1:]}
    return render("did_you_mean.json.j2", text=question, question=question, **context)


def clock(at: datetime | None = None) -> str:
    return (at or now()).strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


HELP = (
    "*chatops commands* (plain words in a thread or channel, or `/agent …`):\n"
    "• `undo`: reverse this thread's latest run (at channel level: the channel's latest run); "
    "`undo <run>`: that run, if it was asked for in this channel (in a DM: by you)\n"
    "• `/agent undo`: pick one of this channel's recent runs to undo (only you see the list); "
    "`/agent undo <run>`: that run\n"
    "• `pause agent [name]`, `pause all agents`: stop agents at their next step; `resume …` continues\n"
    "• `status`: agents, and this channel's runs in flight and approvals waiting (in a DM: yours)\n"
    "• anything else is a request: `/agent create a ticket for the login bug`"
)
