"""Dry runs: the real loop and planner, with every side effect simulated, on a throwaway database.

`chatops replay` and `chatops eval` work runs through the same `RunLoop`, executor and worker as
production. What differs is kept to two places:

- The executor (`Executor.perform`) asks the runtime's `DryRun` instead of running the action:
  a call the script knows (the same action with the same arguments as a recorded step, or an
  action an eval case gives a result for) gets that result; any other gets `NOT_RUN`. An action
  that would wait for a human's approval does not wait; the call is marked so.
- The database is a new SQLite file in a temporary directory, migrated like any other, and
  deleted afterwards. The loop commits a transaction per step (the fence, the journal, leases),
  so a single rolled-back transaction cannot hold a whole run; a throwaway database keeps the
  real one untouched, whatever the loop writes, on SQLite and PostgreSQL alike. The real
  database is only read (the recorded run), by the caller.

Budgets are left out (a dry run spends no money and has nobody to ask for more), and the
reporter and the chat surface are silent: nothing reaches Slack.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.actions.registry import Registry
from agents.config import AgentConfig, Config
from agents.model import Planner
from agents.redaction import Redactor
from agents.runtime import Runtime
from agents.worker import Worker
from storage import journal, requests, runs
from storage.engine import Database
from storage.models import RequestBase, Run, Step, StepKind, StepStatus

NOT_RUN = "not run (dry run)"
"""What the model reads for a call nothing recorded: it was not run, and it says so."""
WORKER = "dry-run"
RUN_SECONDS = 900.0  # the most a dry run waits for its runs (a slow model's many turns)


@dataclass
class Answer:
    """What a simulated call returns."""

    output: str
    """What the model reads."""
    failed: bool = False
    summary: str = ""
    source: str = "recorded"
    """Where it comes from: "recorded" (a step of the run replayed), "given" (an eval case's
    result), or NOT_RUN."""


@dataclass
class Script:
    """The answers one run's calls get: recorded steps first (each answers one call), then an
    action's fixed result."""

    recorded: list[tuple[str, str, Answer]] = field(default_factory=list)
    """(action, its arguments as canonical JSON, answer), in the order they were made."""
    fixed: dict[str, str] = field(default_factory=dict)
    """Action name -> the output any call of it gets."""

    def answer(self, action: str, arguments: dict[str, Any]) -> Answer:
        key = _canonical(arguments)
        for i, (name, args, answer) in enumerate(self.recorded):
            if name == action and args == key:
                del self.recorded[i]  # a recorded call answers once; a repeat is a new call
                return answer
        if action in self.fixed:
            return Answer(self.fixed[action], summary=self.fixed[action], source="given")
        return Answer(NOT_RUN, summary=NOT_RUN, source=NOT_RUN)


class DryRun:
    """The runtime's answer to "run this action" during a dry run (`Runtime.dry_run`)."""

    def __init__(self) -> None:
        self.scripts: dict[int, Script] = {}

    def answer(self, run_id: int, action: str, arguments: dict[str, Any]) -> Answer:
        return self.scripts.setdefault(run_id, Script()).answer(action, arguments)


def recorded_script(steps: list[Step]) -> Script:
    """What the recorded run's action steps answered, to be answered again to the same calls.
    Steps that never ran (refused, rejected, only proposed) are not results of anything."""
    script = Script()
    for s in steps:
        if s.kind != StepKind.action or s.status not in _RAN:
            continue
        answer = Answer(
            s.output or "",
            failed=s.status == StepStatus.failed,
            summary=str((s.data or {}).get("summary") or s.name),
        )
        script.recorded.append((s.name, _canonical(s.arguments or {}), answer))
    return script


_RAN = (StepStatus.succeeded, StepStatus.failed, StepStatus.compensated)


@dataclass
class Call:
    """One tool call of a run, as a side-by-side listing shows it."""

    action: str
    arguments: dict[str, Any]
    status: str
    """The step's status: succeeded, failed, rejected, proposed, compensated."""
    result: str
    """One line: what it did (or would have), or why it did not run."""
    note: str = ""
    """In a dry run: "recorded", "given", "not run (dry run)"; and "needs approval" when a
    person would have had to approve it first."""


@dataclass
class Outcome:
    """How a run (recorded or dry) went: its calls, its answer, its end."""

    run_id: int
    agent: str
    planner: str
    status: str
    calls: list[Call]
    answer: str
    error: str
    tokens: int
    wait_reason: str = ""


def outcome_of(run: Run, steps: list[Step]) -> Outcome:
    """The run's tool calls (action steps, in order) and how it ended."""
    calls = []
    for s in steps:
        if s.kind != StepKind.action:
            continue
        data = s.data or {}
        note = str(data.get("dry_run") or "")
        if data.get("needs_approval"):
            note = f"{note}; needs approval" if note else "needs approval"
        result = str(data.get("summary") or s.error or s.output or "").splitlines()
        calls.append(Call(s.name, dict(s.arguments or {}), s.status, result[0] if result else "", note))
    return Outcome(
        run_id=run.id or 0,
        agent=run.agent,
        planner=run.planner or "",
        status=run.status,
        calls=calls,
        answer=(run.outcome or "").strip(),
        error=(run.error or "").strip(),
        tokens=run.prompt_tokens + run.completion_tokens,
        wait_reason=run.wait_reason or "",
    )


def without_budgets(config: Config, model: str | None = None) -> Config:
    """The configuration a dry run works with: no budgets (nothing is spent, nobody is asked
    for more), and every agent on `model` when one is given (`--model`)."""
    changes: dict[str, Any] = {"max_tokens_per_run": None, "max_cost_per_day": None}
    if model:
        changes["model"] = model
    agents = [a.model_copy(update=changes) for a in config.agents]
    return config.model_copy(update={"agents": agents})


class DryDesk:
    """A throwaway database and a runtime around it, where runs are worked for real by the
    loop and nothing they call happens."""

    def __init__(self, rt: Runtime, dry: DryRun) -> None:
        self.rt = rt
        self.dry = dry
        self._n = 0

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, planner_for: Callable[[AgentConfig], Planner], redactor: Redactor
    ) -> AsyncIterator[DryDesk]:
        """A dry desk on a new database in a temporary directory, removed on leaving."""
        with tempfile.TemporaryDirectory(prefix="chatops-dry-run-") as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'dry-run.db'}")
            try:
                await db.migrate()
                dry = DryRun()
                rt = Runtime(
                    db=db,
                    config=config,
                    registry=Registry(config),
                    planner_for=planner_for,
                    chat=_NoChat(),
                    reporter=_Quiet(),
                    worker_id=WORKER,
                    redactor=redactor,
                    dry_run=dry,
                )
                yield cls(rt, dry)
            finally:
                await db.dispose()

    async def queue(
        self, request: RequestBase, *, script: Script | None = None, history: dict[str, Any] | None = None
    ) -> int:
        """Store a request and queue its run; `history`: the thread as the recorded run read it."""
        self._n += 1
        stored = request.model_copy(update={"ts": f"1.{self._n:06d}", "thread_ts": f"1.{self._n:06d}"})
        async with self.rt.db.write() as session:
            created = await requests.create_request(session=session, request=stored)
            assert created is not None and created[1].id is not None
            run_id = created[1].id
            if history is not None:
                await runs.set_history(session=session, run_id=run_id, history=history)
        self.dry.scripts[run_id] = script or Script()
        return run_id

    async def work(self, *, concurrency: int = 4) -> None:
        """Work every queued run until each has ended or waits (for a model that cannot be
        reached, say)."""
        await Worker(self.rt, concurrency=concurrency, poll_interval=0.05).run_until_idle(RUN_SECONDS)

    async def outcome(self, run_id: int) -> Outcome:
        async with self.rt.db.read() as session:
            run = await runs.get_run(session=session, run_id=run_id)
            steps = await journal.steps_of(session=session, run_id=run_id)
        assert run is not None
        return outcome_of(run, steps)


def _canonical(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)


class _NoChat:
    """Slack actions are simulated in a dry run; this is never reached, and refuses if it is."""

    async def post_text(self, *, channel: str, text: str, thread_ts: str | None = None) -> str:
        raise RuntimeError("a dry run posts nothing")

    async def delete_message(self, *, channel: str, ts: str) -> None:
        raise RuntimeError("a dry run deletes nothing")


class _Quiet:
    """A dry run's progress goes nowhere: the caller prints the outcome."""

    async def run_started(self, run_id: int) -> None: ...
    async def run_progressed(self, run_id: int) -> None: ...
    async def step_started(self, run_id: int, *, action: str | None = None) -> None: ...
    async def approval_requested(self, approval_id: int) -> None: ...
    async def run_finished(self, run_id: int) -> None: ...
