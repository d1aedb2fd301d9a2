"""Handoffs: `transfer_to_<agent>(brief)` starts a run of another agent, in the same case, and
the calling run waits for its outcome.

The call is a step like any other, through the one executor: journaled, paused, approved by
the same rules. Its effect is the new run, made once per call (keyed by the call's idempotency
key, so a crash or a retry finds it again); the call's result is that run's outcome. A customer's
case waits for a team member's Approve in the target agent's channel before the target acts.
Reversing what the target did is the case's undo (agents.rollback), not this step's.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from agents import gate
from agents.actions.base import Action, ActionContext, ActionResult
from agents.config import AgentConfig, Config
from agents.errors import ActionError
from storage import approvals, cases, journal, requests
from storage.cases import Handoff as HandoffPlan
from storage.clock import now
from storage.models import FINAL_STATUSES, Run, RunStatus, Step, StepKind, StepStatus

PREFIX = "transfer_to_"


class Brief(BaseModel):
    brief: str = Field(
        min_length=1,
        max_length=4000,
        description="What the agent should do, complete in itself: it does not see this conversation",
    )


class Handoff(Action):
    """Hand work to another agent and wait for its outcome."""

    args_model = Brief
    idempotent = True  # repeated after a crash, it finds the run it started
    customers = True  # a customer's case may be escalated: a team member approves first

    def __init__(self, target: AgentConfig, config: Config) -> None:
        self.target = target
        self.config = config
        self.name = f"{PREFIX}{target.name}"
        about = f" ({target.description})" if target.description else ""
        self.description = (
            f"Hand work to the {target.name} agent{about}. It works in its own thread; you wait for "
            "its outcome (what it did and answered), which comes back as this tool's result."
        )

    async def run(self, ctx: ActionContext, args: BaseModel) -> ActionResult:
        assert isinstance(args, Brief)
        async with ctx.db.write() as session:
            parent = await cases.lock_run(session=session, run_id=ctx.run_id)
            assert parent is not None and parent.id is not None
            # Repeated (the run resumes with the outcome): the run it started is found, and the
            # handoff is not planned again (its checks were passed when it was started).
            child = await cases.handoff_of(session=session, parent_id=parent.id, key=ctx.idempotency_key)
            created = False
            if child is None:
                child, created = await cases.start_handoff(
                    session=session,
                    parent=parent,
                    key=ctx.idempotency_key,
                    handoff=await self._plan(session, parent, args.brief),
                )
            approval_id = None
            if created and child.status == RunStatus.waiting:
                approval_id = await self._ask_approval(session, child, args.brief)
            steps = []
            if child.status in FINAL_STATUSES:  # its outcome, read here: one transaction less
                steps = await journal.steps_of(session=session, run_id=child.id or 0)
        assert child.id is not None
        if child.status not in FINAL_STATUSES:
            raise gate.AwaitingHandoff(child.id, self.target.name, approval_id)
        return self._outcome(child, steps)

    async def _plan(self, session: AsyncSession, parent: Run, brief: str) -> HandoffPlan:
        """Where the new run reports and on whose behalf, or an ActionError the model reads."""
        chain = [parent, *await cases.ancestors(session=session, run=parent)]
        limit = self.config.control.max_handoff_depth
        if len(chain) > limit:
            raise ActionError(
                f"this case is already {len(chain) - 1} handoffs deep (control.max_handoff_depth)"
            )
        if not self.config.control.handoff_cycles and self.target.name in {r.agent for r in chain}:
            route = " -> ".join(r.agent for r in reversed(chain))
            raise ActionError(
                f"{self.target.name} already works on this case ({route}); handoffs may not go round"
            )
        request = await requests.get_request(session=session, request_id=parent.request_id)
        customer = request is None or request.requester_role != "member"
        if customer and not self.target.channels:
            raise ActionError(
                f"{self.target.name} has no channel where a team member could approve a customer's case"
            )
        if self.target.channels:
            channel, thread = self.target.channels[0], None  # a new thread there, linked to this one
        else:
            channel, thread = parent.channel_id, parent.thread_ts
        return HandoffPlan(
            agent=self.target.name,
            brief=brief,
            channel_id=channel,
            thread_ts=thread,
            # Once a team member approved it, the target acts with the team's actions.
            requester_role="member",
            approval=customer,
        )

    async def _ask_approval(self, session: AsyncSession, child: Run, brief: str) -> int:
        assert child.id is not None
        hours = self.config.control.approval_timeout_hours
        policy = self.config.approval_policy()  # [control]'s: a handoff is no configured action
        approval = await approvals.request_approval(
            session=session,
            run_id=child.id,
            tool_call_id=HANDOFF_APPROVAL,
            action=self.name,
            arguments={"brief": brief},
            reason=f"a customer's case goes to {self.target.name}: a team member approves before it acts",
            channel_id=child.channel_id,
            expires_at=now() + timedelta(hours=hours),
            needed=policy.needed,
            approvers=list(policy.approvers),
            self_approval=policy.self_approval,
        )
        assert approval.id is not None
        return approval.id

    def _outcome(self, child: Run, steps: list[Step]) -> ActionResult:
        """The run's outcome, as the calling agent reads it."""
        done = [
            str((s.data or {}).get("summary") or s.name)
            for s in steps
            if s.kind == StepKind.action and s.status in (StepStatus.succeeded, StepStatus.compensated)
        ]
        outcome = {
            RunStatus.succeeded: "finished",
            RunStatus.no_action: "did nothing",
            RunStatus.failed: "failed",
            RunStatus.rolled_back: "failed and was rolled back",
            RunStatus.cancelled: "was cancelled",
        }[RunStatus(child.status)]
        parts = [f"{self.target.name} {outcome} (run #{child.id})."]
        if done:
            parts.append("What it did: " + "; ".join(done) + ".")
        if child.outcome:
            parts.append(f"Its answer: {child.outcome.strip()}")
        if child.error:
            parts.append(f"Problem: {child.error.strip()}")
        return ActionResult(
            output="\n".join(parts),
            summary=f"handed to {self.target.name}: run #{child.id} {outcome}",
            data={"child_run_id": child.id},
        )


HANDOFF_APPROVAL = "handoff"
"""The approval a customer's handoff waits for is this run's, under this key."""


def handoffs_of(agent: AgentConfig, config: Config) -> list[Handoff]:
    """The transfer tools an agent's model gets: one per agent in its `handoffs`."""
    return [Handoff(target, config) for name in agent.handoffs if (target := config.agent(name)) is not None]
