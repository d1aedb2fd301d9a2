"""In-process stand-ins for what a run talks to: the model, Slack, the thread reporter.

The database is never faked: tests use a real SQLite file through `storage.engine.Database`.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

from agents.actions.registry import Registry
from agents.config import Config, parse_config
from agents.model import ToolCall, Turn
from agents.runtime import Runtime
from storage import runs
from storage.engine import Database
from storage.models import RequestBase
from storage.requests import create_request

WORKER = "worker-test"
LEASE = timedelta(seconds=5)

Messages: TypeAlias = list[dict[str, Any]]
ScriptItem: TypeAlias = Turn | BaseException | Callable[[Messages, Messages], Awaitable[Turn]]
"""A turn to return, an error to raise, or a coroutine function given (messages, tools)."""


class ScriptedPlanner:
    """A model fed one scripted output per turn; it records every conversation it is shown."""

    label = "scripted"
    offline = False

    def __init__(self, script: list[ScriptItem]) -> None:
        self.script = list(script)
        self.calls: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []

    async def next_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, context: Any = None
    ) -> Turn:
        self.calls.append((copy.deepcopy(messages), copy.deepcopy(tools)))
        if not self.script:
            raise AssertionError(f"the model was asked for turn {len(self.calls)}, beyond the script")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Turn):
            return item
        return await item(messages, tools)


_call_ids = itertools.count(1)


def call(name: str, /, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call-{next(_call_ids)}", name=name, arguments=json.dumps(arguments))


def act(*calls: ToolCall) -> Turn:
    return Turn(content=None, tool_calls=list(calls), prompt_tokens=10, completion_tokens=5)


def answer(text: str) -> Turn:
    return Turn(content=text, prompt_tokens=10, completion_tokens=5)


@dataclass
class RecordingChat:
    """Slack's chat.postMessage / chat.delete, in memory."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        ts = f"1700000000.{len(self.posts) + 1:06d}"
        self.posts.append({"channel": channel, "text": text, "thread_ts": thread_ts, "ts": ts})
        return ts

    async def delete_message(self, *, channel: str, ts: str) -> None:
        self.deleted.append((channel, ts))


@dataclass
class RecordingReporter:
    events: list[tuple[str, int]] = field(default_factory=list)
    steps: list[tuple[int, str | None]] = field(default_factory=list)
    """(run id, action) of every step_started: None while the model thinks."""

    async def step_started(self, run_id: int, *, action: str | None = None) -> None:
        self.steps.append((run_id, action))

    async def run_started(self, run_id: int) -> None:
        self.events.append(("started", run_id))

    async def run_progressed(self, run_id: int) -> None:
        self.events.append(("progressed", run_id))

    async def approval_requested(self, approval_id: int) -> None:
        self.events.append(("approval", approval_id))

    async def run_finished(self, run_id: int) -> None:
        self.events.append(("finished", run_id))


def config_with(
    *, agent: dict[str, Any] | None = None, actions: list[dict[str, Any]] | None = None
) -> Config:
    """One agent "ops" (overridable fields) with the given configured actions."""
    actions = actions or []
    spec: dict[str, Any] = {
        "name": "ops",
        "default": True,
        "actions": ["ticket_create", "ticket_find", "ticket_comment", *(a["name"] for a in actions)],
    }
    spec.update(agent or {})
    return parse_config({"agents": [spec], "actions": actions})


def make_runtime(
    db: Database,
    config: Config,
    planner: Any,
    *,
    chat: RecordingChat | None = None,
    reporter: RecordingReporter | None = None,
    worker_id: str = WORKER,
    lease: timedelta = LEASE,
) -> Runtime:
    return Runtime(
        db=db,
        config=config,
        registry=Registry(config),
        planner_for=lambda _agent: planner,
        chat=chat or RecordingChat(),
        reporter=reporter or RecordingReporter(),
        worker_id=worker_id,
        lease=lease,
    )


_ts = itertools.count(1)


async def queue_run(
    db: Database, *, text: str = "do the thing", agent: str = "ops", thread_ts: str | None = None
) -> int:
    ts = f"1690000000.{next(_ts):06d}"
    request = RequestBase(
        kind="mention",
        team_id="T1",
        channel_id="C1",
        user_id="U1REQ",
        ts=ts,
        thread_ts=thread_ts or ts,
        text=text,
        agent=agent,
    )
    async with db.write() as session:
        created = await create_request(session=session, request=request)
    assert created is not None
    run_id = created[1].id
    assert run_id is not None
    return run_id


async def claimed_run(
    db: Database, *, text: str = "do the thing", agent: str = "ops", worker_id: str = WORKER
) -> int:
    """A queued run, claimed by `worker_id` (as a worker would before running the loop)."""
    run_id = await queue_run(db, text=text, agent=agent)
    async with db.write() as session:
        claimed = await runs.claim_runs(session=session, worker_id=worker_id, limit=100, lease=LEASE)
    assert run_id in claimed
    return run_id
