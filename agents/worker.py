"""Workers: claim queued runs through leases, keep the leases alive, run the loop.

One Worker per process runs many runs concurrently on the event loop. Leases
make a crashed process's runs claimable again once they expire; heartbeats keep
a live process's leases from expiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from agents import logcontext
from agents.loop import RunLoop
from agents.runtime import Runtime
from storage import runs
from storage.models import FINAL_STATUSES
from storage.runs import LeaseLost

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_on_this_host(worker_id: str) -> bool:
    """True only when the worker ran here and its process no longer exists."""
    host, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return False  # alive (or a reused pid: then the lease simply runs out)


class Worker:
    def __init__(self, rt: Runtime, *, concurrency: int = 50, poll_interval: float = 1.0) -> None:
        self.rt = rt
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self.alive = False

    def wake(self) -> None:
        """New work may be waiting (a request was stored, a pause lifted)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Claim and work runs until cancelled. A database outage is waited out, not fatal."""
        self.alive = True
        heartbeat = asyncio.create_task(self._heartbeat())
        failures = 0
        try:
            with contextlib.suppress(Exception):  # retried below, once the database answers
                await self.reclaim_orphans()
            while not self._stopping:
                try:
                    claimed = await self._claim()
                except Exception:  # broad on purpose: the database may be briefly unreachable
                    failures += 1
                    if failures == 1 or failures % 60 == 0:
                        log.exception("claiming runs failed (%d times in a row); retrying", failures)
                    await asyncio.sleep(min(self.poll_interval * failures, 5.0))
                    continue
                if failures:
                    log.warning("claiming runs works again after %d failures", failures)
                    failures = 0
                if claimed == 0 or len(self.tasks) >= self.concurrency:
                    await self._sleep()
        finally:
            self.alive = False
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def run_until_idle(self, timeout: float = 60.0) -> None:
        """Work until nothing is claimable and nothing is in flight (console, tests)."""
        await self.reclaim_orphans()
        async with asyncio.timeout(timeout):
            while True:
                claimed = await self._claim()
                if not self.tasks and claimed == 0:
                    return
                if self.tasks:
                    await asyncio.wait(list(self.tasks.values()), return_when=asyncio.FIRST_COMPLETED)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give runs in flight `grace` seconds, then cancel them.

        A cancelled run keeps its journal and lease; it resumes once the lease expires.
        """
        self._stopping = True
        self._wake.set()
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks.values()), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def reclaim_orphans(self) -> list[int]:
        """Runs leased by a dead process on this host are claimable at once (after a crash
        and restart), instead of after their lease runs out."""
        async with self.rt.db.read() as session:
            holders = await runs.lease_holders(session=session)
        dead = [w for w in holders if _dead_on_this_host(w) and w != self.rt.worker_id]
        if not dead:
            return []
        async with self.rt.db.write() as session:
            ids = await runs.expire_leases(session=session, worker_ids=dead)
        if ids:
            log.warning("reclaiming runs %s of dead workers %s", ids, dead)
        return ids

    async def _claim(self) -> int:
        free = self.concurrency - len(self.tasks)
        if free <= 0 or self._stopping:
            return 0
        async with self.rt.db.write() as session:
            ids = await runs.claim_runs(
                session=session,
                worker_id=self.rt.worker_id,
                limit=free,
                lease=self.rt.lease,
                working=self.tasks,
            )
        for run_id in ids:
            task = asyncio.create_task(self._work(run_id), name=f"run-{run_id}")
            self.tasks[run_id] = task
        return len(ids)

    async def _work(self, run_id: int) -> None:
        logcontext.bind_run(run_id=run_id)
        try:
            await RunLoop(self.rt, run_id).execute()
        except LeaseLost:
            await self._lost(run_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # broad on purpose: a crash is counted, and the run tried again
            log.exception("run #%s crashed in the worker; it will be tried again", run_id)
            try:
                async with self.rt.db.write() as session:
                    await runs.record_crash(session=session, run_id=run_id, worker_id=self.rt.worker_id)
            except Exception:  # broad on purpose: then it is tried again when its lease expires
                log.exception("run #%s: recording the crash failed", run_id)
        finally:
            self.tasks.pop(run_id, None)
            self._wake.set()

    async def _lost(self, run_id: int) -> None:
        """This worker no longer holds the run: another worker took it, or it was ended
        without it (cancelled: the app was removed from its workspace)."""
        try:
            async with self.rt.db.read() as session:
                run = await runs.get_run(session=session, run_id=run_id)
        except Exception:  # broad on purpose: only the log line depends on it
            run = None
        if run is not None and run.status in FINAL_STATUSES:
            log.info("run #%s was %s meanwhile (%s); stopping here", run_id, run.status, run.error or "")
        else:
            log.warning("run #%s: lease lost to another worker; stopping here", run_id)

    async def _sleep(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the wake-up event fires, and the worker would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self._wake.wait()
        self._wake.clear()

    async def _heartbeat(self) -> None:
        interval = max(self.rt.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            held = list(self.tasks)
            if not held:
                continue
            try:
                async with self.rt.db.write() as session:
                    kept = await runs.renew_leases(
                        session=session, run_ids=held, worker_id=self.rt.worker_id, lease=self.rt.lease
                    )
            except Exception:  # broad on purpose: a failed heartbeat is retried next interval
                log.exception("heartbeat failed")
                continue
            lost = set(held) - kept
            if lost:
                await self._cancel_taken(lost)

    async def _cancel_taken(self, run_ids: set[int]) -> None:
        """Cancel local work on runs another worker now owns (not ones we just released)."""
        async with self.rt.db.read() as session:
            owners = {i: (await runs.get_run(session=session, run_id=i)) for i in run_ids}
        for run_id, run in owners.items():
            task = self.tasks.get(run_id)
            if run is None or run.worker_id in (None, self.rt.worker_id) or task is None:
                continue
            log.warning("run #%s: lease lost to %s; cancelling local work", run_id, run.worker_id)
            task.cancel()
