"""What a run looks like in its thread: the status message's lines, the outcome's parts.

Rendered from storage (bot.presenter loads it), never from what a worker said. A customer's
thread sees what the customer's agent did, and only that of the case: the runs it handed work
to are "the team".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.loading import THINKING
from bot.render import escape
from storage.models import Request, Run, RunStatus, Step, StepKind, StepStatus

HANDOFF = "transfer_to_"  # the tools of agents.actions.handoff

OFFLINE = "offline planner"
HEADERS = {
    RunStatus.queued: ":hourglass_flowing_sand: *{agent}* took this: run #{id} is queued.",
    RunStatus.running: ":gear: *{agent}* is working on this: run #{id}.",
    RunStatus.waiting: ":double_vertical_bar: Run #{id} ({agent}) is waiting: {reason}.",
    RunStatus.succeeded: ":white_check_mark: Run #{id} ({agent}) finished.",
    RunStatus.no_action: ":warning: Run #{id} ({agent}) did nothing.",
    RunStatus.failed: ":x: Run #{id} ({agent}) failed.",
    RunStatus.rolled_back: ":leftwards_arrow_with_hook: Run #{id} ({agent}) was undone.",
    RunStatus.cancelled: ":no_entry_sign: Run #{id} ({agent}) was cancelled.",
}
# A failed run its agent rolled back: a failure first (the undone ones use HEADERS).
ROLLED_BACK_AFTER_FAILING = ":x: Run #{id} ({agent}) failed and was rolled back."
FINAL_REACTION = {
    RunStatus.succeeded: "white_check_mark",
    RunStatus.no_action: "warning",
    RunStatus.failed: "x",
    RunStatus.rolled_back: "leftwards_arrow_with_hook",
    RunStatus.cancelled: "no_entry_sign",
}


def loading_status(action: str | None, *, customer: bool) -> str:
    """The thread's loading status while a step runs (bot.loading): the model thinks (`action`
    None) or an action runs. Slack shows it after the app's name."""
    if action is None:
        return THINKING
    if action.startswith(HANDOFF):
        return "is asking the team…" if customer else f"is handing this to {action.removeprefix(HANDOFF)}…"
    return f"is running {action}…"


def final_reaction(run: Run) -> str:
    """The reaction on the request once the run is final: ❌ for a failure, rolled back or not."""
    if run.status == RunStatus.rolled_back and not run.undone_by:
        return "x"
    return FINAL_REACTION[RunStatus(run.status)]


@dataclass
class RunView:
    run: Run
    request: Request
    steps: list[Step]
    paused_by: str | None = None
    """When the run is queued behind a pause: which pause ("all agents" or the agent)."""
    behind: int | None = None
    """When the run is queued behind an earlier run in its thread: that run's id."""
    steering: list[Request] = field(default_factory=list)
    """Replies in the thread that steer the run (read, or waiting for its next step)."""
    child: Run | None = None
    """The run it handed work to and waits for (a handoff)."""
    parent: Run | None = None
    """The run that handed it its work."""

    @property
    def customer(self) -> bool:
        """A customer's thread: the rest of the case is "the team" here, never its threads."""
        return self.request.requester_role != "member"

    @property
    def planner(self) -> str:
        label = self.run.planner
        if label is None:
            return "waiting for a worker"
        return f"{OFFLINE} (no language model)" if label == OFFLINE else f"model {label}"

    def footer(self) -> str:
        turns = sum(1 for s in self.steps if s.kind == StepKind.model)
        actions = sum(1 for s in self.steps if s.kind == StepKind.action)
        tokens = self.run.prompt_tokens + self.run.completion_tokens
        return (
            f"run #{self.run.id} · agent {self.run.agent} · {self.planner} · "
            f"{turns} model turn{'s' * (turns != 1)}, {actions} action{'s' * (actions != 1)}"
            + (f" · {tokens:,} token{'s' * (tokens != 1)}" if tokens else "")
        )

    def header(self) -> str:
        r = self.run
        if r.undone_by and self.active:
            return f":leftwards_arrow_with_hook: Undoing run #{r.id} ({r.agent}), asked by <@{r.undone_by}>."
        if r.status == RunStatus.queued and self.behind:
            return (
                f":hourglass_flowing_sand: *{r.agent}* took this: run #{r.id} is queued "
                f"behind run #{self.behind}."
            )
        if r.status == RunStatus.queued and self.paused_by:
            return (
                f":double_vertical_bar: *{r.agent}* took this: run #{r.id} is queued and waits "
                f"because {self.paused_by} paused."
            )
        if r.status == RunStatus.rolled_back and not r.undone_by:
            return ROLLED_BACK_AFTER_FAILING.format(agent=r.agent, id=r.id)
        if r.status == RunStatus.waiting and self.child is not None:
            if self.customer:
                return (
                    f":hourglass_flowing_sand: Run #{r.id} ({r.agent}) is waiting: the team is looking at it."
                )
            return (
                f":hourglass_flowing_sand: Run #{r.id} ({r.agent}) is waiting for *{self.child.agent}*: "
                f"{run_link(self.child, f'run #{self.child.id}')}."
            )
        return HEADERS[RunStatus(r.status)].format(agent=r.agent, id=r.id, reason=r.wait_reason or "")

    @property
    def active(self) -> bool:
        return self.run.status in (RunStatus.queued, RunStatus.running, RunStatus.waiting)

    def lines(self) -> list[str]:
        out = []
        said = {s.steer_seq: s for s in self.steering if s.steer_seq is not None}
        for s in self.steps:
            if s.seq in said:
                out.append(_steering_line(said[s.seq], read=True))
            if s.kind == StepKind.action:
                out.append(_action_line(s, customer=self.customer))
            elif s.kind == StepKind.compensation and s.status == StepStatus.failed:
                out.append(f":warning: undo of {s.name} failed: {s.error}")
        out.extend(_steering_line(s, read=False) for s in self.steering if s.steer_seq is None)
        return out[-25:]

    def done(self) -> list[str]:
        return [
            f"• {_summary(s, customer=self.customer)}"
            + (" (reversed)" if s.status == StepStatus.compensated else "")
            for s in self.steps
            if s.kind == StepKind.action and s.status in (StepStatus.succeeded, StepStatus.compensated)
        ]

    def proposed(self) -> list[str]:
        """What a propose-only agent would have done."""
        return [
            f"• {_summary(s).removeprefix('would run ')}"
            for s in self.steps
            if s.kind == StepKind.action and s.status == StepStatus.proposed
        ]

    def not_for_customers(self) -> list[str]:
        """What a customer asked for that only the team may do (the executor refused it)."""
        return [
            f"• {s.error}"
            for s in self.steps
            if s.kind == StepKind.action
            and s.status == StepStatus.rejected
            and (s.data or {}).get("not_for_customers")
        ]

    def undoable(self) -> bool:
        """Something to undo: a step with an undo, or a handoff (the case's runs did things)."""
        return self.run.status == RunStatus.succeeded and any(
            s.kind == StepKind.action
            and s.status == StepStatus.succeeded
            and (s.undo is not None or _handoff(s))
            for s in self.steps
        )


def _summary(s: Step, *, customer: bool = False) -> str:
    if customer and _handoff(s):
        return "asked the team to take it on"
    return str((s.data or {}).get("summary") or s.name)


def _handoff(s: Step) -> bool:
    return s.name.startswith(HANDOFF)


def run_link(run: Run, label: str) -> str:
    """A link to the run's thread, or the label alone while its thread is not open yet."""
    ts = run.thread_ts or ""
    if not ts.replace(".", "", 1).isdigit():
        return label
    return f"<https://slack.com/archives/{run.channel_id}/p{ts.replace('.', '')}|{label}>"


def _steering_line(steer: Request, *, read: bool) -> str:
    said = steer.text if len(steer.text) <= 200 else steer.text[:199] + "…"
    when = "read" if read else "received, read at the next step"
    return f":speech_balloon: <@{steer.user_id}>: “{escape(said)}” ({when})"


def _action_line(s: Step, *, customer: bool = False) -> str:
    if s.status == StepStatus.succeeded:
        return f":white_check_mark: {_summary(s, customer=customer)}"
    if s.status == StepStatus.compensated:
        return f":leftwards_arrow_with_hook: ~{_summary(s, customer=customer)}~ (reversed)"
    if s.status == StepStatus.intent:
        if _handoff(s):
            who = "the team" if customer else f"*{s.name.removeprefix(HANDOFF)}*"
            return f":arrow_right: handed to {who}, waiting for the outcome…"
        return f":hourglass_flowing_sand: {s.name}…"
    if s.status == StepStatus.proposed:
        return f":memo: proposed (not done): {_summary(s).removeprefix('would run ')}"
    if s.status == StepStatus.rejected:
        return f":warning: rejected a call to {s.name}: {s.error}"
    return f":x: {s.name}: {s.error}"
