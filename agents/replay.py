"""Replay: a recorded run's request, again, against the configuration of now, in a dry run.

The recorded run is read from the real database (only read); its request (with the thread as
its run read it) is worked again on a dry desk (agents.dryrun) by the real loop and planner.
A call the recorded run made (the same action with the same arguments) gets the result it got
then; any other call is not run. What comes back is both runs' tool calls and outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.dryrun import DryDesk, Outcome, outcome_of, recorded_script
from agents.errors import ChatopsError
from storage import journal, requests, runs
from storage.engine import Database
from storage.models import Request, RequestBase


class ReplayError(ChatopsError):
    """The run cannot be replayed (there is no such run, or its agent is not configured)."""


@dataclass
class Replay:
    request: Request
    original: Outcome
    new: Outcome


async def replay(db: Database, run_id: int, desk: DryDesk) -> Replay:
    """Replay run `run_id` of `db` on `desk` (whose configuration and planner are today's)."""
    async with db.read() as session:
        run = await runs.get_run(session=session, run_id=run_id)
        request = await requests.get_request(session=session, request_id=run.request_id) if run else None
        steps = await journal.steps_of(session=session, run_id=run_id) if run else []
    if run is None or request is None:
        raise ReplayError(f"there is no run #{run_id} in this database")
    if desk.rt.config.agent(run.agent) is None:
        known = ", ".join(a.name for a in desk.rt.config.agents)
        raise ReplayError(
            f"run #{run_id} is agent {run.agent!r}'s, which this configuration has not ({known})"
        )
    asked = RequestBase.model_validate(request.model_dump(include=set(RequestBase.model_fields)))
    new_id = await desk.queue(asked, script=recorded_script(steps), history=run.history)
    await desk.work(concurrency=1)
    return Replay(request, outcome_of(run, steps), await desk.outcome(new_id))
