"""The Approve/Deny message of an approval: posted once, updated with the decision."""

from __future__ import annotations

import json

from bot.render import Message, render
from bot.surface import OneSurface, Surface, Surfaces
from storage import approvals, runs
from storage.engine import Database
from storage.models import Approval, ApprovalStatus, Run


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
        message = self.message(approval, run)
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
        if decided is not None and decided.status != ApprovalStatus.pending:
            # Decided between the post and saving its ts: the decision's update found no
            # message to edit, so take the buttons away now.
            await self.update(approval_id)

    async def update(self, approval_id: int) -> None:
        async with self.db.read() as session:
            approval = await approvals.get_approval(session=session, approval_id=approval_id)
            run = await runs.get_run(session=session, run_id=approval.run_id) if approval else None
        if approval is None or run is None or not is_ts(approval.message_ts):
            return
        message = self.message(approval, run)
        await self.surfaces.for_team(run.team_id).update(
            channel=approval.channel_id,
            ts=approval.message_ts or "",
            text=message.text,
            blocks=message.blocks,
        )

    def message(self, approval: Approval, run: Run) -> Message:
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
        if approval.status == ApprovalStatus.pending:
            header = (
                f":raised_hand: A customer's case is handed to *{run.agent}* (run #{run.id}): it acts only "
                "once a team member approves. This is what it will be asked to do:"
                if handoff
                else f":raised_hand: Run #{run.id} ({run.agent}) wants to run *{approval.action}* and waits "
                f"for a human, because {approval.reason}."
            )
            footer = f"approval #{approval.id} · expires {approval.expires_at:%Y-%m-%d %H:%M} UTC"
        else:
            icon = {
                "approved": ":white_check_mark:",
                "denied": ":no_entry:",
                "withdrawn": ":leftwards_arrow_with_hook:",
            }.get(approval.status, ":hourglass:")
            who = f" by <@{approval.decided_by}>" if approval.decided_by != "system" else ""
            header = f"{icon} *{approval.action}* for run #{run.id}: {approval.status}{who}."
            footer = f"approval #{approval.id}"
        text = f"{header}\n{args}"
        return render(
            "approval.json.j2",
            text=text,
            header=header,
            arguments=args,
            footer=footer,
            approval=approval,
            pending=approval.status == ApprovalStatus.pending,
        )


def is_ts(value: str | None) -> bool:
    """A Slack message ts (not empty, not a "pending" claim or a placeholder)."""
    return bool(value) and value.replace(".", "", 1).isdigit()  # type: ignore[union-attr]
