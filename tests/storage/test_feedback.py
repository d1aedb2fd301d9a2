"""Votes on outcomes: one per person and run (a second vote replaces the first), counted by the
agent of the run voted on within a window of time."""

from __future__ import annotations

from datetime import timedelta

from storage_rows import Clock, new_run

from storage import assistant_threads, feedback
from storage.clock import set_clock
from storage.engine import Database
from storage.models import Vote


async def test_a_vote_is_one_per_person_and_run_and_a_second_one_replaces_it(db: Database) -> None:
    run_id = await new_run(db)
    async with db.write() as session:
        assert (
            await feedback.record_vote(
                session=session, run_id=run_id, user_id="U1", team_id="T1", vote=Vote.good
            )
            is None
        )
    async with db.write() as session:
        assert (
            await feedback.record_vote(
                session=session, run_id=run_id, user_id="U1", team_id="T1", vote=Vote.bad
            )
            == "good"
        )
        assert (
            await feedback.record_vote(
                session=session, run_id=run_id, user_id="U2", team_id="T1", vote=Vote.bad
            )
            is None
        )
    async with db.read() as session:
        assert await feedback.votes_of(session=session, run_id=run_id) == {"good": 0, "bad": 2}


async def test_votes_are_counted_by_agent_in_their_window(db: Database) -> None:
    clock = Clock()
    set_clock(clock)
    first, second = await new_run(db), await new_run(db)
    start = clock.at
    async with db.write() as session:
        await feedback.record_vote(session=session, run_id=first, user_id="U1", team_id="T1", vote=Vote.good)
    clock.advance(hours=2)
    async with db.write() as session:
        await feedback.record_vote(session=session, run_id=second, user_id="U1", team_id="T1", vote=Vote.bad)
        # Changing a vote moves it to now: it counts where it was last cast.
        await feedback.record_vote(session=session, run_id=first, user_id="U1", team_id="T1", vote=Vote.bad)
    async with db.read() as session:
        assert (
            await feedback.votes_by_agent(session=session, start=start, end=start + timedelta(hours=1)) == {}
        )
        assert await feedback.votes_by_agent(session=session, start=start + timedelta(hours=1)) == {
            "ops": {"good": 0, "bad": 2}
        }


async def test_an_assistant_threads_context_is_kept_and_the_latest_wins(db: Database) -> None:
    async with db.write() as session:
        await assistant_threads.remember_context(
            session=session, channel_id="D1", thread_ts="1.1", context={"channel_id": "C1"}, user_id="U1"
        )
        await assistant_threads.remember_context(
            session=session, channel_id="D1", thread_ts="1.1", context={"channel_id": "C2"}
        )
    async with db.read() as session:
        assert await assistant_threads.context_of(session=session, channel_id="D1", thread_ts="1.1") == {
            "channel_id": "C2"
        }
        assert await assistant_threads.context_of(session=session, channel_id="D1", thread_ts="2.2") is None
