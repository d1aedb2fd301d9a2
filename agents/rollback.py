"""Compensation: reverse a run's completed steps, newest first, each one journaled."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents.actions.base import ActionContext, Requester
from agents.errors import ActionError, LeftInPlace
from agents.runtime import Runtime
from storage import journal
from storage.models import Step, StepKind, StepStatus

log = logging.getLogger(__name__)


@dataclass
class Reversal:
    step: int
    """The seq of the step this is about."""
    action: str
    reversed: bool
    text: str
    """What was done, or why it could not be."""


async def reverse_run(rt: Runtime, *, run_id: int, agent: str, requester: Requester) -> list[Reversal]:
    """Compensate every completed action step of the run, newest first.

    Idempotent: a step already compensated is skipped, so a resumed or repeated
    reversal never reverses anything twice. Must be called by the lease holder.
    """
    async with rt.db.read() as session:
        steps = await journal.steps_of(session=session, run_id=run_id)
    interrupted = [s for s in steps if s.kind == StepKind.compensation and s.status == StepStatus.intent]
    if interrupted:  # a crash mid-compensation: it runs again below (compensations are idempotent)
        async with rt.db.write() as session:
            for s in interrupted:
                assert s.id is not None
                await journal.finish_step(
                    session=session,
                    step_id=s.id,
                    status=StepStatus.failed,
                    error="interrupted by a restart; retried",
                )
    done: list[Reversal] = []
    for step in reversed(steps):
        if step.kind != StepKind.action or step.status != StepStatus.succeeded:
            continue
        action = rt.registry.get(step.name)
        if step.undo is None or action is None:
            if step.reversible and action is not None:
                continue  # read-only: nothing to reverse
            why = "it cannot be reversed" if action else "its action no longer exists"
            done.append(Reversal(step.seq, step.name, False, f"{_summary(step)}: {why}"))
            continue
        done.append(await _compensate(rt, step, agent=agent, requester=requester))
    return done


async def _compensate(rt: Runtime, step: Step, *, agent: str, requester: Requester) -> Reversal:
    action = rt.registry.get(step.name)
    assert action is not None and step.undo is not None and step.id is not None
    async with rt.db.write() as session:
        comp = await journal.begin_step(
            session=session,
            run_id=step.run_id,
            worker_id=rt.worker_id,
            lease=rt.lease,
            kind=StepKind.compensation,
            name=step.name,
            compensates=step.id,
            arguments=step.undo,
            idempotency_key=f"{step.idempotency_key}-undo",
        )
    assert comp.id is not None
    ctx = ActionContext(
        run_id=step.run_id,
        agent=agent,
        requester=requester,
        db=rt.db,
        chat=rt.chat,
        idempotency_key=f"{step.idempotency_key}-undo",
    )
    try:
        text = await action.compensate(ctx, step.undo)
    except LeftInPlace as e:
        ok, text = False, f"{_summary(step)}: {e}"
    except ActionError as e:
        ok, text = False, f"{_summary(step)}: the undo failed: {e}"
    except Exception as e:  # broad on purpose: one failed compensation must not stop the others
        log.exception("compensation of step %s (%s) failed", step.seq, step.name)
        ok, text = False, f"{_summary(step)}: the undo failed (internal error: {type(e).__name__})"
    else:
        ok = True
    text = rt.redactor.clean(text)
    async with rt.db.write() as session:
        await journal.finish_step(
            session=session,
            step_id=comp.id,
            status=StepStatus.succeeded if ok else StepStatus.failed,
            output=text,
            **({} if ok else {"error": text}),
        )
        if ok:
            await journal.finish_step(session=session, step_id=step.id, status=StepStatus.compensated)
    await rt.reporter.run_progressed(step.run_id)
    return Reversal(step.seq, step.name, ok, text)


def _summary(step: Step) -> str:
    return str((step.data or {}).get("summary") or step.name)
