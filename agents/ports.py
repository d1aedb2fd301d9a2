"""What the runtime needs from the chat surface. `bot/` implements these for Slack and the console."""

from __future__ import annotations

from typing import Protocol


class Chat(Protocol):
    """Posting and deleting plain messages: what Slack actions need."""

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        """Post a message; returns its ts."""
        ...

    async def delete_message(self, *, channel: str, ts: str) -> None:
        """Delete a message; a message that is already gone is not an error."""
        ...

    # Both raise agents.errors.ActionError when the chat service refuses.


class Reporter(Protocol):
    """Told when a run changes; renders the run's thread from storage.

    Calls are best effort: a reporter never raises into the runtime.
    """

    async def run_started(self, run_id: int) -> None:
        """A worker picked the run up: make sure its thread and status message exist."""
        ...

    async def run_progressed(self, run_id: int) -> None:
        """Steps were journaled, or the run started or waits: refresh its status message."""
        ...

    async def step_started(self, run_id: int, *, action: str | None = None) -> None:
        """A step begins and may take a while: the model thinks (`action` None), or `action`
        runs. Show it until the next step, the run waits, or its outcome is shown."""
        ...

    async def approval_requested(self, approval_id: int) -> None:
        """An action waits for a human: show it with Approve and Deny."""
        ...

    async def run_finished(self, run_id: int) -> None:
        """The run reached a final status: refresh its status and post the outcome."""
        ...


class Roles(Protocol):
    """Who a requester is in the team, asked again when a run starts (its request arrived while
    Slack could not say)."""

    async def verify(self, *, team_id: str, user_id: str) -> str | None:
        """ "member" or "customer" as the workspace says now; None when it still cannot say."""
        ...
