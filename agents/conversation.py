"""What the model reads: the system prompt, the thread so far, the request, the run's own turns.

A thread is one conversation with its agent. What the thread said and did before this run
(the earlier requests, what their runs did, their answers, an undo) is taken from the journal
once, when the run first asks the model, and kept with the run (`runs.history`): never by
re-reading Slack, and a resumed run reads exactly the same input. It is fitted into the agent's
`history_tokens`: the oldest runs are condensed first (their tool results dropped), then left
out; the request itself and the run's own turns are always there.

The prefix (the system prompt, then the tools) is the same on every turn of a run, so that
providers' prompt caches and local servers' prefix caches work.
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from agents.config import AgentConfig
from agents.templating import render_text
from storage.models import Request, RunStatus, Step, StepKind, StepStatus
from storage.threads import PastRun

HISTORY_OUTPUT = 600
"""Characters of an earlier tool result kept in a full account."""
CONDENSED_ANSWER = 200
"""Characters of an earlier answer kept in a condensed account."""


@dataclass(frozen=True)
class PastAction:
    name: str
    arguments: dict[str, Any]
    status: str
    """succeeded, failed, rejected, proposed or compensated (reversed since)."""
    summary: str
    output: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EarlierRun:
    """An earlier run of the thread, as its conversation remembers it."""

    id: int
    requester: str
    request: str
    status: str
    undone_by: str | None
    answer: str
    problem: str
    actions: list[PastAction]
    steering: list[str]
    hidden: bool = False
    """Its actions are not shown: a team member's run, remembered for a customer."""

    @property
    def outcome(self) -> str:
        if self.undone_by:
            return "undone"
        return {
            RunStatus.succeeded: "done",
            RunStatus.no_action: "did nothing",
            RunStatus.failed: "failed",
            RunStatus.rolled_back: "failed and rolled back",
            RunStatus.cancelled: "cancelled",
        }.get(RunStatus(self.status), "still in progress")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EarlierRun:
        actions = [PastAction(**a) for a in data.get("actions", [])]
        return cls(**{**data, "actions": actions})


@dataclass(frozen=True)
class TurnContext:
    """What a planner may know beyond the messages (never sent to a model): who asked, and the
    thread's earlier runs as data."""

    requester: str
    thread: tuple[EarlierRun, ...] = ()


# The thread so far ----------------------------------------------------------------------------


def remember(past: list[PastRun], *, for_customer: bool) -> list[EarlierRun]:
    """The thread's earlier runs as the conversation keeps them. For a customer, what team
    members' runs did is not shown (only what was asked and answered: what the thread shows)."""
    remembered = []
    for p in past:
        hidden = for_customer and p.request.requester_role == "member"
        remembered.append(
            EarlierRun(
                id=p.run.id or 0,
                requester=p.request.user_id,
                request=p.request.text,
                status=p.run.status,
                undone_by=p.run.undone_by,
                answer=(p.run.outcome or "").strip(),
                problem=_first_line(p.run.error),
                actions=[] if hidden else [_action(s) for s in p.actions],
                steering=[s.text for s in p.steering],
                hidden=hidden,
            )
        )
    return remembered


def history(runs: list[EarlierRun], budget: int) -> list[dict[str, Any]]:
    """The earlier runs as chat messages (a user message and the agent's account of each), within
    `budget` tokens: oldest condensed first, then left out (saying how many)."""
    if budget <= 0 or not runs:
        return []
    full = [True] * len(runs)
    first = 0

    def messages() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(first, len(runs)):
            out.append({"role": "user", "content": _asked(runs[i])})
            out.append({"role": "assistant", "content": _account(runs[i], full=full[i])})
        if first:
            note = f"(Earlier in this thread: {first} more request{'s' * (first != 1)}, not shown.)\n"
            out[0] = {"role": "user", "content": note + out[0]["content"]}
        return out

    for i in range(len(runs)):  # condense, oldest first
        if estimate_tokens(messages()) <= budget:
            return messages()
        full[i] = False
    while first < len(runs) - 1 and estimate_tokens(messages()) > budget:  # then leave out
        first += 1
    kept = messages()
    if estimate_tokens(kept) > budget:  # the newest alone is too long: cut it to fit
        room = max(budget * 4 - 200, 200) // 2
        kept = [{**m, "content": _cut(m["content"], room)} for m in kept]
    return kept


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """About four characters a token, plus a little per message: cheap, and close enough to
    keep a budget (the model's tokenizer is not at hand)."""
    return sum(len(json.dumps(m, ensure_ascii=False)) // 4 + 4 for m in messages)


def _asked(run: EarlierRun) -> str:
    return run.request


def _account(run: EarlierRun, *, full: bool) -> str:
    head = f"[run #{run.id}: {run.outcome}]"
    if not full:
        done = "; ".join(a.summary for a in run.actions if a.status in ("succeeded", "compensated"))
        parts = [head, done + "." if done else ""]
        if run.answer:
            parts.append(f"Answer: {_cut(run.answer, CONDENSED_ANSWER)}")
        return " ".join(p for p in parts if p)
    lines = [head]
    if run.hidden:
        lines.append("(a team member's run: what it did is not shown here)")
    for a in run.actions:
        given = {k: v for k, v in a.arguments.items() if v not in (None, "")}  # defaults add only tokens
        args = json.dumps(given, ensure_ascii=False, sort_keys=True)
        result = a.output if a.status != "compensated" else f"{a.output} (reversed since)"
        lines.append(f"- {a.name} {args} -> {a.status}: {_cut(result, HISTORY_OUTPUT)}")
    if run.steering:
        said = "; ".join(f"“{s}”" for s in run.steering)
        lines.append(f"(While it ran, the thread added: {said}.)")
    if run.answer:
        lines.append(f"Answer: {run.answer}")
    if run.problem:
        lines.append(f"Problem: {run.problem}")
    if run.undone_by:
        lines.append(f"(Undone later at the request of <@{run.undone_by}>.)")
    return "\n".join(lines)


def _action(step: Step) -> PastAction:
    data = dict(step.data or {})
    summary = str(data.pop("summary", "") or step.name)
    return PastAction(
        name=step.name,
        arguments=dict(step.arguments or {}),
        status=step.status,
        summary=summary,
        output=step.output or step.error or "",
        data=data,
    )


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def snapshot(runs: list[EarlierRun], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What `runs.history` keeps: the runs as data (for planners) and as the model reads them."""
    return {"runs": [_as_data(r) for r in runs], "messages": messages}


def _as_data(run: EarlierRun) -> dict[str, Any]:
    """`dataclasses.asdict` of the run, without its deep copy of every value (20 runs took a
    millisecond): the snapshot is written as JSON at once, and kept with the run as it was
    written (`_thread`), so it may share the journal's values with the runs remembered."""
    data = {f.name: getattr(run, f.name) for f in _RUN_FIELDS}
    data["actions"] = [{f.name: getattr(a, f.name) for f in _ACTION_FIELDS} for a in run.actions]
    data["steering"] = list(run.steering)
    return data


_RUN_FIELDS = fields(EarlierRun)
_ACTION_FIELDS = fields(PastAction)


def from_snapshot(data: dict[str, Any] | list[Any] | None) -> tuple[list[EarlierRun], list[dict[str, Any]]]:
    if not isinstance(data, dict):
        return [], []
    return [EarlierRun.from_json(r) for r in data.get("runs", [])], list(data.get("messages", []))


# The run's own conversation --------------------------------------------------------------------


def system_prompt(agent: AgentConfig, request: Request, run_id: int) -> str:
    """The instructions, with who asks and where. The same on every turn of the run: the time
    is the request's, not the clock's (a cached prefix stays valid, a resume reads the same)."""
    at = request.created_at.isoformat(timespec="seconds")
    context = {
        "agent": agent,
        "request": request,
        "user": request.user_id,
        "channel": request.channel_id,
        "now": at,
    }
    instructions = render_text(agent.instructions, context)
    limited = "help them, but only with your tools"
    who = {
        "member": "a member of the team",
        "customer": f"a customer (a guest or a user of another workspace): {limited}",
        "unverified": f"someone Slack could not verify right now: {limited}",
    }.get(request.requester_role, "a member of the team")
    # Asked in the app's assistant thread (its DM): Slack says which channel they are viewing,
    # which is what "here" or "this channel" means to them.
    viewing = (
        f"They are viewing <#{request.context_channel_id}> (channel id {request.context_channel_id}). "
        if request.context_channel_id
        else ""
    )
    return (
        f"{instructions}\n\n"
        f"Requester: <@{request.user_id}> (Slack user id {request.user_id}), {who}. {viewing}"
        f"Channel: <#{request.channel_id}>. Time of the request (UTC): {at}. Run: #{run_id}.\n"
        "Earlier messages, if any, are this thread's conversation so far: what was asked before, "
        "and what you did and answered then."
    )


class SystemPrompts:
    """The system prompt of each run in flight, kept from one attempt to the next: a run that
    waited (a handoff's outcome, an approval, a pause) goes on without rendering it again. The
    same agent (the same configuration object: a reload renders it anew) and the same role of
    the requester (verified late, it may change) give the same prompt; nothing else it reads
    changes within a run (`system_prompt`)."""

    def __init__(self, limit: int = 2000) -> None:
        self.limit = limit
        self._kept: OrderedDict[int, tuple[AgentConfig, str, str]] = OrderedDict()

    def of(self, agent: AgentConfig, request: Request, run_id: int, render: Callable[[], str]) -> str:
        kept = self._kept.get(run_id)
        if kept is not None and kept[0] is agent and kept[1] == request.requester_role:
            self._kept.move_to_end(run_id)
            return kept[2]
        text = render()
        self._kept[run_id] = (agent, request.requester_role, text)
        if len(self._kept) > self.limit:  # runs that wait for ever, or ended elsewhere
            self._kept.popitem(last=False)
        return text

    def forget(self, run_id: int) -> None:
        """The run ended."""
        self._kept.pop(run_id, None)


def steering_message(steer: Request) -> dict[str, Any]:
    return {"role": "user", "content": f"(<@{steer.user_id}> adds, while you work:) {steer.text}"}


def rebuild(
    system: str,
    earlier: list[dict[str, Any]],
    request: str,
    steps: list[Step],
    steering: list[Request],
) -> list[dict[str, Any]]:
    """The whole input of the run's next model turn, rebuilt from the journal: replies that
    steered the run go where the run read them (before the step of their `steer_seq`)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        *earlier,
        {"role": "user", "content": request},
    ]
    read: defaultdict[int, list[Request]] = defaultdict(list)
    for steer in steering:
        if steer.steer_seq is not None:
            read[steer.steer_seq].append(steer)
    for step in steps:
        messages.extend(steering_message(s) for s in read.pop(step.seq, []))
        if step.kind == StepKind.model and step.status == StepStatus.succeeded and step.data:
            messages.append(step.data["message"])
        elif step.kind == StepKind.action and step.status != StepStatus.intent:
            messages.append({"role": "tool", "tool_call_id": step.tool_call_id, "content": step.output or ""})
    for seq in sorted(read):  # read at a boundary whose step is not journaled (yet)
        messages.extend(steering_message(s) for s in read[seq])
    return messages
