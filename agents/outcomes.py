"""What a run's journal says about how it ended: failures left standing, nothing done, an outage."""

from __future__ import annotations

from pydantic import ValidationError

from agents.rollback import Reversal
from storage.models import Step, StepKind, StepStatus


def first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}"


def outage(steps: list[Step]) -> list[Step]:
    """The model turns that failed to reach the model since the last one that answered."""
    failures: list[Step] = []
    for step in steps:
        if step.kind != StepKind.model:
            continue
        if step.status == StepStatus.failed and (step.data or {}).get("transient"):
            failures.append(step)
        elif step.status == StepStatus.succeeded:
            failures = []
    return failures


def counted(step: Step) -> bool:
    """A step that counts against max_steps: an action, or a model turn that answered."""
    if step.kind == StepKind.action:
        return True
    return step.kind == StepKind.model and step.status == StepStatus.succeeded


def did_nothing(steps: list[Step]) -> str | None:
    """Why a run that is ending did nothing, or None when it did something (or only talked).

    Nothing was done when no action ran or was proposed, and either a call was refused
    (rejected arguments, an unknown tool, an action customers may not reach) or the planner
    could not make out the request. An answer with no calls at all is a conversation, and
    succeeds.
    """
    actions = [s for s in steps if s.kind == StepKind.action]
    if any(s.status in (StepStatus.succeeded, StepStatus.proposed, StepStatus.compensated) for s in actions):
        return None
    refused = [s for s in actions if s.status == StepStatus.rejected]
    if refused:
        why = "; ".join(f"{s.name}: {s.error}" for s in refused[-3:])
        return f"Nothing was done: every call was refused ({why})."
    last = next(
        (s for s in reversed(steps) if s.kind == StepKind.model and s.status == StepStatus.succeeded), None
    )
    if last is not None and (last.data or {}).get("understood") is False:
        return "Nothing was done: the request was not understood."
    return None


def unrecovered_failures(steps: list[Step]) -> list[Step]:
    """Failed action steps not followed by a success of the same action."""
    failed: list[Step] = []
    for i, step in enumerate(steps):
        if step.kind != StepKind.action or step.status != StepStatus.failed:
            continue
        later = steps[i + 1 :]
        if not any(s.name == step.name and s.status == StepStatus.succeeded for s in later):
            failed.append(step)
    return failed


def describe(reversals: list[Reversal]) -> str:
    """What a reversal did and could not do; per agent when several agents' steps were reversed."""
    if not reversals:
        return ""
    agents = list(dict.fromkeys(r.agent for r in reversals))
    if len(agents) > 1:
        return "".join(
            f"\n*{agent}*:" + _reversed([r for r in reversals if r.agent == agent]).replace("\n", " ")
            for agent in agents
        )
    return _reversed(reversals)


def _reversed(reversals: list[Reversal]) -> str:
    done = [r.text for r in reversals if r.reversed]
    kept = [r.text for r in reversals if not r.reversed]
    text = ""
    if done:
        text += "\nReversed: " + "; ".join(done) + "."
    if kept:
        text += "\nCould not reverse: " + "; ".join(kept) + "."
    return text
