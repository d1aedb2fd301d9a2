"""The one place a side effect happens: validate, journal the intent, act, journal the result."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from agents import gate, metrics, tracing
from agents.actions.base import Action, ActionContext, ActionResult, Requester
from agents.budget import Budget
from agents.config import AUTONOMY_ORDER
from agents.errors import ActionError
from agents.model import ToolCall
from agents.runtime import Runtime
from storage import approvals, cases, journal, locks
from storage.clock import now
from storage.models import FINAL_STATUSES, ApprovalStatus, Step, StepKind, StepStatus, WaitKind
from storage.runs import Wait

log = logging.getLogger(__name__)


STEERED = "not run: someone wrote in the thread after you decided this; read it and decide again"


class Executor:
    """Executes one run's tool calls. Errors go back to the model as the tool result."""

    def __init__(
        self,
        rt: Runtime,
        *,
        run_id: int,
        agent: str,
        requester: Requester,
        actions: dict[str, Action],
        author_note: str = "",
        budget: Budget | None = None,
    ) -> None:
        self.author_note = author_note
        self.budget = budget
        """The run's budgets, checked at each action's step boundary as at each model turn's."""
        self.rt = rt
        self.run_id = run_id
        self.agent = agent
        self.requester = requester
        self.actions = actions

    def context(self, idempotency_key: str) -> ActionContext:
        return ActionContext(
            run_id=self.run_id,
            agent=self.agent,
            requester=self.requester,
            db=self.rt.db,
            chat=self.rt.chat_for(self.requester.team_id),
            workspace=self.rt.workspace_of(self.requester.team_id),
            idempotency_key=idempotency_key,
            author_note=self.author_note,
        )

    async def call(self, call: ToolCall) -> str:
        """Run one tool call from the model; returns what the model reads back."""
        action = self.actions.get(call.name)
        if action is None and self._withheld(call.name):
            # Journaled as data, so the outcome can tell the customer (bot/presenter.py).
            reason = f"{call.name} is not available to customers"
            return await self._reject(call, reason, data={"summary": reason, "not_for_customers": True})
        if action is None:
            known = ", ".join(sorted(self.actions)) or "none"
            return await self._reject(call, f"there is no tool named {call.name!r}; tools: {known}")
        try:
            raw = json.loads(call.arguments or "{}")
        except ValueError as e:
            return await self._reject(call, f"the arguments are not valid JSON ({e})")
        if not isinstance(raw, dict):
            return await self._reject(call, "the arguments must be a JSON object")
        try:
            args = action.args_model.model_validate(raw)
        except ValidationError as e:
            return await self._reject(call, f"invalid arguments for {call.name}: {_errors(e)}", raw)
        level, reason = self.autonomy(action)
        if level == "propose":
            return await self._propose(call, action, args)
        if level == "approve" and self.rt.dry_run is None:  # a dry run asks nobody (agents.dryrun)
            await self._approved(call, action, args, reason)
        key = f"chatops-{self.run_id}-{call.key}"
        ctx = self.context(key)
        resource = action.resource(args, ctx)
        busy: str | None = None
        steered = False
        async with self.rt.db.write() as session:
            stop, unread = await gate.boundary(
                session=session,
                run_id=self.run_id,
                agent=self.agent,
                worker_id=self.rt.worker_id,
                lease=self.rt.lease,
                team_id=self.requester.team_id,
                budget=self.budget,
            )
            # A reply in the thread came in after the model decided this call: the call waits for
            # the model to read it (at the run's next model turn) and decide again.
            steered = stop is None and unread > 0
            if steered:  # the lease was renewed by gate.boundary, in this transaction
                t = now()
                await journal.add_step(
                    session=session,
                    run_id=self.run_id,
                    kind=StepKind.action,
                    name=action.name,
                    tool_call_id=call.id,
                    call_key=call.key,
                    arguments=args.model_dump(mode="json"),
                    status=StepStatus.rejected,
                    error=STEERED,
                    output=f"error: {STEERED}",
                    started_at=t,
                    finished_at=t,
                )
            elif stop is None and resource:
                busy = await self._lock(session, resource)
            if stop is None and busy is None and not steered:  # the lease was renewed by gate.stop
                step = await journal.add_step(
                    session=session,
                    run_id=self.run_id,
                    kind=StepKind.action,
                    name=action.name,
                    tool_call_id=call.id,
                    call_key=call.key,
                    arguments=args.model_dump(mode="json"),
                    reversible=action.reversible,
                    risk=action.risk,
                    resource=resource,
                    idempotency_key=key,
                )
        if stop is not None:
            raise stop
        if busy is not None:
            raise gate.ResourceBusy(busy)  # the run already waits (released above)
        await self.rt.reporter.run_progressed(self.run_id)
        if steered:
            return f"error: {STEERED}"
        await self.rt.reporter.step_started(self.run_id, action=action.name)
        return await self.perform(step, action, args)

    async def perform(self, step: Step, action: Action, args: BaseModel) -> str:
        """Run the action of a journaled intent and journal its result."""
        assert step.id is not None and step.idempotency_key is not None
        if self.rt.dry_run is not None:
            return await self._simulate(step, action, args)
        ctx = self.context(step.idempotency_key)
        clean = self.rt.redactor
        status, reply = StepStatus.failed, ""
        fields: dict[str, Any] = {}
        started = time.monotonic()
        traced = tracing.span(
            f"execute_tool {action.name}",
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name=action.name,
            gen_ai__tool__call__id=step.call_key,
            chatops__step__seq=step.seq,
            chatops__action__risk=action.risk,
            chatops__action__reversible=action.reversible,
        )
        with traced as span:
            try:
                result = await self._run(action, ctx, args)
            except gate.AwaitingHandoff as waiting:
                span.waiting(chatops__handoff__run_id=waiting.child_id)
                raise  # the run waits for the other agent: the step stays an intent until then
            except gate.Interrupted:
                span.waiting()
                raise  # the run waits: the step stays an intent until then
            except ActionError as e:
                fields = {"error": clean.clean(str(e))}
                reply = f"error: {fields['error']}"
                span.failed(fields["error"], kind=type(e).__name__)
            except Exception as e:  # broad on purpose: a bug in one action must not kill the run
                log.exception("action %s failed unexpectedly (run #%s)", action.name, self.run_id)
                fields = {"error": f"internal error in {action.name}: {type(e).__name__}"}
                reply = f"error: internal error in {action.name}"
                span.failed(fields["error"], kind=type(e).__name__)
            else:
                # What the model reads and people see is cleaned of secrets here, before the
                # journal keeps it; the undo data stays as it is (only the compensation reads it).
                status = StepStatus.succeeded
                fields = {
                    "output": clean.clean(result.output),
                    "undo": result.undo,
                    "data": clean.clean_data({"summary": result.summary, **result.data}),
                    "reversible": action.reversible and (result.undo is not None or action.read_only),
                }
                reply = fields["output"]
                handed_to = result.data.get("child_run_id")
                span.set(chatops__outcome="succeeded", chatops__handoff__run_id=handed_to)
        metrics.STEP_SECONDS.labels("action").observe(time.monotonic() - started)
        if status is StepStatus.failed:
            fields["output"] = reply
        async with self.rt.db.write() as session:
            await journal.finish_step(session=session, step_id=step.id, status=status, **fields)
        await self.rt.reporter.run_progressed(self.run_id)
        return reply

    async def _simulate(self, step: Step, action: Action, args: BaseModel) -> str:
        """A dry run (agents.dryrun): journal what the script answers for this call (a recorded
        result, or "not run (dry run)") as its result. Nothing is run, nothing needs undoing."""
        assert self.rt.dry_run is not None and step.id is not None
        answer = self.rt.dry_run.answer(self.run_id, action.name, args.model_dump(mode="json"))
        level, _ = self.autonomy(action)
        data: dict[str, Any] = {"summary": answer.summary, "dry_run": answer.source}
        if level == "approve":
            data["needs_approval"] = True  # it would have waited for a person's Approve
        failed = {"error": answer.output} if answer.failed else {}
        async with self.rt.db.write() as session:
            await journal.finish_step(
                session=session,
                step_id=step.id,
                status=StepStatus.failed if answer.failed else StepStatus.succeeded,
                output=answer.output,
                data=data,
                reversible=True,
                **failed,
            )
        await self.rt.reporter.run_progressed(self.run_id)
        return answer.output

    async def _run(self, action: Action, ctx: ActionContext, args: BaseModel) -> ActionResult:
        """The action's result. A handoff whose run is still going makes this run wait for it
        (AwaitingHandoff): decided in a transaction that locks the other run's row, so its end
        either comes before (then its outcome is read now) or requeues this run after."""
        while True:
            try:
                return await action.run(ctx, args)
            except gate.AwaitingHandoff as waiting:
                async with self.rt.db.write() as session:
                    child = await cases.lock_run(session=session, run_id=waiting.child_id)
                    if child is not None and child.status in FINAL_STATUSES:
                        continue  # it just ended: read its outcome
                    await gate.wait(
                        session=session,
                        run_id=self.run_id,
                        worker_id=self.rt.worker_id,
                        wait=Wait(WaitKind.handoff, str(waiting.child_id), str(waiting)),
                    )
                await self.rt.reporter.run_started(waiting.child_id)  # its thread, linked to this one
                if waiting.approval_id is not None:
                    await self.rt.reporter.approval_requested(waiting.approval_id)
                raise

    async def _lock(self, session: AsyncSession, resource: str) -> str | None:
        """Hold `resource` for this run. When another run holds it, this run starts waiting
        in the same transaction (so the holder's release cannot slip in between) and the
        reason is returned. A deadlock stops the run (Denied)."""
        holder = await locks.acquire(session=session, resource=resource, run_id=self.run_id)
        if holder is None:
            return None
        if await locks.would_deadlock(session=session, run_id=self.run_id, holder=holder):
            raise gate.Deadlock(resource, holder)
        reason = locks.wait_reason(resource, holder)
        await gate.wait(
            session=session,
            run_id=self.run_id,
            worker_id=self.rt.worker_id,
            wait=Wait(WaitKind.resource, resource, reason),
        )
        return reason

    def _withheld(self, name: str) -> bool:
        """True for an action the agent has but this run was not given: one a customer may
        not reach (`Registry.for_agent`), which must not be reported as nonexistent."""
        agent = self.rt.config.agent(self.agent)
        return agent is not None and name in self.rt.registry.for_agent(agent)

    def autonomy(self, action: Action) -> tuple[str, str]:
        """How freely this agent may run this action, and why: (auto|approve|propose, reason)."""
        agent = self.rt.config.agent(self.agent)
        levels = [
            (agent.autonomy if agent else "auto", f"agent {self.agent} is set to {{}}"),
            ((agent.action_autonomy.get(action.name) if agent else None), f"{action.name} is set to {{}}"),
            (action.autonomy, f"{action.name} is set to {{}}"),
        ]
        level, why = max(((lv, w) for lv, w in levels if lv), key=lambda x: AUTONOMY_ORDER[x[0]])
        if action.read_only:
            return "auto", "read-only"
        if level == "auto" and action.risk == "high":
            return "approve", "its risk is high"
        if level == "auto" and not action.reversible:
            return "approve", "it cannot be undone"
        return level, why.format(level)

    async def _approved(self, call: ToolCall, action: Action, args: BaseModel, reason: str) -> None:
        """Return if a human approved this call; otherwise ask (AwaitingApproval) or stop (Denied)."""
        stop: gate.Interrupted | None = None
        async with self.rt.db.write() as session:
            approval = await approvals.find_approval(
                session=session, run_id=self.run_id, tool_call_id=call.key
            )
            if approval is None:
                stop = await gate.stop(
                    session=session,
                    run_id=self.run_id,
                    agent=self.agent,
                    worker_id=self.rt.worker_id,
                    lease=self.rt.lease,
                    team_id=self.requester.team_id,
                    budget=self.budget,
                )
            if approval is None and stop is None:
                hours = self.rt.config.control.approval_timeout_hours
                # Who may decide, and how many must, as the configuration says now: kept with
                # the approval, so its message and its decision agree (bot.controls.decide).
                policy = self.rt.config.approval_policy(action.name)
                approval = await approvals.request_approval(
                    session=session,
                    run_id=self.run_id,
                    tool_call_id=call.key,
                    action=action.name,
                    arguments=args.model_dump(mode="json"),
                    reason=reason,
                    channel_id=self.requester.channel_id,
                    expires_at=now() + timedelta(hours=hours),
                    needed=policy.needed,
                    approvers=list(policy.approvers),
                    self_approval=policy.self_approval,
                )
            if approval is not None and approval.status == ApprovalStatus.pending:
                assert approval.id is not None
                stop = gate.AwaitingApproval(approval.id, action.name)
                await gate.wait(
                    session=session,
                    run_id=self.run_id,
                    worker_id=self.rt.worker_id,
                    wait=Wait(WaitKind.approval, str(approval.id), str(stop)),
                )
        if stop is not None:
            raise stop
        assert approval is not None and approval.id is not None
        if approval.status == ApprovalStatus.approved:
            return
        why = (
            f"denied by <@{approval.decided_by}>"
            if approval.status == ApprovalStatus.denied
            else "nobody approved it in time"
        )
        await self._record(
            call,
            action.name,
            StepStatus.rejected,
            arguments=args.model_dump(mode="json"),
            error=why,
            output=f"error: not approved: {why}",
        )
        raise gate.Denied(action.name, why)

    async def _propose(self, call: ToolCall, action: Action, args: BaseModel) -> str:
        """Autonomy "propose": journal what would be done, do nothing."""
        arguments = args.model_dump(mode="json")
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        reply = (
            f"not executed: this agent only proposes actions. Proposed: {action.name}({shown}). "
            "Tell the user what you would do."
        )
        await self._record(
            call,
            action.name,
            StepStatus.proposed,
            arguments=arguments,
            output=reply,
            data={"summary": f"would run {action.name}({shown})"},
        )
        await self.rt.reporter.run_progressed(self.run_id)
        return reply

    async def _record(self, call: ToolCall, name: str, status: StepStatus, **fields: Any) -> None:
        """Journal a call that did not run (rejected, refused, or only proposed)."""
        async with self.rt.db.write() as session:
            await journal.record_step(
                session=session,
                run_id=self.run_id,
                worker_id=self.rt.worker_id,
                lease=self.rt.lease,
                kind=StepKind.action,
                name=name[:128],
                status=status,
                tool_call_id=call.id,
                call_key=call.key,
                **fields,
            )

    async def _reject(
        self,
        call: ToolCall,
        reason: str,
        raw: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        """Journal a call that never ran (unknown tool, bad arguments) and tell the model why."""
        reply = f"error: {reason}"
        await self._record(
            call,
            call.name,
            StepStatus.rejected,
            arguments=raw if raw is not None else {"_raw": (call.arguments or "")[:2000]},
            error=reason,
            output=reply,
            data=data,
        )
        return reply


def _errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
