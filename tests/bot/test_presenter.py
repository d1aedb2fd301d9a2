"""The presenter against a real SQLite file and the loopback fake Slack Web API.

Edits of a status message are spaced by `edit_interval` whoever asks for them, a burst of
announcements keeps at most two in flight, and a finished run is shown in the background (the
worker does not wait for an edit to be allowed), loaded once.
Timings are checked as lower bounds only: a busy machine makes everything slower, never faster.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fakes import FakeSlack
from fakes.loopback import Reply
from storage_rows import new_run

from bot.presenter import Presenter
from bot.run_view import RunView
from bot.surface import SlackSurface, make_client
from storage import journal, runs
from storage.engine import Database
from storage.models import Run, RunStatus, StepKind, StepStatus

EDIT_INTERVAL = 0.3
EARLY = 0.002
"""How much earlier than asked asyncio may wake a sleeper (a clock tick); not a timing bound."""
WORKER = "w1"
LEASE = timedelta(seconds=30)
DONE = 60.0
"""Generous: how long the presenter may take to settle on a loaded machine."""


class TimedSlack(FakeSlack):
    """The fake Web API, also noting when each call arrived and how many were in flight."""

    def __init__(self, *, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        """Seconds to hold every call before answering it."""
        self.arrivals: list[tuple[str, float]] = []
        """(method, time.monotonic() on arrival), in arrival order."""
        self.in_flight = 0
        self.most_in_flight = 0

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        api = urlsplit(path).path.rsplit("/", 1)[-1]
        with self.lock:
            self.arrivals.append((api, time.monotonic()))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return super().handle(method, path, headers, raw)
        finally:
            with self.lock:
                self.in_flight -= 1

    def arrived(self, api: str) -> list[float]:
        with self.lock:
            return [t for method, t in self.arrivals if method == api]


@pytest.fixture
def slack() -> Iterator[TimedSlack]:
    with TimedSlack() as fake:
        yield fake


def presenter_for(db: Database, slack: FakeSlack, *, edit_interval: float = EDIT_INTERVAL) -> Presenter:
    surface = SlackSurface(make_client("xoxb-test", slack.url))
    return Presenter(db, surface, edit_interval=edit_interval)


async def start(db: Database) -> None:
    """A worker takes the queued runs."""
    async with db.write() as session:
        await runs.claim_runs(session=session, worker_id=WORKER, limit=100, lease=LEASE)


async def act(db: Database, run_id: int, summary: str) -> None:
    """The run journals a successful action."""
    async with db.write() as session:
        await journal.record_step(
            session=session,
            run_id=run_id,
            worker_id=WORKER,
            lease=LEASE,
            kind=StepKind.action,
            name="create_ticket",
            status=StepStatus.succeeded,
            data={"summary": summary},
        )


async def succeed(db: Database, run_id: int, outcome: str) -> None:
    async with db.write() as session:
        await runs.release(
            session=session, run_id=run_id, worker_id=WORKER, status=RunStatus.succeeded, outcome=outcome
        )


async def stored(db: Database, run_id: int) -> Run:
    async with db.read() as session:
        run = await runs.get_run(session=session, run_id=run_id)
    assert run is not None
    return run


def count_loads(presenter: Presenter, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The run ids `presenter._load` is called with, from now on."""
    loads: list[int] = []
    load = presenter._load

    async def counted(run_id: int) -> RunView | None:
        loads.append(run_id)
        return await load(run_id)

    monkeypatch.setattr(presenter, "_load", counted)
    return loads


async def test_status_edits_are_spaced_by_the_edit_interval_whoever_asks(
    db: Database, slack: TimedSlack
) -> None:
    presenter = presenter_for(db, slack)
    run_id = await new_run(db)
    await start(db)

    presenter.announce(run_id)
    await act(db, run_id, "created ticket #1")
    await presenter.run_progressed(run_id)  # while the announcement is still posting
    for n in range(2, 6):
        await asyncio.sleep(0.1)  # progress comes faster than the interval
        await act(db, run_id, f"created ticket #{n}")
        await presenter.run_progressed(run_id)
    await succeed(db, run_id, "All five tickets are created.")
    await presenter.run_finished(run_id)  # right after a progress whose edit is pending
    await asyncio.wait_for(presenter.drain(), DONE)

    status_posted, outcome_posted = slack.arrived("chat.postMessage")
    edits = slack.arrived("chat.update")
    assert edits, "the status message was never edited"
    shown = [status_posted, *edits]
    gaps = [later - earlier for earlier, later in itertools.pairwise(shown)]
    assert min(gaps) >= EDIT_INTERVAL - EARLY, f"edits {gaps} s apart"
    assert outcome_posted >= edits[-1]  # the final state first, then the outcome

    status, outcome = slack.posts()
    assert status.ts == (await stored(db, run_id)).status_ts
    assert status.text.startswith(f":white_check_mark: Run #{run_id} (ops) finished.")
    assert all(f"created ticket #{n}" in status.text for n in range(1, 6))
    assert "All five tickets are created." in outcome.text
    assert "created ticket #5" in outcome.text
    assert outcome.thread_ts == status.thread_ts


async def test_run_started_does_not_hold_the_worker_until_an_edit_is_allowed(
    db: Database, slack: TimedSlack
) -> None:
    presenter = presenter_for(db, slack)
    run_id = await new_run(db)
    presenter.announce(run_id)
    await asyncio.wait_for(presenter.drain(), DONE)
    await start(db)

    await presenter.run_started(run_id)  # right after the announcement posted

    assert not slack.calls_to("chat.update")  # the edit is left for later...
    assert run_id in presenter._pending
    await asyncio.wait_for(presenter.drain(), DONE)
    (posted,) = slack.arrived("chat.postMessage")
    (edited,) = slack.arrived("chat.update")  # ...and made once it is allowed
    assert edited - posted >= EDIT_INTERVAL - EARLY
    (status,) = slack.posts()
    assert status.text.startswith(":gear: *ops* is working on this")


async def test_a_burst_of_announcements_keeps_two_in_flight_and_posts_every_status(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TimedSlack(delay=0.02) as slack:  # slow answers: without a bound, the calls would pile up
        presenter = presenter_for(db, slack)
        run_ids = [await new_run(db) for _ in range(20)]
        in_flight, most = 0, 0
        refresh = presenter._refresh

        async def counted(run_id: int, **options: Any) -> RunView | None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await refresh(run_id, **options)
            finally:
                in_flight -= 1

        monkeypatch.setattr(presenter, "_refresh", counted)
        for run_id in run_ids:
            presenter.announce(run_id)
        assert len(presenter._background) == 20  # every one is tracked, so drain() waits for it
        await asyncio.wait_for(presenter.drain(), DONE)

        assert most == 2
        assert slack.most_in_flight <= 2
        posts = {m.ts: m for m in slack.posts()}
        assert len(posts) == 20
        for run_id in run_ids:
            run = await stored(db, run_id)
            assert run.status_ts in posts
            assert posts[run.status_ts].thread_ts == run.thread_ts
            assert posts[run.status_ts].text.startswith(":hourglass_flowing_sand: *ops* took this")


async def test_a_late_announcement_leaves_a_finished_run_alone(db: Database, slack: TimedSlack) -> None:
    presenter = presenter_for(db, slack)
    run_id = await new_run(db)
    await start(db)
    await presenter.run_started(run_id)
    await act(db, run_id, "created ticket #1")
    await succeed(db, run_id, "Done.")
    await presenter.run_finished(run_id)
    await asyncio.wait_for(presenter.drain(), DONE)
    calls = len(slack.calls)

    presenter.announce(run_id)  # its turn came after the run was finished and forgotten
    await asyncio.wait_for(presenter.drain(), DONE)

    assert slack.calls_to("chat.update")  # the final state was shown by run_finished...
    assert len(slack.calls) == calls  # ...and the announcement neither edits nor posts again


async def test_run_finished_returns_at_once_then_loads_the_run_once_and_delivers_the_outcome_once(
    db: Database, slack: TimedSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    presenter = presenter_for(db, slack)
    run_id = await new_run(db)
    await start(db)
    await presenter.run_started(run_id)
    await act(db, run_id, "created ticket #7")
    await succeed(db, run_id, "Ticket #7 is created.")
    loads = count_loads(presenter, monkeypatch)

    await presenter.run_finished(run_id)
    assert loads == [] and len(slack.posts()) == 1  # the worker goes on; showing it is background work

    await asyncio.wait_for(presenter.drain(), DONE)
    assert loads == [run_id]  # loaded after waiting for its edit, and that view made the outcome
    status, outcome = slack.posts()
    assert status.text.startswith(f":white_check_mark: Run #{run_id} (ops) finished.")
    assert "Ticket #7 is created." in outcome.text and "created ticket #7" in outcome.text
    run = await stored(db, run_id)
    assert (run.status_ts, run.outcome_ts) == (status.ts, outcome.ts)
    assert slack.reactions_on("C1", run.thread_ts) == ["eyes", "white_check_mark"]

    assert await presenter.redeliver() == 0
    await presenter.run_finished(run_id)  # told twice: still one outcome
    await asyncio.wait_for(presenter.drain(), DONE)
    assert len(slack.posts()) == 2


async def test_run_finished_delivers_the_outcome_when_another_process_is_posting_the_status(
    db: Database, slack: TimedSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    presenter = presenter_for(db, slack)
    run_id = await new_run(db)
    await start(db)
    async with db.write() as session:  # another process claimed the status message
        assert await runs.claim_message(session=session, run_id=run_id, field="status_ts")
    await succeed(db, run_id, "Done.")
    loads = count_loads(presenter, monkeypatch)

    await presenter.run_finished(run_id)
    await asyncio.wait_for(presenter.drain(), DONE)

    assert loads == [run_id, run_id]  # loaded afresh for the outcome: the thread may have moved
    (outcome,) = slack.posts()
    assert "Done." in outcome.text
    assert (await stored(db, run_id)).outcome_ts == outcome.ts


async def test_run_finished_still_delivers_the_outcome_when_the_status_edit_fails(
    db: Database, slack: TimedSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    presenter = presenter_for(db, slack)
    run_id = await new_run(db)
    await start(db)
    await presenter.run_started(run_id)
    status_ts = (await stored(db, run_id)).status_ts
    assert status_ts is not None
    slack.delete_by_hand(status_ts)  # chat.update answers message_not_found
    await succeed(db, run_id, "Done.")
    loads = count_loads(presenter, monkeypatch)

    await presenter.run_finished(run_id)
    await asyncio.wait_for(presenter.drain(), DONE)

    assert loads == [run_id, run_id]
    assert slack.calls_to("chat.update", ok=False)
    _, outcome = slack.posts()
    assert "Done." in outcome.text and outcome.thread_ts == (await stored(db, run_id)).thread_ts


async def test_redeliver_shows_a_run_that_finished_unreported(db: Database, slack: TimedSlack) -> None:
    run_id = await new_run(db)
    await start(db)
    await act(db, run_id, "created ticket #3")
    await succeed(db, run_id, "Ticket #3 is created.")
    presenter = presenter_for(db, slack)  # e.g. after a restart

    assert await presenter.redeliver() == 1

    status, outcome = slack.posts()
    assert status.text.startswith(f":white_check_mark: Run #{run_id} (ops) finished.")
    assert "Ticket #3 is created." in outcome.text
    run = await stored(db, run_id)
    assert (run.status_ts, run.outcome_ts) == (status.ts, outcome.ts)
    assert await presenter.redeliver() == 0
