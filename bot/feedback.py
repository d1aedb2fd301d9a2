"""Votes on outcomes: the Good and Bad buttons (Slack's feedback_buttons) under a run's outcome.

A vote is a control of sorts: it counts only from the run's own message (`bot.places`: the
clicked message must be the run's outcome in that workspace's channel), so only people who
see the run's thread can vote, customers included; a number typed elsewhere reaches nothing.
One vote per person and run: a second click changes it. Every vote and change is audited; the
daily summary shows them per agent, and a burst of Bad votes is an alert (bot.watchdog).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot import places
from bot.authority import not_here
from bot.control_messages import Reply
from bot.places import Where
from storage import audit, feedback
from storage.engine import Database
from storage.models import Vote

log = logging.getLogger(__name__)

SHOWN = {Vote.good: ":+1:", Vote.bad: ":-1:"}


def parse(value: str) -> tuple[Vote, int] | None:
    """A feedback button's value ("good:12", "bad:12") as (vote, run id); None if it is not one."""
    kind, _, number = value.partition(":")
    if kind not in (Vote.good, Vote.bad) or not number.isdigit():
        return None
    return Vote(kind), int(number)


class Votes:
    def __init__(self, db: Database, owner: Callable[[str], str] | None = None) -> None:
        self.db = db
        self.owner = owner or (lambda _: "")
        """The workspace a vote's audit row is kept under (`Surfaces.owner`)."""

    async def vote(self, user_id: str, value: str, *, where: Where) -> Reply:
        """Record a click on a feedback button of the message `where` names; only the voter sees
        the answer."""
        parsed = parse(value)
        if parsed is None:
            return Reply("That button does nothing any more.", private=True)
        vote, run_id = parsed
        await places.until_posted(self.db, lambda session: places.run_posting(session, run_id))
        async with self.db.write() as session:
            run = await places.run_here(session, run_id, user_id, where)
            if run is None:
                why = places.why_not_here(where)
                team = self.owner(where.team_id)
                return await not_here(session, user_id, "feedback", "run", run_id, why, team_id=team)
            before = await feedback.record_vote(
                session=session, run_id=run_id, user_id=user_id, team_id=where.team_id, vote=vote
            )
            if before != vote:
                await audit.record(
                    session=session,
                    team_id=self.owner(where.team_id),
                    actor=user_id,
                    action="feedback",
                    target=f"run:{run_id}",
                    detail=vote if before is None else f"{before} -> {vote}",
                )
        log.info("feedback %s on run #%s from %s (was %s)", vote, run_id, user_id, before)
        if before == vote:
            return Reply(f"Your {SHOWN[vote]} on run #{run_id} was already noted.", private=True)
        if before is not None:
            return Reply(f"Changed your vote on run #{run_id} to {SHOWN[vote]}.", private=True)
        return Reply(f"Thanks: your {SHOWN[vote]} on run #{run_id} is noted.", private=True)
