"""Presenting runs in their Slack thread: one status message, edited; the thread's loading
status while a step runs (bot.loading); one outcome reply, its answer streamed (bot.outcome).

The presenter implements `agents.ports.Reporter`. It renders from storage, never
from what it was told (only the loading status takes the step it is told of), so any
process can refresh any run and the message always shows the journal. A status message
is never edited within `edit_interval` of its post or previous edit, whoever asks (Slack
allows about one edit per second in a thread); the edits in between are coalesced. The
outcome is always delivered (a failed post is retried by `redeliver`). At most two
announcements are in flight, so a burst of requests does not crowd the event loop the
acks run on.

In `chatops serve` the runs have a thread and event loop of their own (bot.background):
the intake's and the controls' presenter forwards what they tell it to the runs' presenter
(`forward_to`), so one presenter, on one loop, shows each run and paces its edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TypeVar

from bot import outcome
from bot.approval_messages import ApprovalMessages, is_ts
from bot.loading import REFRESH, LoadingStatus, Where
from bot.render import Message, escape, render
from bot.run_view import FINAL_REACTION, RunView, final_reaction, loading_status, run_link
from bot.surface import OneSurface, Surface, Surfaces
from storage import approvals, controls, journal, runs, steering
from storage.engine import Database
from storage.models import Request, Run, RunStatus, WaitKind
from storage.runs import PENDING

log = logging.getLogger(__name__)

T = TypeVar("T")
ANNOUNCING = 2
"""Announcements in flight at once; the others wait their turn as idle coroutines."""


def _opener(view: RunView) -> str:
    """The message a run's own thread starts with."""
    request, parent = view.request, view.parent
    if request.kind == "handoff" and parent is not None:
        origin = run_link(parent, "its thread")
        return (
            f":arrow_right: *{parent.agent}* handed this to *{view.run.agent}* "
            f"(case #{view.run.case}, run #{parent.id}, {origin}):\n>"
            + escape(request.text).replace("\n", "\n>")
        )
    return f"<@{request.user_id}> asked via `/agent`: {escape(request.text)}"


class Presenter:
    def __init__(
        self,
        db: Database,
        surface: Surface,
        *,
        edit_interval: float = 1.0,
        loading: bool = True,
        loading_refresh: float = REFRESH,
        stream_answers: bool = True,
        surfaces: Surfaces | None = None,
    ) -> None:
        self.db = db
        self.surface = surface
        self.surfaces = surfaces or OneSurface(surface)
        """Each run is shown through the surface of its own workspace (`for_team(run.team_id)`)."""
        self.edit_interval = edit_interval
        self._teams: dict[int, str] = {}  # the workspace of each run shown (its loading status's)
        self.loading = LoadingStatus(
            surface, self._thread_of, refresh=loading_refresh, enabled=loading, surface_of=self._surface_of
        )
        """The thread's loading status while a step runs (bot.loading)."""
        self.stream_answers = stream_answers
        """Stream a language model's answer into the outcome (bot.outcome)."""
        self._customer: dict[int, bool] = {}  # runs shown in a customer's thread
        self._last_edit: dict[int, float] = {}
        self._last_text: dict[int, str] = {}
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._nudges: dict[int, asyncio.Event] = {}  # progress while a refresh waits out the pace
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._background: set[asyncio.Task[None]] = set()
        self._announcing = asyncio.Semaphore(ANNOUNCING)
        self.approvals = ApprovalMessages(db, surface, surfaces=self.surfaces)
        self._stale: set[int] = set()  # runs whose last status edit Slack refused
        self._forward: tuple[Presenter, asyncio.AbstractEventLoop] | None = None

    def forward_to(self, presenter: Presenter, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, what the intake and the controls tell this presenter (a run queued,
        steered, progressed or finished; an approval decided) is done by `presenter`, on
        `loop` (another thread's): it alone edits the runs' status messages."""
        self._forward = (presenter, loop)

    def _soon_there(self, call: Callable[[], None]) -> None:
        assert self._forward is not None
        with contextlib.suppress(RuntimeError):  # its loop has closed: the process is stopping
            self._forward[1].call_soon_threadsafe(call)

    async def _there(self, work: Coroutine[object, object, None]) -> None:
        assert self._forward is not None
        try:
            future = asyncio.run_coroutine_threadsafe(work, self._forward[1])
        except RuntimeError:  # its loop has closed: the process is stopping (the sweep redelivers)
            work.close()
            return
        await asyncio.wrap_future(future)

    # Reporter -----------------------------------------------------------------

    async def run_started(self, run_id: int) -> None:
        """Post the status message (and a slash command's thread) now; edit an existing one
        when an edit is allowed, without holding up the worker until then."""
        if await self._safely(self._refresh(run_id, only_open=True)) is None:
            await self.run_progressed(run_id)

    async def step_started(self, run_id: int, *, action: str | None = None) -> None:
        """The thread's loading status says what the step does, soon (the worker goes on)."""
        try:
            status = loading_status(action, customer=self._customer.get(run_id, True))
            self.loading.show(run_id, status)
        except Exception:  # broad on purpose: presenting never breaks the runtime
            log.exception("showing the step of run #%s failed", run_id)

    async def run_progressed(self, run_id: int) -> None:
        if self._forward is not None:
            return await self._there(self._forward[0].run_progressed(run_id))
        if run_id in self._pending:
            nudge = self._nudges.get(run_id)
            if nudge is not None:
                nudge.set()  # it waits out the pace: the run may have stopped to wait
            return  # a refresh is already scheduled; it will render the latest state
        last = self._last_edit.get(run_id, 0.0)
        wait = last + self.edit_interval - time.monotonic()
        paced = last + self._progress_interval() - time.monotonic()
        self._pending[run_id] = asyncio.create_task(
            self._delayed_refresh(run_id, max(wait, 0.0), max(paced, 0.0))
        )

    def _progress_interval(self) -> float:
        """How long a progress edit of a running run waits after the last post or edit:
        `edit_interval`, and while the loading status shows what the run does, no less than its
        pace (a second), so that a run of quick steps is not edited, and its status set, per
        step. A run that stops to wait (its loading status cleared) and the final edit wait
        only `edit_interval`."""
        if self.loading.enabled:
            return max(self.edit_interval, self.loading.pace)
        return self.edit_interval

    async def run_finished(self, run_id: int) -> None:
        """Show the final state, then the outcome reply, without holding up the worker.

        The final edit waits until an edit is allowed (see `_refresh`), so both are made in
        the background; the outcome always comes after the status message in the thread.
        `redeliver` delivers any outcome this process did not get to.
        """
        if self._forward is not None:
            return await self._there(self._forward[0].run_finished(run_id))
        pending = self._pending.pop(run_id, None)
        if pending is not None:
            pending.cancel()  # still sleeping: the final refresh renders the final state
        self._spawn(self._finish(run_id))

    async def _finish(self, run_id: int) -> None:
        try:
            view = await self._safely(self._refresh(run_id))
            showing = await self.loading.replied(run_id)
            posted = await self._safely(self._deliver_outcome(run_id, view))
            if showing is not None and not posted:  # no reply cleared the loading status
                await self._safely(
                    self._surface_of(run_id).set_status(channel=showing[0], thread_ts=showing[1], status="")
                )
        finally:
            self._forget(run_id)

    # Intake -------------------------------------------------------------------

    def announce(self, run_id: int) -> None:
        """Post the run's first message soon, without holding up the caller (the ack)."""
        if self._forward is not None:
            return self._soon_there(partial(self._forward[0].announce, run_id))
        self._spawn(self._announce(run_id))

    def steered(self, run_id: int, *, channel: str, ts: str, team_id: str = "") -> None:
        """A reply steers the run: 👀 on it, and the status message says it was received."""
        if self._forward is not None:
            there = partial(self._forward[0].steered, run_id, channel=channel, ts=ts, team_id=team_id)
            return self._soon_there(there)
        self._spawn(self._steered(run_id, channel, ts, team_id))

    async def _steered(self, run_id: int, channel: str, ts: str, team_id: str) -> None:
        try:
            await self.surfaces.for_team(team_id).react(channel=channel, ts=ts, name="eyes")
        except Exception as e:  # broad on purpose: a reaction is decoration
            log.warning("reaction on a reply steering run #%s failed: %s", run_id, e)
        await self.run_progressed(run_id)

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def redeliver(self) -> int:
        """Deliver outcomes that could not be posted before; returns how many were tried."""
        async with self.db.read() as session:
            ids = await runs.finished_without_outcome(session=session)
            approval_ids = await approvals.unposted_approvals(session=session)
        for run_id in ids:
            view = await self._safely(self._refresh(run_id))
            await self._safely(self._deliver_outcome(run_id, view))
        for approval_id in approval_ids:
            await self._safely(self.approvals.post(approval_id))
        stale = list(self._stale)
        for run_id in stale:
            await self._safely(self._refresh(run_id))
        return len(ids) + len(approval_ids) + len(stale)

    async def drain(self) -> None:
        """Wait for scheduled refreshes, announcements and loading statuses (console exit, tests);
        loading statuses are not refreshed after."""
        while self._pending or self._background:
            await asyncio.gather(*self._pending.values(), *self._background, return_exceptions=True)
        await self.loading.idle()
        self.loading.close()

    # Internals ----------------------------------------------------------------

    async def _announce(self, run_id: int) -> None:
        async with self._announcing:
            await self._safely(self._refresh(run_id, only_open=True))

    async def _delayed_refresh(self, run_id: int, delay: float, paced: float) -> None:
        """Refresh after `delay`, or after `paced` if the run is still running then."""
        try:
            await asyncio.sleep(delay)
            until = time.monotonic() + paced - delay
            while until > time.monotonic() and await self._running(run_id):
                nudge = self._nudges[run_id] = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), until - time.monotonic())
            self._nudges.pop(run_id, None)
            self._pending.pop(run_id, None)
            await self._safely(self._refresh(run_id))
        finally:
            if self._pending.get(run_id) is asyncio.current_task():  # cancelled while it slept
                self._pending.pop(run_id, None)
                self._nudges.pop(run_id, None)

    async def _running(self, run_id: int) -> bool:
        async with self.db.read() as session:
            return await runs.status_of(session=session, run_id=run_id) == RunStatus.running

    async def _load(self, run_id: int) -> RunView | None:
        async with self.db.read() as session:
            found = await runs.run_and_request(session=session, run_id=run_id, history=False)
            if found is None:
                return None
            run, request, steers = found
            steps = await journal.steps_of(session=session, run_id=run_id)
            steered = await steering.of_run(session=session, run_id=run_id) if steers else []
            pause, behind = None, None
            if run.status == RunStatus.queued:
                pause = await controls.paused_scope(session=session, agent=run.agent, team_id=run.team_id)
                behind = await runs.run_ahead(session=session, run=run)
            child = parent = None
            if run.wait_kind == WaitKind.handoff and (run.wait_on or "").isdigit():
                child = await runs.run_without_history(session=session, run_id=int(run.wait_on or 0))
            if run.parent_id is not None:
                parent = await runs.run_without_history(session=session, run_id=run.parent_id)
        paused_by = None if pause is None else ("all agents are" if pause.scope == "*" else f"{run.agent} is")
        self._teams[run_id] = run.team_id
        return RunView(run, request, steps, paused_by, behind, steered, child, parent)

    def _status_message(self, view: RunView) -> Message:
        text = "\n".join([view.header(), *view.lines(), f"_{view.footer()}_"])
        return render(
            "status.json.j2",
            text=text,
            header=view.header(),
            lines=view.lines(),
            footer=view.footer(),
            run=view.run,
            pausable=view.active and view.run.status != RunStatus.waiting,
        )

    async def _refresh(self, run_id: int, *, only_open: bool = False) -> RunView | None:
        """Post or edit the run's status message; returns the view it showed, or None.

        Under the run's lock, it first waits out what is left of `edit_interval` since the
        message was last posted or edited: every path (progress, finish, announcement) goes
        through here, so no message is edited twice within the interval. It loads after
        the wait, so the edit shows the latest state, and the view it returns is current.
        None: no such run, or another process is posting the status message (and, for a
        slash command, may be moving the run to a new thread). Raises if Slack refuses.
        `only_open`: post the message if it does not exist yet, never edit it nor wait;
        returns None when it did not post (an announcement may come after the run has
        finished and been forgotten; a worker starting the run must not wait to edit).
        """
        async with self._locks[run_id]:
            if only_open and run_id in self._last_edit:
                return None  # this process already showed it
            last = self._last_edit.get(run_id)
            if last is not None:
                wait = last + self.edit_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            view = await self._load(run_id)
            if view is None:
                return None
            run = view.run
            self._customer[run_id] = view.customer
            if is_ts(run.thread_ts):
                self.loading.seen(run_id, (run.channel_id, run.thread_ts))
            if run.status == RunStatus.waiting and run.wait_kind == WaitKind.handoff:
                self.loading.hold(run_id)  # the handoff is its step: its status stays, unsent again
            elif run.status in (RunStatus.queued, RunStatus.waiting):
                self.loading.clear(run_id)  # it stopped to wait: nothing is loading
            if run.status_ts == PENDING:
                return None  # another process is posting the first message
            if run.status_ts is None:
                if not await self._open(view):
                    return None
            elif only_open:
                return None
            else:
                message = self._status_message(view)
                if self._last_text.get(run_id) == message.text:
                    return view
                try:
                    await self.surfaces.for_team(run.team_id).update(
                        channel=run.channel_id,
                        ts=run.status_ts,
                        text=message.text,
                        blocks=message.blocks,
                        best_effort=True,  # a refused edit is made again by redeliver()
                    )
                except BaseException:
                    self._stale.add(run_id)  # redeliver() edits it again later
                    raise
                self._last_text[run_id] = message.text
                self._stale.discard(run_id)
            self._last_edit[run_id] = time.monotonic()
            return view

    async def _open(self, view: RunView) -> bool:
        """Post the status message (claimed, so only one process posts it); False if another did."""
        run, request = view.run, view.request
        assert run.id is not None
        surface = self.surfaces.for_team(run.team_id)
        async with self.db.write() as session:
            if not await runs.claim_message(session=session, run_id=run.id, field="status_ts"):
                return False
        try:
            thread_ts = run.thread_ts
            if request.kind in ("command", "handoff") and not is_ts(thread_ts):
                # A slash command, or work handed over from another thread: no message to thread
                # under, so a thread of its own.
                thread_ts = await surface.post(channel=run.channel_id, text=_opener(view))
                async with self.db.write() as session:
                    await runs.set_thread(session=session, run_id=run.id, thread_ts=thread_ts)
                run.thread_ts = thread_ts
            else:
                await self._react(run, request, "eyes")
            message = self._status_message(view)
            ts = await surface.post(
                channel=run.channel_id, text=message.text, blocks=message.blocks, thread_ts=thread_ts
            )
        except BaseException:
            async with self.db.write() as session:  # give the claim back; the next refresh retries
                await runs.set_message_ts(session=session, run_id=run.id, field="status_ts", ts=None)
            raise
        async with self.db.write() as session:
            await runs.set_message_ts(session=session, run_id=run.id, field="status_ts", ts=ts)
        run.status_ts = ts
        self._last_text[run.id] = message.text
        return True

    async def _deliver_outcome(self, run_id: int, view: RunView | None = None) -> bool:
        """The outcome reply, exactly once; for an undone run, the undo report, exactly once.
        True when this call posted it (bot.outcome).

        `view`: the run as `_refresh` just loaded it, final (saves loading it again).
        """
        if view is None:
            view = await self._load(run_id)
        if view is None or view.run.status not in FINAL_REACTION or not is_ts(view.run.thread_ts):
            return False
        field = "undo_ts" if view.run.undone_by else "outcome_ts"
        async with self.db.write() as session:
            if not await runs.claim_message(session=session, run_id=run_id, field=field):
                return False
        undone = bool(view.run.undone_by)
        message = outcome.undo_message(view) if undone else outcome.outcome_message(view)
        stream = self.stream_answers and not undone and outcome.streams(view)
        try:
            ts = await outcome.deliver(self.surfaces.for_team(view.run.team_id), view, message, stream=stream)
        except BaseException:
            async with self.db.write() as session:
                await runs.set_message_ts(session=session, run_id=run_id, field=field, ts=None)
            raise
        async with self.db.write() as session:
            await runs.set_message_ts(session=session, run_id=run_id, field=field, ts=ts)
            if field == "undo_ts" and view.run.outcome_ts is None:  # undone before it had an outcome
                await runs.set_message_ts(session=session, run_id=run_id, field="outcome_ts", ts=ts)
        await self._react(view.run, view.request, final_reaction(view.run))
        return True

    # Approvals ------------------------------------------------------------------

    async def approval_requested(self, approval_id: int) -> None:
        await self._safely(self.approvals.post(approval_id))

    async def approval_decided(self, approval_id: int) -> None:
        """Replace the Approve/Deny buttons with the decision."""
        if self._forward is not None:
            return await self._there(self._forward[0].approval_decided(approval_id))
        await self._safely(self.approvals.update(approval_id))

    async def _react(self, run: Run, request: Request, name: str) -> None:
        if request.kind == "command":
            return
        try:
            await self.surfaces.for_team(run.team_id).react(
                channel=request.channel_id, ts=request.ts, name=name
            )
        except Exception as e:  # broad on purpose: a reaction is decoration
            log.warning("reaction %s on run #%s failed: %s", name, run.id, e)

    async def _safely(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None when it failed (logged)."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception:  # broad on purpose: presenting never breaks the runtime
            log.exception("presenting a run failed")
            return None

    async def _thread_of(self, run_id: int) -> Where | None:
        """The run's thread, for a loading status of a run this process has not shown yet."""
        async with self.db.read() as session:
            run = await runs.run_without_history(session=session, run_id=run_id)
        if run is None or not is_ts(run.thread_ts):
            return None
        self._teams[run_id] = run.team_id
        return run.channel_id, run.thread_ts

    def _surface_of(self, run_id: int) -> Surface:
        """The surface of the run's workspace, as last loaded (none known: no workspace's)."""
        return self.surfaces.for_team(self._teams.get(run_id, ""))

    def _forget(self, run_id: int) -> None:
        for d in (self._last_edit, self._last_text, self._customer, self._teams):
            d.pop(run_id, None)
        self.loading.forget(run_id)
        lock = self._locks.get(run_id)
        if lock is not None and not lock.locked():
            self._locks.pop(run_id, None)
