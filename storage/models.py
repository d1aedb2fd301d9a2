"""SQLModel tables. Every timestamp is timezone-aware UTC (see `storage.clock`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Identity, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from storage.clock import now

# Ids are never reused, not even after a delete (an undo deletes the ticket or comment it
# made): SQLite would hand the largest id out again without AUTOINCREMENT, and a later
# compensation keyed on that id would then reach another run's row.
NEVER_REUSED = {"sqlite_autoincrement": True}


def id_field() -> Any:
    """An integer primary key that is never reused: AUTOINCREMENT on SQLite, an identity
    column on PostgreSQL."""
    return Field(default=None, sa_column=Column(Integer, Identity(), primary_key=True))


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    waiting = "waiting"  # for what: Run.wait_kind and wait_on (WaitKind)
    succeeded = "succeeded"
    no_action = "no_action"  # ended without doing anything: nothing it could act on, calls refused
    failed = "failed"
    rolled_back = "rolled_back"
    cancelled = "cancelled"


class WaitKind(StrEnum):
    """What a waiting run waits for (Run.wait_kind); Run.wait_on says which one."""

    paused = "paused"  # wait_on: the pause's scope ("*" or the agent)
    approval = "approval"  # wait_on: the approval's id
    resource = "resource"  # wait_on: the resource another run holds
    human = "human"  # wait_on: the step whose result a crash left unknown
    model = "model"  # the model server is unreachable; wake_at: the next try
    handoff = "handoff"  # wait_on: the run it handed work to, whose outcome it waits for
    case = "case"  # wait_on: the case's first run, which is undoing the whole case


ACTIVE_STATUSES = (RunStatus.queued, RunStatus.running, RunStatus.waiting)
FINAL_STATUSES = (
    RunStatus.succeeded,
    RunStatus.no_action,
    RunStatus.failed,
    RunStatus.rolled_back,
    RunStatus.cancelled,
)


class StepKind(StrEnum):
    model = "model"
    action = "action"
    compensation = "compensation"


class StepStatus(StrEnum):
    intent = "intent"  # journaled before the side effect; no result yet
    succeeded = "succeeded"
    failed = "failed"
    rejected = "rejected"  # never ran: unknown tool, bad arguments, refused
    proposed = "proposed"  # autonomy "propose": described to the user, not run
    compensated = "compensated"  # an action step whose effect was reversed


class ProcessedEvent(SQLModel, table=True):
    """A Slack delivery already taken (event_id, or a command's trigger_id)."""

    __tablename__ = "processed_events"
    key: str = Field(primary_key=True, max_length=255)
    kind: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=now, index=True)


class RequestBase(SQLModel):
    source: str = Field(default="slack", max_length=16)  # slack | console
    kind: str = Field(max_length=16)  # mention | dm | channel | thread | command
    team_id: str = Field(default="", max_length=32)
    channel_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32)
    ts: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)  # where replies go
    event_id: str | None = Field(default=None, max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    agent: str = Field(max_length=64)
    requester_role: str = Field(default="member", max_length=16)  # member | customer
    context_channel_id: str | None = Field(default=None, max_length=32)
    """The channel the person was looking at when they asked (the thread context Slack gives an
    assistant thread of the app's DM); None elsewhere."""


class Request(RequestBase, table=True):
    """What a person asked. One Slack message is one request."""

    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("team_id", "channel_id", "ts", name="uq_request_message"),
        # The steering messages a run has not read yet (every step boundary asks).
        Index("ix_requests_steering", "steers_run_id", "steer_seq"),
        NEVER_REUSED,
    )
    id: int | None = id_field()
    created_at: datetime = Field(default_factory=now)
    # A reply that arrived while a run of its thread was in flight steers that run instead of
    # starting one: the run reads it at its next step boundary (storage.steering).
    steers_run_id: int | None = Field(default=None)
    steer_seq: int | None = Field(default=None)
    """The seq of the step the run read it before (None: not read yet)."""


# Finished runs matching this still owe their thread an outcome reply or an undo report.
UNDELIVERED = "outcome_ts IS NULL OR (undone_by IS NOT NULL AND undo_ts IS NULL)"


class Run(SQLModel, table=True):
    """One execution of an agent for a request."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        Index("ix_runs_status_wake", "status", "wake_at"),  # waiting runs due to try again
        Index("ix_runs_thread", "team_id", "channel_id", "thread_ts"),
        Index("ix_runs_agent_created", "agent", "created_at"),
        Index("ix_runs_created", "created_at"),
        # A channel's runs in id order: the newest one without sorting them (channel-level undo).
        Index("ix_runs_channel", "team_id", "channel_id"),
        # The watchdog's windows.
        Index("ix_runs_finished", "finished_at"),
        Index("ix_runs_case", "case_id"),
        # A handoff starts one run, however often its call is repeated (a crash, a retry).
        UniqueConstraint("parent_id", "handoff_key", name="uq_runs_handoff"),
        # The few runs whose outcome or undo report is still to be delivered (housekeeping
        # looks for them every 30 s). The condition is the query's, word for word.
        Index(
            "ix_runs_undelivered",
            "id",
            sqlite_where=text(UNDELIVERED),
            postgresql_where=text(UNDELIVERED),
        ),
        NEVER_REUSED,
    )
    id: int | None = id_field()
    request_id: int = Field(foreign_key="requests.id", index=True)
    agent: str = Field(max_length=64)
    # A case: every run started from one request (a run's handoffs, theirs, ...). The first
    # run's id names it (`case`); undo, rollback and status take the case as one.
    case_id: int | None = Field(default=None)
    """The case's first run, for a run handed work; None for a case's first run itself."""
    parent_id: int | None = Field(default=None)
    """The run that handed this one its work (transfer_to_<agent>), None for a case's first run."""
    handoff_key: str | None = Field(default=None, max_length=64)
    """The parent's call that started it (its idempotency key): one run per call."""
    status: str = Field(default=RunStatus.queued, max_length=16)
    wait_kind: str | None = Field(default=None, max_length=16)  # WaitKind, while waiting
    wait_on: str | None = Field(default=None, max_length=255)  # which pause, approval, resource...
    wake_at: datetime | None = None  # a waiting run that is claimable again from then on
    wait_reason: str | None = Field(default=None, max_length=255)  # the same, as a sentence for people
    # Where the run reports: the request's thread.
    team_id: str = Field(default="", max_length=32)
    channel_id: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    # Lease: the worker that owns the run, until when.
    worker_id: str | None = Field(default=None, max_length=128)
    lease_expires_at: datetime | None = None
    attempts: int = 0  # how many times a worker has claimed it
    crashes: int = 0  # how many times working it crashed its worker (see runs.claim_runs)
    planner: str | None = Field(default=None, max_length=128)  # "openai:<model>" or "offline"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = Field(default=None, sa_column=Column(Text))
    undone_by: str | None = Field(default=None, max_length=64)  # who asked for the undo
    # Presentation state, owned by bot/: ts of the status message and of the outcome
    # reply ("pending" while a poster holds the claim).
    status_ts: str | None = Field(default=None, max_length=32)
    outcome_ts: str | None = Field(default=None, max_length=32)
    undo_ts: str | None = Field(default=None, max_length=32)  # the reply saying what undo reversed
    history: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    """What the thread said and did before this run, as the model reads it: taken once, when the
    run first asks the model, so a resumed run is shown exactly the same (agents.conversation)."""
    created_at: datetime = Field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = Field(default_factory=now)

    @property
    def case(self) -> int:
        """The case this run belongs to: its first run's id."""
        return self.case_id or self.id or 0


class Step(SQLModel, table=True):
    """One journal entry: a model turn, an action, or a compensation.

    Written as an intent before the side effect and completed after it, with what
    is needed to reverse it (`undo`).
    """

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_step_seq"),
        Index("ix_steps_started", "started_at"),  # the watchdog's window of model failures
        NEVER_REUSED,
    )
    id: int | None = id_field()
    run_id: int = Field(foreign_key="runs.id", index=True)
    seq: int
    kind: str = Field(max_length=16)
    name: str = Field(max_length=128)  # action name, or the model name for model turns
    tool_call_id: str | None = Field(default=None, max_length=128)  # the model's id for the call
    call_key: str | None = Field(default=None, max_length=32)  # "<turn seq>.<index>": unique in the run
    arguments: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    status: str = Field(default=StepStatus.intent, max_length=16)
    output: str | None = Field(default=None, sa_column=Column(Text))  # what the model sees
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    undo: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    reversible: bool = True
    risk: str = Field(default="low", max_length=16)
    resource: str | None = Field(default=None, max_length=255)
    idempotency_key: str | None = Field(default=None, max_length=255)
    compensates: int | None = Field(default=None)  # step id reversed by this compensation
    error: str | None = Field(default=None, sa_column=Column(Text))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None


class TicketBase(SQLModel):
    title: str = Field(max_length=255)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default="open", max_length=16)  # open | in_progress | closed
    priority: str = Field(default="normal", max_length=16)  # low | normal | high | urgent
    assignee: str | None = Field(default=None, max_length=64)
    reporter: str | None = Field(default=None, max_length=64)


class Ticket(TicketBase, table=True):
    __tablename__ = "tickets"
    __table_args__ = (NEVER_REUSED,)
    id: int | None = id_field()
    team_id: str = Field(default="", max_length=32)  # the workspace whose tracker it is in; "" for all
    run_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)


class TicketComment(SQLModel, table=True):
    __tablename__ = "ticket_comments"
    __table_args__ = (NEVER_REUSED,)
    id: int | None = id_field()
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    run_id: int | None = Field(default=None, index=True)  # the run that wrote it; None: a person
    author: str | None = Field(default=None, max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=now)


class Control(SQLModel, table=True):
    """A pause flag: `scope` is an agent name, or "*" for every agent; `team_id` the workspace
    it pauses them in ("" for every workspace: the one of a single-workspace install)."""

    __tablename__ = "controls"
    team_id: str = Field(default="", primary_key=True, max_length=32)
    scope: str = Field(primary_key=True, max_length=64)
    paused: bool = False
    by_user: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=255)
    changed_at: datetime = Field(default_factory=now)


class ActionReceipt(SQLModel, table=True):
    """The result of an action, written in the same transaction as its effect.

    A re-run with the same idempotency key (after a crash hid the result) finds the
    receipt and returns it instead of acting again: exactly once.
    """

    __tablename__ = "action_receipts"
    key: str = Field(primary_key=True, max_length=255)
    result: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=now)


class ResourceLock(SQLModel, table=True):
    """A resource (a ticket, a service, a customer) one run is acting on.

    Held from the first action that touches it until the run reaches a final status,
    so two runs never interleave their actions on the same thing.
    """

    __tablename__ = "resource_locks"
    resource: str = Field(primary_key=True, max_length=255)
    run_id: int = Field(foreign_key="runs.id", index=True)
    acquired_at: datetime = Field(default_factory=now)


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    denied = "denied"
    expired = "expired"
    withdrawn = "withdrawn"  # the run was undone while it waited


class Approval(SQLModel, table=True):
    """A human decision an action waits for. One per (run, tool call)."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("run_id", "tool_call_id", name="uq_approval_call"),
        Index("ix_approvals_status_expires", "status", "expires_at"),
        NEVER_REUSED,
    )
    id: int | None = id_field()
    run_id: int = Field(foreign_key="runs.id", index=True)
    tool_call_id: str = Field(max_length=128)  # the call's key in its run ("<turn>.<index>")
    action: str = Field(max_length=128)
    arguments: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    reason: str = Field(max_length=255)  # why a human must decide: "risk high", "irreversible"...
    status: str = Field(default=ApprovalStatus.pending, max_length=16)
    requested_at: datetime = Field(default_factory=now)
    expires_at: datetime
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = None
    channel_id: str = Field(max_length=32)
    message_ts: str | None = Field(default=None, max_length=32)  # the Approve/Deny message
    # The approval policy as it was when the approval was asked for (agents.config.ApprovalPolicy):
    # the message says who may decide, and the decision follows what the message said.
    needed: int = 1
    """How many different approvers must Approve; one Deny decides."""
    approvers: list[str] | None = Field(default=None, sa_column=Column(JSON))
    """Who may decide (Slack user ids); None: whoever may control agents."""
    self_approval: bool = True
    """Whether the person whose request the run serves may Approve."""


class ApprovalDecision(SQLModel, table=True):
    """One person's Approve or Deny of an approval: a two-person rule needs two of them."""

    __tablename__ = "approval_decisions"
    approval_id: int = Field(foreign_key="approvals.id", primary_key=True)
    user_id: str = Field(primary_key=True, max_length=64)
    decision: str = Field(max_length=16)  # approve | deny
    at: datetime = Field(default_factory=now)


class Spend(SQLModel, table=True):
    """What an agent's model turns cost on one day, kept as a running total (agents.budget), so
    that checking a daily cap reads one row instead of summing the day's runs. Kept only for
    agents with a `max_cost_per_day`."""

    __tablename__ = "spend"
    agent: str = Field(primary_key=True, max_length=64)
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD in the summary's time zone
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """US dollars, priced from [prices] as each turn was journaled."""
    extra: float = 0.0
    """Dollars allowed beyond the cap that day: a person resumed the agent after it paused itself."""


class AuditEvent(SQLModel, table=True):
    """Who did what, when: every control action and every refusal."""

    __tablename__ = "audit_events"
    __table_args__ = (NEVER_REUSED,)
    id: int | None = id_field()
    at: datetime = Field(default_factory=now, index=True)
    team_id: str = Field(default="", max_length=32)  # the workspace it happened in; "" for every one
    actor: str = Field(max_length=64)  # a Slack user id, or "system"
    action: str = Field(max_length=32)  # pause, resume, undo, approve, deny, refused, ...
    target: str = Field(default="", max_length=128)  # "agent:ops", "run:42", "approval:7"
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class SummaryPost(SQLModel, table=True):
    """One daily summary per date and channel, whatever the number of processes."""

    __tablename__ = "summary_posts"
    __table_args__ = (
        UniqueConstraint("team_id", "day", "channel_id", "attempt", name="uq_summary_day_channel"),
        NEVER_REUSED,
    )
    id: int | None = id_field()
    team_id: str = Field(default="", max_length=32)  # whose runs it counts; "" for every workspace's
    day: str = Field(max_length=10)  # YYYY-MM-DD in the summary's time zone
    channel_id: str = Field(max_length=32)
    attempt: int = 0  # 0 for the scheduled post; --force adds another
    ts: str | None = Field(default=None, max_length=32)
    claimed_at: datetime = Field(default_factory=now)


class Alert(SQLModel, table=True):
    """A condition the system noticed: raised once, noted again when it clears."""

    __tablename__ = "alerts"
    __table_args__ = (
        # One active alert per condition (in each workspace).
        Index(
            "uq_alert_active",
            "team_id",
            "key",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        NEVER_REUSED,
    )
    id: int | None = id_field()
    team_id: str = Field(default="", max_length=32)  # the workspace whose runs it is about; "" for all
    key: str = Field(max_length=255)  # "stuck:run:42", "failure_rate:ops", ...
    active: bool = Field(default=True, index=True)
    message: str = Field(sa_column=Column(Text, nullable=False))
    raised_at: datetime = Field(default_factory=now)
    cleared_at: datetime | None = None
    channel_id: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)


class UserRole(SQLModel, table=True):
    """What Slack last said of a user (users.info), kept so that a Slack outage does not turn a
    member into a stranger: fresh until `expires_at`, and the last known word after that while
    Slack does not answer."""

    __tablename__ = "user_roles"
    team_id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(primary_key=True, max_length=32)
    refusal: str | None = Field(default=None, sa_column=Column(Text))
    """Why the user is not a full member of the team (a guest, another workspace...); None: a member."""
    checked_at: datetime = Field(default_factory=now)
    expires_at: datetime


class Meta(SQLModel, table=True):
    """Key/value facts about the database itself (schema version)."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255)


class Vote(StrEnum):
    good = "good"
    bad = "bad"


class Feedback(SQLModel, table=True):
    """One person's vote (the 👍 or 👎 under an outcome) on one run: a second click changes it."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_voted", "voted_at"),)  # the summary's day, the watchdog's window
    run_id: int = Field(foreign_key="runs.id", primary_key=True)
    user_id: str = Field(primary_key=True, max_length=32)
    team_id: str = Field(default="", max_length=32)
    vote: str = Field(max_length=8)  # Vote
    voted_at: datetime = Field(default_factory=now)
    """When the vote took its current value."""


class AssistantThread(SQLModel, table=True):
    """A thread of the app's assistant container (its DM) and where the person is looking: Slack
    says so when the thread starts and whenever they move (assistant_thread_context_changed)."""

    __tablename__ = "assistant_threads"
    channel_id: str = Field(primary_key=True, max_length=32)
    thread_ts: str = Field(primary_key=True, max_length=32)
    user_id: str | None = Field(default=None, max_length=32)
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    """As Slack gives it: channel_id (the channel being viewed), team_id, enterprise_id."""
    updated_at: datetime = Field(default_factory=now)


# slack-sdk's tables of the app's installations in many workspaces are part of the schema.
from storage import installations as _installations  # noqa: E402, F401
