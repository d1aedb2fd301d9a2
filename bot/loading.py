"""A run's loading status in its thread: "is thinking…" while the model is asked (with rotating
loading messages), "is running restart_service…" while an action runs (Slack's
assistant.threads.setStatus, which needs only chat:write).

At most one call per change, and at most one per `pace` (a second) in a thread: a step whose
status is already shown costs nothing, and changes that come sooner are coalesced (only the
latest is sent, in order; a step over before its turn is not shown). The first status of a
run goes at once. Without the pace, a run of quick steps made a call per step. Slack
drops a status after two minutes without a reply, so a long step's status is sent again every
`refresh` seconds. The outcome reply clears it (Slack clears the status when the app replies in
the thread); a run that stops to wait clears it with an empty status, except a run waiting for
the run it handed work to (the handoff is its step, whose status stays). Best effort throughout: a
status Slack refuses is logged and never stops a run; where Slack has no such method (an older
workspace), it is not asked again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.surface import Surface, Unavailable

log = logging.getLogger(__name__)

THINKING = "is thinking…"
LOADING_MESSAGES = [
    "Reading the thread…",
    "Weighing the next step…",
    "Checking what it may do…",
    "Thinking it over…",
]
"""Rotated by Slack while the model is asked (at most 10)."""
REFRESH = 90.0
"""Seconds after which a status still wanted is sent again (Slack drops it after 120)."""
PACE = 1.0
"""Seconds at least between two statuses of a thread: one shown for less is hardly read, and
each is a Web API call."""

Where = tuple[str, str]
"""(channel, thread_ts) of a run's thread."""


@dataclass
class _Thread:
    where: Where | None = None
    wanted: str = ""
    """The status the run's step wants shown ("" for none)."""
    shown: str | None = None
    """The status last sent (None: nothing sent, or due to be sent again)."""
    sender: asyncio.Task[None] | None = None
    refresh: asyncio.TimerHandle | None = None
    last: float | None = None
    """When the last status was sent (the loop's clock)."""
    pacing: bool = False
    """The sender waits out the pace (nothing on its way to Slack: it may be cancelled)."""
    done: bool = False
    """The run replied or stopped: nothing more is sent."""


class LoadingStatus:
    def __init__(
        self,
        surface: Surface,
        locate: Callable[[int], Awaitable[Where | None]],
        *,
        refresh: float = REFRESH,
        pace: float = PACE,
        enabled: bool = True,
        surface_of: Callable[[int], Surface] | None = None,
    ) -> None:
        self.surface = surface
        self.surface_of = surface_of
        """The surface of a run's workspace (many workspaces); None: `surface` for every run."""
        self.locate = locate
        """The run's thread, loaded when this process has not shown the run yet (None: no thread)."""
        self.refresh = refresh
        self.pace = pace
        self.enabled = enabled
        self._threads: dict[int, _Thread] = {}
        self._seen: dict[int, Where] = {}  # threads known before their run's first status

    def seen(self, run_id: int, where: Where) -> None:
        """Where the run's thread is (saves loading it), known before or after its first status."""
        thread = self._threads.get(run_id)
        if thread is None:
            self._seen[run_id] = where
        elif thread.where is None:
            thread.where = where

    def show(self, run_id: int, status: str) -> None:
        """Show `status` in the run's thread, soon and in order, unless it already shows (or
        the run has replied)."""
        if not self.enabled:
            return
        thread = self._threads.get(run_id)
        if thread is None:
            thread = self._threads[run_id] = _Thread(where=self._seen.pop(run_id, None))
        thread.wanted = status
        self._kick(run_id, thread)

    def forget(self, run_id: int) -> None:
        """The run is done with: a later step (an undo's) starts afresh."""
        self._seen.pop(run_id, None)
        thread = self._threads.pop(run_id, None)
        if thread is not None and thread.refresh is not None:
            thread.refresh.cancel()

    def hold(self, run_id: int) -> None:
        """The run waits for the run it handed work to: the handoff is its step, so the status
        shown stays as it is (nothing is sent; Slack drops it after two minutes), and is not
        sent again. The run starts afresh when it goes on, here or in another process."""
        thread = self._threads.pop(run_id, None)
        if thread is None:
            return
        thread.done = True
        if thread.refresh is not None:
            thread.refresh.cancel()
        if thread.sender is not None and thread.pacing:
            thread.sender.cancel()  # a status waiting out the pace is not sent

    def clear(self, run_id: int) -> None:
        """The run stopped to wait: an empty status, if one is shown or on its way."""
        thread = self._threads.get(run_id)
        if thread is None or not (thread.wanted or thread.shown):
            return
        thread.wanted = ""
        self._kick(run_id, thread)

    async def replied(self, run_id: int) -> Where | None:
        """The app is about to reply in the run's thread, which clears the status: a status
        still on its way lands first (so it cannot come after the reply), and nothing more is
        sent for the run until it is forgotten. Returns the thread when a status shows there now."""
        thread = self._threads.get(run_id)
        if thread is None or thread.done:
            return None
        thread.done = True
        if thread.refresh is not None:
            thread.refresh.cancel()
        if thread.sender is not None and thread.pacing:
            thread.sender.cancel()  # a status waiting out the pace is not sent
        elif thread.sender is not None:
            await asyncio.gather(thread.sender, return_exceptions=True)
        return thread.where if thread.shown else None

    async def idle(self) -> None:
        """Wait for the statuses on their way (console, tests)."""
        senders = [t.sender for t in self._threads.values() if t.sender is not None]
        await asyncio.gather(*senders, return_exceptions=True)

    def close(self) -> None:
        """Stop refreshing (the process stops; Slack drops the statuses within two minutes)."""
        for thread in self._threads.values():
            if thread.refresh is not None:
                thread.refresh.cancel()

    def _kick(self, run_id: int, thread: _Thread) -> None:
        if thread.sender is None and not thread.done and thread.wanted != thread.shown:
            thread.sender = asyncio.create_task(self._send(run_id, thread))

    async def _send(self, run_id: int, thread: _Thread) -> None:
        try:
            if thread.where is None:
                thread.where = await self.locate(run_id)
                if thread.where is None:
                    thread.done = True
                    return
            while not thread.done and thread.wanted != thread.shown:
                if thread.last is not None:
                    wait = thread.last + self.pace - asyncio.get_running_loop().time()
                    if wait > 0:
                        thread.pacing = True
                        try:
                            await asyncio.sleep(wait)
                        finally:
                            thread.pacing = False
                        continue  # the step may have changed meanwhile
                status = thread.wanted
                if thread.refresh is not None:
                    thread.refresh.cancel()
                    thread.refresh = None
                await self._set(run_id, thread.where, status)
                thread.shown = status
                thread.last = asyncio.get_running_loop().time()
                if status and self.refresh > 0:
                    thread.refresh = asyncio.get_running_loop().call_later(
                        self.refresh, self._stale, run_id, thread
                    )
        except Unavailable:
            self.enabled = False
            log.warning("Slack has no loading status here: threads show none")
        except Exception:  # broad on purpose: a loading status never breaks a run
            log.exception("the loading status of run #%s failed", run_id)
            thread.shown = thread.wanted  # given up: the next change tries again
        finally:
            thread.sender = None
        if not thread.done and thread.wanted != thread.shown and self.enabled:
            self._kick(run_id, thread)  # a change arrived as the last call failed
        elif not thread.done and thread.shown == "" and self._threads.get(run_id) is thread:
            del self._threads[run_id]  # cleared for a wait: the run may resume in another process

    def _stale(self, run_id: int, thread: _Thread) -> None:
        """Two minutes are nearly up: the status still wanted is sent again."""
        thread.refresh = None
        thread.shown = None
        self._kick(run_id, thread)

    async def _set(self, run_id: int, where: Where, status: str) -> None:
        try:
            surface = self.surface_of(run_id) if self.surface_of is not None else self.surface
            await surface.set_status(
                channel=where[0],
                thread_ts=where[1],
                status=status,
                loading_messages=LOADING_MESSAGES if status == THINKING else None,
            )
        except Unavailable:
            raise
        except Exception as e:  # broad on purpose: decoration; the next step tries again
            log.warning("setting the loading status of run #%s failed: %s", run_id, e)
