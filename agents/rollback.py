"""Compensation: reverse completed steps, newest first, each one journaled.

What is reversed is a run and the runs it handed work to (its part of the case): for a case's
first run, the whole case, across agents. The steps are reversed newest first whatever run
made them (step ids are never reused, so their order is the order they were written in); each
compensation is journaled in the run doing the reversal, naming the step it reverses, and the
compensation runs as that step's own run (its context: the step's run, agent and requester).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents import tracing
from agents.actions.base import ActionContext, Requester
from agents.errors import ActionError, LeftInPlace
from agents.runtime import Runtime
from storage import cases, journal, requests, runs
from storage.models import Run, Step, StepKind, StepStatus

log = logging.getLogger(__name__)


@dataclass
class Reversal:
    step: int
    """The seq of the step this is about, in its run."""
    action: str
    reversed: bool
    text: str
    """What was done, or why it could not be."""
    run_id: int = 0
    """The run whose step it is."""
    agent: str = ""


async def reverse(rt: Runtime, *, run_id: int) -> list[Reversal]:
    """Compensate every completed action step of the run and of the runs it handed work to,
    newest first, journaling each compensation in `run_id`.

    Idempotent: a step already compensated is skipped, so a resumed or repeated reversal never
    reverses anything twice. Must be called by the lease holder of `run_id`; the other runs
    must not be running (they ended, or wait).
    """
    async with rt.db.read() as session:
        run = await runs.get_run(session=session, run_id=run_id)
        assert run is not None
        members = await cases.subtree(session=session, run=run)
        steps = await cases.steps_of_runs(session=session, run_ids=[m.id for m in members if m.id])
        asked = {m.id: await requests.get_request(session=session, request_id=m.request_id) for m in members}
    by_id = {m.id: m for m in members}
    interrupted = [
        s
        for s in steps
        if s.kind == StepKind.compensation and s.status == StepStatus.intent and s.run_id == run_id
    ]
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
        owner = by_id[step.run_id]
        action = rt.registry.get(step.name)
        if step.undo is None or action is None:
            if step.reversible and action is not None:
                continue  # read-only, or a handoff (its run's steps are reversed here): nothing to reverse
            why = "it cannot be reversed" if action else "its action no longer exists"
            done.append(
                Reversal(step.seq, step.name, False, f"{_summary(step)}: {why}", step.run_id, owner.agent)
            )
            continue
        request = asked.get(step.run_id)
        requester = Requester(
            owner.team_id, owner.channel_id, request.user_id if request else "", owner.thread_ts
        )
        done.append(await _compensate(rt, step, by=run_id, owner=owner, requester=requester))
    return done


async def _compensate(rt: Runtime, step: Step, *, by: int, owner: Run, requester: Requester) -> Reversal:
    action = rt.registry.get(step.name)
    assert action is not None and step.undo is not None and step.id is not None
    async with rt.db.write() as session:
        comp = await journal.begin_step(
            session=session,
            run_id=by,
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
        run_id=step.run_id,  # the compensation acts as the step's own run (what it may remove)
        agent=owner.agent,
        requester=requester,
        db=rt.db,
        chat=rt.chat_for(requester.team_id),
        workspace=rt.workspace_of(requester.team_id),
        idempotency_key=f"{step.idempotency_key}-undo",
    )
    with tracing.span(
        f"compensate {step.name}",
        chatops__compensates__run_id=step.run_id,
        chatops__compensates__step_seq=step.seq,
        gen_ai__tool__name=step.name,
        chatops__step__seq=comp.seq,
        chatops__action__risk=action.risk,
    ) as span:
        try:
            text = await action.compensate(ctx, step.undo)
        except LeftInPlace as e:
            ok, text = False, f"{_summary(step)}: {e}"
            span.set(chatops__outcome="left_in_place")
        except ActionError as e:
            ok, text = False, f"{_summary(step)}: the undo failed: {e}"
            span.failed(text, kind=type(e).__name__)
        except Exception as e:  # broad on purpose: one failed compensation must not stop the others
            log.exception("compensation of step %s (%s) failed", step.seq, step.name)
            ok, text = False, f"{_summary(step)}: the undo failed (internal error: {type(e).__name__})"
            span.failed(text, kind=type(e).__name__)
        else:
            ok = True
            span.set(chatops__outcome="undone")
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
    return Reversal(step.seq, step.name, ok, text, step.run_id, owner.agent)


def _summary(step: Step) -> str:
    return str((step.data or {}).get("summary") or step.name)
