"""What a run executes with: the runtime's dependencies, built once per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from agents.actions.registry import Registry
from agents.config import AgentConfig, Config
from agents.conversation import SystemPrompts
from agents.mcp import McpManager
from agents.model import Planner
from agents.ports import Chat, Reporter, Roles
from agents.redaction import Redactor
from storage.engine import Database

if TYPE_CHECKING:  # agents.dryrun builds a runtime of its own
    from agents.dryrun import DryRun


@dataclass
class Runtime:
    db: Database
    """Where runs, steps and everything else are stored."""
    config: Config
    """Agents and actions from the configuration file."""
    registry: Registry
    """Every action that exists; agents pick from it."""
    planner_for: Callable[[AgentConfig], Planner]
    """The model (or offline planner) an agent runs with."""
    chat: Chat
    """How Slack actions post and delete messages."""
    reporter: Reporter
    """How progress and outcomes reach the run's thread."""
    worker_id: str
    """This process's identity in leases."""
    lease: timedelta = field(default=timedelta(seconds=30))
    """How long a claim lasts without a heartbeat."""
    model_outage: timedelta = field(default=timedelta(minutes=10))
    """How long a run waits out an unreachable model (retrying with backoff) before it fails."""
    max_crashes: int = 3
    """A run that crashed its worker this many times is failed instead of tried again."""
    roles: Roles | None = None
    """Asked when a run starts whose requester could not be verified at intake."""
    redactor: Redactor = field(default_factory=Redactor)
    """Cleans tool output of secrets before it is journaled or shown to the model."""
    mcp: McpManager | None = None
    """The MCP servers of the configuration, connected once per process (their tools reach
    agents through `registry`); None where a process has none (tests of other parts)."""
    chats: Callable[[str], Chat] | None = None
    """Each workspace's chat, by team id (the app installed in many workspaces); None: `chat`
    for every workspace."""

    owner: Callable[[str], str] | None = None
    """The workspace whose rows a run of `team_id` reads and writes (many workspaces: itself);
    None: "" (one workspace, every row)."""

    def workspace_of(self, team_id: str) -> str:
        return self.owner(team_id) if self.owner is not None else ""

    def chat_for(self, team_id: str) -> Chat:
        """How Slack actions of a run in workspace `team_id` post and delete messages."""
        return self.chats(team_id) if self.chats is not None else self.chat

    prompts: SystemPrompts = field(default_factory=SystemPrompts)
    """The system prompts of the runs in flight, kept between their attempts."""

    dry_run: DryRun | None = None
    """Set for `chatops replay` and `chatops eval` (agents.dryrun): the executor answers every
    call from it instead of running the action, and asks nobody for approval."""
