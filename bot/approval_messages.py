"""The Approve/Deny message of an approval: posted once, updated with each decision.

It says who may decide (the approval's policy, kept with it) and how many approvals are still
needed; a run's ask for more tokens (agents.budget) has Continue and Stop instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.render import Message, render
from bot.surface import OneSurface, Surface, Surfaces
from storage import approvals, requests, runs
from storage.engine import Database
from storage.models import Approval, ApprovalDecision, ApprovalStatus, Run


@dataclass(frozen=True)
class Decided:
    """What the message shows besides the approval: who asked, and who decided so far."""

    requester: str
    decisions: tuple[ApprovalDecision, ...] = ()

    @property
    def approved_by(self) -> list[str]:
        return [d.user_id for d in self.decisions if d.decision == "approve"]


class ApprovalMessages:
    def __init__(self, db: Database, surface: Surface, *, surfaces: Surfaces | None = None) -> None:
        self.db = db
        self.surface = surface
        self.surfaces = surfaces or OneSurface(surface)
        """An approval is asked for in the workspace of its run."""

    async def post(self, approval_id: int) -> None:
        async with self.db.write() as session:
            approval = await approvals.get_approval(session=session, approval_id=approval_id)
            if approval is None or approval.status != ApprovalStatus.pending:
                return
            if not await approvals.claim_approval_message(session=session, approval_id=approval_id):
                return
            run = await runs.get_run(session=session, run_id=approval.run_id)
            assert run is not None
            shown = await _decided(session, approval, run)
        message = self.message(approval, run, shown)
        # The approval's channel is where its buttons count (bot.controls.decide checks it).
        thread_ts = run.thread_ts if approval.channel_id == run.channel_id else None
        try:
            ts = await self.surfaces.for_team(run.team_id).post(
                channel=approval.channel_id, text=message.text, blocks=message.blocks, thread_ts=thread_ts
            )
        except BaseException:
            async with self.db.write() as session:
                await approvals.set_approval_message(session=session, approval_id=approval_id, ts=None)
            raise
        async with self.db.write() as session:
            await approvals.set_approval_message(session=session, approval_id=approval_id, ts=ts)
            decided = await approvals.get_approval(session=session, approval_id=approval_id)
            since = await approvals.decisions(session=session, approval_id=approval_id)
        if decided is not None and (
            decided.status != ApprovalStatus.pending or len(since) != len(shown.decisions)
        ):
            # Decided between the post and saving its ts: the decision's update found no
            # message to edit, so show it (take the buttons away, or count the approval) now.
            await self.update(approval_id)

    async def update(self, approval_id: int) -> None:
        async with self.db.read() as session:
            approval = await approvals.get_approval(session=session, approval_id=approval_id)
            run = await runs.get_run(session=session, run_id=approval.run_id) if approval else None
            if approval is None or run is None or not is_ts(approval.message_ts):
                return
            decided = await _decided(session, approval, run)
        message = self.message(approval, run, decided)
        await self.surfaces.for_team(run.team_id).update(
            channel=approval.channel_id,
            ts=approval.message_ts or "",
            text=message.text,
            blocks=message.blocks,
        )

    def message(self, approval: Approval, run: Run, decided: Decided | None = None) -> Message:
        decided = decided or Decided(requester="")
        budget = approvals.is_budget(approval)
        args = (
            json.dumps(approval.arguments, indent=1, ensure_ascii=False)
            if approval.arguments
            else "(no arguments)"
        )
        handoff = approval.tool_call_id == "handoff" and isinstance(
            (approval.arguments or {}).get("brief"), str
        )
        if handoff:  # shown exactly as the agent will read it
            args = str((approval.arguments or {})["brief"])
        if budget:
            args = _budget_terms(approval)
        if approval.status == ApprovalStatus.pending:
            if handoff:
                header = (
                    f":raised_hand: A customer's case is handed to *{run.agent}* (run #{run.id}): it acts "
                    "only once a team member approves. This is what it will be asked to do:"
                )
            elif budget:
                header = (
                    f":money_with_wings: Run #{run.id} ({run.agent}) stopped before its next step, because "
                    f"{approval.reason}. *Continue* gives it more; *Stop* ends it."
                )
            else:
                header = (
                    f":raised_hand: Run #{run.id} ({run.agent}) wants to run *{approval.action}* and waits "
                    f"for a human, because {approval.reason}."
                )
            footer = (
                f"{who_decides(approval, decided)} · approval #{approval.id} · "
                f"expires {approval.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        else:
            icon = {
                "approved": ":white_check_mark:",
                "denied": ":no_entry:",
                "withdrawn": ":leftwards_arrow_with_hook:",
            }.get(approval.status, ":hourglass:")
            status = {"approved": "continued", "denied": "stopped"}.get(approval.status) if budget else None
            approvers = decided.approved_by if approval.status == ApprovalStatus.approved else []
            names = approvers if len(approvers) > 1 else [approval.decided_by or ""]
            who = f" by {_and(names)}" if approval.decided_by != "system" else ""
            header = f"{icon} *{approval.action}* for run #{run.id}: {status or approval.status}{who}."
            footer = f"approval #{approval.id}"
        text = f"{header}\n{args}"
        if approval.status == ApprovalStatus.pending:
            text += f"\n{who_decides(approval, decided)}."
        return render(
            "approval.json.j2",
            text=text,
            header=header,
            arguments=args,
            footer=footer,
            approval=approval,
            pending=approval.status == ApprovalStatus.pending,
            approve_label="Continue" if budget else "Approve",
            deny_label="Stop" if budget else "Deny",
        )


def who_decides(approval: Approval, decided: Decided) -> str:
    """Who may decide, and how many approvals are still needed: the approval's policy in words."""
    who = (
        f"Who may decide: {_or(approval.approvers)}"
        if approval.approvers
        else "Who may decide: anyone who may control agents"
    )
    if not approval.self_approval and decided.requester:
        who += f", but not <@{decided.requester}>, who asked for it (self_approval = false)"
    done = decided.approved_by
    if approval.needed > 1:
        left = approval.needed - len(done)
        so_far = f": approved by {_and(done)}" if done else ""
        who += (
            f" · {approval.needed} different people must approve{so_far}; "
            f"{left} more approval{'s' * (left != 1)} needed"
        )
    return who


def _budget_terms(approval: Approval) -> str:
    terms = approval.arguments or {}
    used, allowed, more = (int(terms.get(k) or 0) for k in ("used", "allowed", "more"))
    return (
        f"tokens used: {used:,} of {allowed:,} (max_tokens_per_run)\n"
        f"Continue: another {more:,} tokens (up to {used + more:,})\n"
        "Stop: the run ends here as failed (and is rolled back if its agent's on_failure says so)"
    )


def _or(users: list[str]) -> str:
    names = [f"<@{u}>" for u in users]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"


def _and(users: list[str]) -> str:
    names = [f"<@{u}>" for u in users]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


async def _decided(session: AsyncSession, approval: Approval, run: Run) -> Decided:
    request = await requests.get_request(session=session, request_id=run.request_id)
    assert approval.id is not None
    decisions = await approvals.decisions(session=session, approval_id=approval.id)
    return Decided(requester=request.user_id if request else "", decisions=tuple(decisions))


def is_ts(value: str | None) -> bool:
    """A Slack message ts (not empty, not a "pending" claim or a placeholder)."""
    return bool(value) and value.replace(".", "", 1).isdigit()  # type: ignore[union-attr]
