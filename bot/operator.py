"""`chatops pause` and `chatops resume`: the operator's emergency stop, from where chatops runs.

They need neither Slack nor a running desk: the database is the desk's state, and every
process reads the pause flags at each run's next step. So the stop works when Slack does not
(and with many workspaces, where no Slack workspace may lift a pause of every workspace, such
as the one an agent sets itself at its daily cost cap). A pause written here is of every
workspace (team ""); a resume lifts only such pauses (a workspace's own pauses are its own),
and puts the runs that waited for it back in the queue, where the workers of every process
find them within CHATOPS_POLL_SECONDS. Both are audited, as the actor "operator".
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from agents import budget
from agents.config import Config
from agents.config_messages import suggest
from bot.controls import more_room
from storage import audit, controls, runs
from storage.controls import ALL, EVERYWHERE
from storage.engine import Database
from storage.models import WaitKind

ACTOR = "operator"


class UnknownAgent(ValueError):
    """The agent named is not in the configuration."""


@dataclass
class Outcome:
    changed: bool
    message: str


def scope_of(config: Config, name: str) -> str:
    """`all` (every agent) or an agent of the configuration; anything else is refused, with the
    closest name."""
    if name.lower() in ("all", "*"):
        return ALL
    if config.agent(name) is None:
        known = [a.name for a in config.agents]
        raise UnknownAgent(f"no agent named {name!r}{suggest(name, known)} (agents: {', '.join(known)})")
    return name


def _who() -> str:
    try:
        return f"from the command line, as {getpass.getuser()}"
    except Exception:  # broad on purpose: no login name (a container) is no reason to refuse a stop
        return "from the command line"


async def pause(db: Database, config: Config, name: str, *, reason: str | None = None) -> Outcome:
    scope = scope_of(config, name)
    what = "All agents are" if scope == ALL else f"Agent {scope} is"
    async with db.write(urgent=True) as session:
        changed = await controls.set_paused(
            session=session, scope=scope, paused=True, by_user=ACTOR, reason=reason, team_id=EVERYWHERE
        )
        if changed:
            detail = _who() + (f": {reason}" if reason else "")
            await audit.record(
                session=session, actor=ACTOR, action="pause", target=_target(scope), detail=detail
            )
    if not changed:
        return Outcome(False, f"{what} already paused in every workspace.")
    undo = "chatops resume " + ("all" if scope == ALL else scope)
    return Outcome(
        True,
        f"{what} paused in every workspace. No new action starts; runs in flight wait at their "
        f"next step and new requests are queued. `{undo}` lifts it.",
    )


async def resume(db: Database, config: Config, name: str) -> Outcome:
    scope = scope_of(config, name)
    async with db.write(urgent=True) as session:
        flags = await controls.all_controls(session=session, team_id=EVERYWHERE)
        paused = {c.scope: c.reason for c in flags if c.paused and c.team_id == EVERYWHERE}
        scopes = list(paused) if scope == ALL else [scope]
        changed = [
            s
            for s in scopes
            if await controls.set_paused(
                session=session, scope=s, paused=False, by_user=ACTOR, team_id=EVERYWHERE
            )
        ]
        room = [
            await more_room(session=session, config=config, agent=s)
            for s in changed
            if paused.get(s) == budget.CAP_REASON
        ]
        requeued = await runs.requeue_waiting(
            session=session, kind=WaitKind.paused, agent=None if scope == ALL else scope
        )
        for s in changed:
            await audit.record(
                session=session, actor=ACTOR, action="resume", target=_target(s), detail=_who()
            )
    what = "All agents" if scope == ALL else f"Agent {scope}"
    if not changed:
        return Outcome(False, f"{what} {'were' if scope == ALL else 'was'} not paused in every workspace.")
    lifted = ", ".join(s if s != ALL else "all agents" for s in changed)
    n = len(requeued)
    text = f"Resumed ({lifted}). {n} waiting run{'s continue' if n != 1 else ' continues'}."
    text += "".join(r.replace("*", "") for r in room)
    return Outcome(True, text)


def _target(scope: str) -> str:
    return "agent:*" if scope == ALL else f"agent:{scope}"
