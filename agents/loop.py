"""The agent loop for one run: model turn -> tool calls -> journal, until an answer.

The conversation is rebuilt from the journal every time a worker picks the run up
(agents.conversation), so a run resumes exactly where it stopped: after a crash, a pause,
or an approval. A reply in the thread while the run works steers it: the run reads it at its
next model turn (storage.steering), and does not end while one is unread.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from agents import conversation, gate, logcontext, metrics, tracing
from agents.actions.base import Action, Requester
from agents.actions.handoff import HANDOFF_APPROVAL
from agents.budget import Budget
from agents.conversation import EarlierRun, TurnContext
from agents.errors import ModelError
from agents.executor import Executor
from agents.model import Planner, ToolCall, Turn
from agents.outcomes import counted, describe, did_nothing, first_error, outage, unrecovered_failures
from agents.rollback import reverse
from agents.runtime import Runtime
from storage import approvals, cases, journal, requests, runs, steering, threads
from storage.clock import now
from storage.models import ApprovalStatus, Request, Run, RunStatus, Step, StepKind, StepStatus, WaitKind
from storage.runs import Wait
from storage.threads import PastRun

log = logging.getLogger(__name__)

STOPPED_FOR_HUMAN = "needs a human"
OFFLINE_NOTE = "\n_(written by the offline planner)_"
MODEL_RETRY_FIRST = 5.0  # seconds before the first retry of an unreachable model; doubled each time
MODEL_RETRY_MAX = 60.0
UNDO_RETRY = timedelta(seconds=1)  # a case's undo looks again this soon for its runs to stop


def _may_move(request: Request) -> bool:
    """Whether the run's thread may be created as it starts (bot.presenter opens one for a
    slash command, and for work handed over from another thread): its thread is read after."""
    return request.kind in ("command", "handoff")


class RunLoop:
    def __init__(self, rt: Runtime, run_id: int) -> None:
        self.rt = rt
        self.run_id = run_id

    async def execute(self) -> None:
        """Work the run until it finishes or must wait. Raises LeaseLost if another worker took it."""
        # One read for what the run starts from: itself, its request, its journal, the replies
        # it read, and (the first time) its thread's earlier runs.
        async with self.rt.db.read() as session:
            found = await runs.run_and_request(session=session, run_id=self.run_id)
            if found is None or found[0].worker_id != self.rt.worker_id:
                return
            run, request, steers = found
            steps = await journal.steps_of(session=session, run_id=self.run_id)
            # A reply is read only in the transaction that journals the step after it.
            self.steered = []
            if steps and steers:
                self.steered = await steering.of_run(session=session, run_id=self.run_id)
            self.past: list[PastRun] | None = None
            if run.history is None and not _may_move(request):
                self.past = await threads.earlier_runs(session=session, run=run)
        with tracing.attempt(run, worker=self.rt.worker_id):
            await self._execute(run, request, steps)

    async def _execute(self, run: Run, request: Request, steps: list[Step]) -> None:
        self.run, self.request = run, request
        if run.crashes >= self.rt.max_crashes and not run.undone_by:
            await self._poisoned(run)
            return
        logcontext.bind_run(agent=run.agent, channel=run.channel_id, thread=run.thread_ts)
        await self.rt.reporter.run_started(self.run_id)
        if _may_move(request):  # the thread may have just been created
            async with self.rt.db.read() as session:
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
        # None unless the agent has a token budget or a daily cap (agents.budget): every step
        # boundary (gate.stop) checks it, here and in the executor.
        self.budget = Budget.of(
            self.rt.config,
            agent,
            channel_id=run.channel_id,
            tokens=run.prompt_tokens + run.completion_tokens,
            model=planner.label,
            offline=planner.offline,
        )
        self.executor = Executor(
            self.rt,
            run_id=self.run_id,
            agent=agent.name,
            requester=self.requester,
            actions=self.actions,
            author_note=OFFLINE_NOTE if planner.offline else "",
            budget=self.budget,
        )
        if run.undone_by:
            await self._undo(run.undone_by)
            return
        if request.kind == "handoff" and not await self._handoff_approved():
            return
        self.planner_label = planner.label
        try:
            await self._work(planner, steps)
        except gate.UndoRequested as stop:
            await self._undo(stop.by_user)
        except (gate.Paused, gate.ResourceBusy, gate.AwaitingHandoff):
            await self.rt.reporter.run_progressed(self.run_id)  # it already waits
        except gate.AwaitingApproval as stop:
            await self.rt.reporter.run_progressed(self.run_id)  # it already waits
            await self.rt.reporter.approval_requested(stop.approval_id)
        except (gate.Denied, gate.Deadlock) as stop:
            await self._finish(RunStatus.failed, error=str(stop))

    async def _work(self, planner: Planner, steps: list[Step]) -> None:
        earlier, history = await self._thread()
        self.context = TurnContext(requester=self.request.user_id, thread=tuple(earlier))
        steered = self.steered
        system = self.rt.prompts.of(
            self.agent,
            self.request,
            self.run_id,
            # what instructions read from the environment stays here
            lambda: self.rt.redactor.clean(conversation.system_prompt(self.agent, self.request, self.run_id)),
        )
        messages = conversation.rebuild(system, history, self.request.text, steps, steered)
        if not await self._reconcile(steps, messages):
            return
        count = sum(1 for s in steps if counted(s))
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
                if await self._conclude(turn.content or ""):
                    return
                continue  # a reply steered the run as it was ending: the model reads it next
            for call in turn.tool_calls:
                if count >= self.agent.max_steps:
                    break  # the next iteration fails the run
                messages.append(await self._tool(call))
                count += 1

    async def _thread(self) -> tuple[list[EarlierRun], list[dict[str, Any]]]:
        """The thread so far: taken from the journal the first time the run asks the model, and
        kept with the run, so a resumed run reads the same (agents.conversation)."""
        planner = self.planner_label if self.run.planner != self.planner_label else None
        if self.run.history is not None:
            if planner is not None:
                async with self.rt.db.write() as session:
                    await runs.set_planner(session=session, run_id=self.run_id, planner=planner)
            return conversation.from_snapshot(self.run.history)
        past = self.past
        if past is None:
            async with self.rt.db.read() as session:
                past = await threads.earlier_runs(session=session, run=self.run)
        earlier = conversation.remember(past, for_customer=self.request.requester_role != "member")
        history = conversation.history(earlier, self.agent.history_tokens)
        kept = conversation.snapshot(earlier, history)
        async with self.rt.db.write() as session:  # the planner with it: one write as the run starts
            await runs.set_history(session=session, run_id=self.run_id, history=kept, planner=planner)
        self.run.history = kept
        return earlier, history

    async def _tool(self, call: ToolCall) -> dict[str, Any]:
        reply = await self.executor.call(call)
        return {"role": "tool", "tool_call_id": call.id, "content": reply}

    async def _model_turn(
        self, planner: Planner, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> Turn | None:
        async with self.rt.db.write() as session:
            stop, unread = await gate.boundary(
                session=session,
                run_id=self.run_id,
                agent=self.agent.name,
                worker_id=self.rt.worker_id,
                lease=self.rt.lease,
                team_id=self.requester.team_id,
                budget=self.budget,
            )
            if stop is None:  # the lease was renewed by gate.boundary, in this transaction
                read = await steering.read(session=session, run_id=self.run_id) if unread else []
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
        messages.extend(conversation.steering_message(s) for s in read)
        if read:
            await self.rt.reporter.run_progressed(self.run_id)  # the thread sees they were read
        await self.rt.reporter.step_started(self.run_id)  # the model thinks
        started = time.monotonic()
        try:
            with tracing.span(
                f"chat {planner.label}",
                client=True,
                gen_ai__operation__name="chat",
                gen_ai__system="chatops.offline" if planner.offline else "openai",
                gen_ai__request__model=planner.label,
                gen_ai__request__max_tokens=self.agent.max_output_tokens,
                chatops__step__seq=step.seq,
            ) as span:
                try:
                    turn = await planner.next_turn(messages, tools, context=self.context)
                except ModelError as e:
                    span.failed(str(e), kind="model_unavailable" if e.transient else "model_refused")
                    raise
                finish = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
                span.set(
                    gen_ai__response__model=planner.label,
                    gen_ai__usage__input_tokens=turn.prompt_tokens,
                    gen_ai__usage__output_tokens=turn.completion_tokens,
                    gen_ai__response__finish_reasons=[finish],
                    chatops__tool_calls=len(turn.tool_calls),
                )
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
            if self.budget is not None:  # the run's tokens, and the agent's day's spend
                await self.budget.spent(
                    session=session,
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
        failures = outage(steps)
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

    async def _conclude(self, answer: str) -> bool:
        """The model answered without tool calls: the run is done, well or not. False when a
        reply in the thread is still unread: the run goes on and reads it instead of ending."""
        async with self.rt.db.read() as session:
            steps = await journal.steps_of(session=session, run_id=self.run_id)
        failed = unrecovered_failures(steps)
        if failed:
            names = ", ".join(f"{s.name} (step {s.seq}): {s.error}" for s in failed)
            return await self._finish(RunStatus.failed, outcome=answer, error=f"an action failed: {names}")
        nothing = did_nothing(steps)
        if nothing is not None:
            return await self._finish(RunStatus.no_action, outcome=answer, error=nothing, unless_steered=True)
        return await self._finish(RunStatus.succeeded, outcome=answer, unless_steered=True)

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
                        team_id=self.requester.team_id,
                        budget=self.budget,
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

    async def _handoff_approved(self) -> bool:
        """A customer's case handed to this agent waits for a team member's Approve before it
        acts: True when approved (or no approval was asked); otherwise it waits again, or ends
        as denied."""
        async with self.rt.db.read() as session:
            approval = await approvals.find_approval(
                session=session, run_id=self.run_id, tool_call_id=HANDOFF_APPROVAL
            )
        if approval is None or approval.status == ApprovalStatus.approved:
            return True
        if approval.status == ApprovalStatus.pending:
            assert approval.id is not None
            await self._wait(
                Wait(WaitKind.approval, str(approval.id), "a team member approves it before it acts")
            )
            return False
        why = (
            f"denied by <@{approval.decided_by}>"
            if approval.status == ApprovalStatus.denied
            else approval.status
        )
        await self._finish(RunStatus.failed, error=f"The handoff was not approved: {why}.")
        return False

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
            reply = (
                f"error: not repeated after a restart: its arguments are no longer valid: {first_error(e)}"
            )
            assert step.id is not None
            async with self.rt.db.write() as session:
                await journal.finish_step(
                    session=session, step_id=step.id, status=StepStatus.failed, error=reply, output=reply
                )
            return reply
        return await self.executor.perform(step, action, args)

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
        self,
        status: RunStatus,
        *,
        outcome: str | None = None,
        error: str | None = None,
        unless_steered: bool = False,
    ) -> bool:
        """Give the run its final status, rolling back a failure when the policy says so: this
        run's steps and those of the runs it handed work to (for a case's first run, the case).

        `unless_steered`: not while a reply in the thread is unread (returns False; the run goes
        on). Otherwise the replies it did not read become runs of their own (storage.steering).
        """
        if status == RunStatus.failed and getattr(self, "agent", None) is not None:
            if self.agent.on_failure == "rollback":
                reversals = await reverse(self.rt, run_id=self.run_id)
                if any(r.reversed for r in reversals):
                    status = RunStatus.rolled_back
                error = (error or "") + describe(reversals)
        async with self.rt.db.write() as session:
            ended = await runs.release(
                session=session,
                run_id=self.run_id,
                worker_id=self.rt.worker_id,
                status=status,
                outcome=outcome,
                error=error,
                unless_steered=unless_steered,
            )
        if not ended:
            return False
        self.rt.prompts.forget(self.run_id)
        await self._traced_end([self.run_id])
        metrics.RUNS_FINISHED.labels(self.run.agent, status).inc()
        if status == RunStatus.rolled_back:
            metrics.ROLLBACKS.labels(self.run.agent).inc()
        await self.rt.reporter.run_finished(self.run_id)
        return True

    async def _undo(self, by_user: str) -> None:
        """Undo the case this run belongs to. Its first run does it, once no other run of the
        case is running: every step of every run, newest first. The others wait for it."""
        if self.run.case != self.run_id:
            await self._wait(
                Wait(WaitKind.case, str(self.run.case), f"case #{self.run.case} is being undone")
            )
            return
        async with self.rt.db.read() as session:
            members = await cases.case_runs(session=session, case_id=self.run_id)
        busy = [m.id for m in members if m.status == RunStatus.running and m.id != self.run_id]
        if busy:  # they stop at their next step; look again in a moment
            reason = (
                f"undoing case #{self.run_id}: waiting for run {', '.join(f'#{i}' for i in busy)} to stop"
            )
            await self._wait(Wait(WaitKind.case, str(self.run_id), reason, wake_at=now() + UNDO_RETRY))
            return
        reversals = await reverse(self.rt, run_id=self.run_id)
        report = describe(reversals)
        if not reversals and not await self._acted(members):
            report = " It had done nothing yet, so there was nothing to undo."
        asked = f"Undone at the request of <@{by_user}>."
        async with self.rt.db.write() as session:
            await runs.release(
                session=session,
                run_id=self.run_id,
                worker_id=self.rt.worker_id,
                status=RunStatus.rolled_back,
                outcome=(self.run.outcome or "").strip(),
                error=asked + report,
            )
            others = await cases.end_undone(
                session=session,
                runs=members,
                reports={
                    m.id: asked + describe([r for r in reversals if r.run_id == m.id])
                    for m in members
                    if m.id
                },
                except_run=self.run_id,
            )
        # A root span is exported once, when its run first ends: a run undone after it ended
        # keeps its trace, where the undo is one more attempt (agents.tracing).
        unended = {m.id for m in members if m.finished_at is None}
        await self._traced_end([i for i in [self.run_id, *others] if i in unended])
        for member in members:
            metrics.RUNS_FINISHED.labels(member.agent, RunStatus.rolled_back).inc()
        metrics.UNDOS.labels(self.run.agent).inc()
        for run_id in [self.run_id, *others]:
            await self.rt.reporter.run_finished(run_id)

    async def _traced_end(self, run_ids: list[int]) -> None:
        """The ended runs' root spans (agents.tracing), when tracing is on."""
        if not tracing.enabled():
            return
        async with self.rt.db.read() as session:
            for run_id in run_ids:
                ended = await runs.run_without_history(session=session, run_id=run_id)
                if ended is None:
                    continue
                parent = None
                if ended.parent_id is not None:
                    parent = await runs.run_without_history(session=session, run_id=ended.parent_id)
                tracing.run_ended(ended, parent=parent)

    async def _acted(self, members: list[Run]) -> bool:
        async with self.rt.db.read() as session:
            steps = await cases.steps_of_runs(session=session, run_ids=[m.id for m in members if m.id])
        return any(s.kind == StepKind.action for s in steps)
