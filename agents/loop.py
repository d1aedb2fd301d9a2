"""The agent loop for one run: model turn -> tool calls -> journal, until an answer.

The conversation is rebuilt from the journal every time a worker picks the run
up, so a run resumes exactly where it stopped: after a crash, a pause, or an
approval.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from agents import gate, logcontext, metrics
from agents.actions.base import Action, Requester
from agents.errors import ModelError
from agents.executor import Executor
from agents.model import Planner, ToolCall, Turn
from agents.rollback import Reversal, reverse_run
from agents.runtime import Runtime
from agents.templating import render_text
from storage import journal, requests, runs
from storage.clock import now
from storage.models import Request, Run, RunStatus, Step, StepKind, StepStatus, WaitKind
from storage.runs import Wait

log = logging.getLogger(__name__)

STOPPED_FOR_HUMAN = "needs a human"
OFFLINE_NOTE = "\n_(written by the offline planner)_"
MODEL_RETRY_FIRST = 5.0  # seconds before the first retry of an unreachable model; doubled each time
MODEL_RETRY_MAX = 60.0


class RunLoop:
    def __init__(self, rt: Runtime, run_id: int) -> None:
        self.rt = rt
        self.run_id = run_id

    async def execute(self) -> None:
        """Work the run until it finishes or must wait. Raises LeaseLost if another worker took it."""
        async with self.rt.db.read() as session:
            run = await runs.get_run(session=session, run_id=self.run_id)
            request = await requests.get_request(session=session, request_id=run.request_id) if run else None
            steps = await journal.steps_of(session=session, run_id=self.run_id)
        if run is None or request is None or run.worker_id != self.rt.worker_id:
            return
        self.run, self.request = run, request
        if run.crashes >= self.rt.max_crashes and not run.undone_by:
            await self._poisoned(run)
            return
        logcontext.bind_run(agent=run.agent, channel=run.channel_id, thread=run.thread_ts)
        await self.rt.reporter.run_started(self.run_id)
        async with self.rt.db.read() as session:  # the thread may have just been created
            run = await runs.get_run(session=session, run_id=self.run_id) or run
        self.run = run
        self.requester = Requester(request.team_id, request.channel_id, request.user_id, run.thread_ts)
        agent = self.rt.config.agent(run.agent)
        if agent is None:
            await self._finish(RunStatus.failed, error=f"agent {run.agent!r} is no longer configured")
            return
        self.agent = agent
        customer = await self._is_customer(request)
        await self.rt.registry.ready(agent)  # its MCP servers' tools, when the process just started
        self.actions: dict[str, Action] = self.rt.registry.for_agent(agent, customer=customer)
        planner = self.rt.planner_for(agent)
        self.executor = Executor(
            self.rt,
            run_id=self.run_id,
            agent=agent.name,
            requester=self.requester,
            actions=self.actions,
            author_note=OFFLINE_NOTE if planner.offline else "",
        )
        if run.undone_by:
            await self._undo(run.undone_by)
            return
        if run.planner != planner.label:
            async with self.rt.db.write() as session:
                await runs.set_planner(session=session, run_id=self.run_id, planner=planner.label)
        try:
            await self._work(planner, steps)
        except gate.UndoRequested as stop:
            await self._undo(stop.by_user)
        except (gate.Paused, gate.ResourceBusy):
            await self.rt.reporter.run_progressed(self.run_id)  # it already waits
        except gate.AwaitingApproval as stop:
            await self.rt.reporter.run_progressed(self.run_id)  # it already waits
            await self.rt.reporter.approval_requested(stop.approval_id)
        except (gate.Denied, gate.Deadlock) as stop:
            await self._finish(RunStatus.failed, error=str(stop))

    async def _work(self, planner: Planner, steps: list[Step]) -> None:
        messages = self._conversation(steps)
        if not await self._reconcile(steps, messages):
            return
        count = sum(1 for s in steps if _counted(s))
        for call in self._pending_calls(steps):
            messages.append(await self._tool(call))
            count += 1
        tools = [a.tool() for a in self.actions.values()]
        while True:
            if count >= self.agent.max_steps:
                await self._finish(
                    RunStatus.failed,
                    error=f"stopped after {self.agent.max_steps} steps (max_steps) without finishing",
                )
                return
            turn = await self._model_turn(planner, messages, tools)
            count += 1
            if turn is None:
                return
            messages.append(turn.message())
            for index, call in enumerate(turn.tool_calls):
                call.turn, call.index = self.last_turn, index
            if not turn.tool_calls:
                await self._conclude(turn.content or "")
                return
            for call in turn.tool_calls:
                if count >= self.agent.max_steps:
                    break  # the next iteration fails the run
                messages.append(await self._tool(call))
                count += 1

    async def _tool(self, call: ToolCall) -> dict[str, Any]:
        reply = await self.executor.call(call)
        return {"role": "tool", "tool_call_id": call.id, "content": reply}

    async def _model_turn(
        self, planner: Planner, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> Turn | None:
        async with self.rt.db.write() as session:
            stop = await gate.stop(
                session=session,
                run_id=self.run_id,
                agent=self.agent.name,
                worker_id=self.rt.worker_id,
                lease=self.rt.lease,
            )
            if stop is None:  # the lease was renewed by gate.stop, in this transaction
                step = await journal.add_step(
                    session=session,
                    run_id=self.run_id,
                    kind=StepKind.model,
                    name=planner.label,
                )
        if stop is not None:
            raise stop
        assert step.id is not None
        self.last_turn = step.seq
        started = time.monotonic()
        try:
            turn = await planner.next_turn(messages, tools)
        except ModelError as e:
            metrics.MODEL_SECONDS.labels(planner.label).observe(time.monotonic() - started)
            async with self.rt.db.write() as session:
                await journal.finish_step(
                    session=session,
                    step_id=step.id,
                    status=StepStatus.failed,
                    error=str(e),
                    data={"transient": e.transient},
                )
            if e.transient:
                await self._wait_for_model(e)
            else:
                await self._finish(RunStatus.failed, error=f"the model could not answer: {e}")
            return None
        elapsed = time.monotonic() - started
        metrics.MODEL_SECONDS.labels(planner.label).observe(elapsed)
        metrics.STEP_SECONDS.labels("model").observe(elapsed)
        metrics.TOKENS.labels(self.agent.name, "prompt").inc(turn.prompt_tokens)
        metrics.TOKENS.labels(self.agent.name, "completion").inc(turn.completion_tokens)
        async with self.rt.db.write() as session:
            await journal.finish_step(
                session=session,
                step_id=step.id,
                status=StepStatus.succeeded,
                output=turn.content,
                data={"message": turn.message(), **({} if turn.understood else {"understood": False})},
                prompt_tokens=turn.prompt_tokens,
                completion_tokens=turn.completion_tokens,
            )
            await runs.add_usage(
                session=session,
                run_id=self.run_id,
                prompt_tokens=turn.prompt_tokens,
                completion_tokens=turn.completion_tokens,
            )
        await self.rt.reporter.run_progressed(self.run_id)
        return turn

    async def _wait_for_model(self, error: ModelError) -> None:
        """The model server is unreachable (after the client's own retries): wait it out,
        trying again with backoff, for `model_outage`; then fail (and roll back per policy).

        Everything is derived from the journal: the outage began with the first of the
        failed model turns since the last one that answered.
        """
        async with self.rt.db.read() as session:
            steps = await journal.steps_of(session=session, run_id=self.run_id)
        failures = _outage(steps)
        since = failures[0].started_at
        lasted = now() - since
        if lasted >= self.rt.model_outage:
            minutes = self.rt.model_outage.total_seconds() / 60
            await self._finish(
                RunStatus.failed,
                error=f"the model could not be reached for {minutes:g} minute{'s' * (minutes != 1)} "
                f"({len(failures)} tries): {error}",
            )
            return
        delay = min(MODEL_RETRY_FIRST * 2 ** (len(failures) - 1), MODEL_RETRY_MAX)
        wake = now() + timedelta(seconds=delay)
        reason = (
            f"the model cannot be reached since {since:%H:%M:%S} UTC ({error}); "
            f"trying again at {wake:%H:%M:%S} UTC"
        )
        await self._wait(Wait(WaitKind.model, None, reason, wake_at=wake))

    async def _conclude(self, answer: str) -> None:
        """The model answered without tool calls: the run is done, well or not."""
        async with self.rt.db.read() as session:
            steps = await journal.steps_of(session=session, run_id=self.run_id)
        failed = _unrecovered_failures(steps)
        if failed:
            names = ", ".join(f"{s.name} (step {s.seq}): {s.error}" for s in failed)
            await self._finish(RunStatus.failed, outcome=answer, error=f"an action failed: {names}")
            return
        nothing = _did_nothing(steps)
        if nothing is not None:
            await self._finish(RunStatus.no_action, outcome=answer, error=nothing)
        else:
            await self._finish(RunStatus.succeeded, outcome=answer)

    async def _reconcile(self, steps: list[Step], messages: list[dict[str, Any]]) -> bool:
        """Settle steps a crash left as intents. False if the run must stop for a human."""
        for step in steps:
            if step.status != StepStatus.intent or step.id is None:
                continue
            if step.kind == StepKind.model:  # no side effect: ask the model again
                async with self.rt.db.write() as session:
                    await journal.finish_step(
                        session=session,
                        step_id=step.id,
                        status=StepStatus.failed,
                        error="interrupted before the model answered; asked again",
                    )
                continue
            if step.kind != StepKind.action:
                continue
            action = self.actions.get(step.name)
            if action is not None and action.idempotent:
                async with self.rt.db.write() as session:  # a pause also holds a repeat
                    stop = await gate.stop(
                        session=session,
                        run_id=self.run_id,
                        agent=self.agent.name,
                        worker_id=self.rt.worker_id,
                        lease=self.rt.lease,
                    )
                if stop is not None:
                    raise stop
                reply = await self._repeat(step, action)
                messages.append({"role": "tool", "tool_call_id": step.tool_call_id, "content": reply})
                continue
            await self._wait(
                Wait(
                    WaitKind.human,
                    str(step.seq),
                    f"{STOPPED_FOR_HUMAN}: step {step.seq} ({step.name}) was interrupted and its result "
                    "is unknown; it is not safe to run it again. Check its effect, then undo or "
                    "resume this run.",
                )
            )
            return False
        return True

    async def _is_customer(self, request: Request) -> bool:
        """Whether this run reaches only what customers may. A requester Slack could not verify at
        intake is asked about again now; one still unverifiable stays limited (and stays
        "unverified", never stored as a customer because Slack was down)."""
        if request.requester_role == "unverified" and self.rt.roles is not None:
            role = await self.rt.roles.verify(team_id=request.team_id, user_id=request.user_id)
            if role is not None:
                assert request.id is not None
                async with self.rt.db.write() as session:
                    await requests.set_role(session=session, request_id=request.id, role=role)
                request.requester_role = role
        return request.requester_role != "member"

    async def _repeat(self, step: Step, action: Action) -> str:
        """Run an idempotent action again whose result a crash hid; returns what the model reads."""
        try:
            args = action.args_model.model_validate(step.arguments or {})
        except ValidationError as e:
            # Journaled under older rules, its arguments no longer pass (a stricter
            # configuration): it is not repeated, and the model reads why.
            reply = f"error: not repeated after a restart: its arguments are no longer valid: {_first(e)}"
            assert step.id is not None
            async with self.rt.db.write() as session:
                await journal.finish_step(
                    session=session, step_id=step.id, status=StepStatus.failed, error=reply, output=reply
                )
            return reply
        return await self.executor.perform(step, action, args)

    def _conversation(self, steps: list[Step]) -> list[dict[str, Any]]:
        """The chat so far, rebuilt from the journal."""
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": self.request.text},
        ]
        for step in steps:
            if step.kind == StepKind.model and step.status == StepStatus.succeeded and step.data:
                messages.append(step.data["message"])
            elif step.kind == StepKind.action and step.status != StepStatus.intent:
                messages.append(
                    {"role": "tool", "tool_call_id": step.tool_call_id, "content": step.output or ""}
                )
        return messages

    def _pending_calls(self, steps: list[Step]) -> list[ToolCall]:
        """Tool calls of the last model turn that have no step yet (stopped in between)."""
        last = next(
            (s for s in reversed(steps) if s.kind == StepKind.model and s.status == StepStatus.succeeded),
            None,
        )
        if last is None or not last.data:
            return []
        later = [s for s in steps if s.kind == StepKind.action and s.seq > last.seq]
        done_keys = {s.call_key for s in later if s.call_key}
        done_ids = {s.tool_call_id for s in later if not s.call_key}  # journaled before call keys
        calls = Turn.from_message(last.data["message"]).tool_calls
        for index, call in enumerate(calls):
            call.turn, call.index = last.seq, index
        return [c for c in calls if c.key not in done_keys and c.id not in done_ids]

    def _system_prompt(self) -> str:
        r = self.request
        context = {
            "agent": self.agent,
            "request": r,
            "user": r.user_id,
            "channel": r.channel_id,
            "now": now().isoformat(timespec="seconds"),
        }
        # What the instructions read from the environment is a secret the model must not see.
        instructions = self.rt.redactor.clean(render_text(self.agent.instructions, context))
        limited = "help them, but only with your tools"
        who = {
            "member": "a member of the team",
            "customer": f"a customer (a guest or a user of another workspace): {limited}",
            "unverified": f"someone Slack could not verify right now: {limited}",
        }.get(r.requester_role, "a member of the team")
        return (
            f"{instructions}\n\n"
            f"Requester: <@{r.user_id}> (Slack user id {r.user_id}), {who}. "
            f"Channel: <#{r.channel_id}>. Time (UTC): {context['now']}. "
            f"Run: #{self.run_id}."
        )

    async def _poisoned(self, run: Run) -> None:
        """The run crashed its worker `max_crashes` times: fail it (rolled back per its agent's
        policy) rather than resume it forever. Kept small on purpose: whatever crashed the
        worker may be in the rest of the loop."""
        self.agent = self.rt.config.agent(run.agent)  # type: ignore[assignment]
        self.requester = Requester(
            self.request.team_id, self.request.channel_id, self.request.user_id, run.thread_ts
        )
        log.error("run #%s crashed its worker %d times; failing it", self.run_id, run.crashes)
        await self._finish(
            RunStatus.failed,
            error=(
                f"this run crashed its worker {run.crashes} times (a bug, or a step that kills the "
                "process), so it was stopped instead of tried again"
            ),
        )

    async def _wait(self, wait: Wait) -> None:
        async with self.rt.db.write() as session:
            await gate.wait(session=session, run_id=self.run_id, worker_id=self.rt.worker_id, wait=wait)
        await self.rt.reporter.run_progressed(self.run_id)

    async def _finish(
        self, status: RunStatus, *, outcome: str | None = None, error: str | None = None
    ) -> None:
        """Give the run its final status, rolling back a failure when the policy says so."""
        if status == RunStatus.failed and getattr(self, "agent", None) is not None:
            if self.agent.on_failure == "rollback":
                reversals = await reverse_run(
                    self.rt, run_id=self.run_id, agent=self.agent.name, requester=self.requester
                )
                if any(r.reversed for r in reversals):
                    status = RunStatus.rolled_back
                error = (error or "") + _describe(reversals)
        async with self.rt.db.write() as session:
            await runs.release(
                session=session,
                run_id=self.run_id,
                worker_id=self.rt.worker_id,
                status=status,
                outcome=outcome,
                error=error,
            )
        metrics.RUNS_FINISHED.labels(self.run.agent, status).inc()
        if status == RunStatus.rolled_back:
            metrics.ROLLBACKS.labels(self.run.agent).inc()
        await self.rt.reporter.run_finished(self.run_id)

    async def _undo(self, by_user: str) -> None:
        reversals = await reverse_run(
            self.rt, run_id=self.run_id, agent=self.agent.name, requester=self.requester
        )
        async with self.rt.db.write() as session:
            await runs.release(
                session=session,
                run_id=self.run_id,
                worker_id=self.rt.worker_id,
                status=RunStatus.rolled_back,
                outcome=(self.run.outcome or "").strip(),
                error=f"Undone at the request of <@{by_user}>.{_describe(reversals)}",
            )
        metrics.RUNS_FINISHED.labels(self.run.agent, RunStatus.rolled_back).inc()
        metrics.UNDOS.labels(self.run.agent).inc()
        await self.rt.reporter.run_finished(self.run_id)


def _first(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}"


def _outage(steps: list[Step]) -> list[Step]:
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


def _counted(step: Step) -> bool:
    """A step that counts against max_steps: an action, or a model turn that answered."""
    if step.kind == StepKind.action:
        return True
    return step.kind == StepKind.model and step.status == StepStatus.succeeded


def _did_nothing(steps: list[Step]) -> str | None:
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


def _unrecovered_failures(steps: list[Step]) -> list[Step]:
    """Failed action steps not followed by a success of the same action."""
    failed: list[Step] = []
    for i, step in enumerate(steps):
        if step.kind != StepKind.action or step.status != StepStatus.failed:
            continue
        later = steps[i + 1 :]
        if not any(s.name == step.name and s.status == StepStatus.succeeded for s in later):
            failed.append(step)
    return failed


def _describe(reversals: list[Reversal]) -> str:
    if not reversals:
        return ""
    done = [r.text for r in reversals if r.reversed]
    kept = [r.text for r in reversals if not r.reversed]
    text = ""
    if done:
        text += "\nReversed: " + "; ".join(done) + "."
    if kept:
        text += "\nCould not reverse: " + "; ".join(kept) + "."
    return text
