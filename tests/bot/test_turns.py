"""The intake first: `chatops serve`'s runs' loop gives way while the intake's loop has work.

bot.background.Turns, told by the intake's event loop (its selector) when it is busy and
when it waits for the network, and asked by the runs' loop before each round of callbacks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from bot import background
from bot.background import Turns, _IntakeSelector, _RunsSelector
from storage.engine import _write_lock, urgent_writer_waiting


def _busy(turns: Turns) -> bool:
    return not turns._idle.is_set()


def test_the_intake_loop_is_busy_while_it_handles_an_event_and_idle_while_it_waits() -> None:
    turns = Turns()
    loop = asyncio.SelectorEventLoop(_IntakeSelector(turns))
    left, right = socket.socketpair()
    seen: list[bool] = []
    try:
        assert not _busy(turns)

        def readable() -> None:
            left.recv(16)
            seen.append(_busy(turns))  # what the runs' loop sees while the intake works
            loop.call_soon(lambda: seen.append(_busy(turns)))  # and in the callbacks it makes
            loop.call_later(0.05, loop.stop)

        loop.add_reader(left, readable)
        right.send(b"x")  # a delivery comes in
        loop.run_forever()
        assert seen == [True, True]
        # Stopped while waiting for the timer: it had nothing to do but wait, so it was idle.
        assert not _busy(turns)
    finally:
        loop.close()
        left.close()
        right.close()


def test_the_runs_loop_waits_for_a_busy_intake_but_never_longer_than_the_limit() -> None:
    turns = Turns()
    loop = asyncio.SelectorEventLoop(_RunsSelector(turns))
    rounds = 5

    async def go_round(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(0)  # one round of the loop's callbacks each

    try:
        turns.busy()  # and it stays busy: the runs go on, one round per YIELD_LIMIT at most
        started = time.monotonic()
        loop.run_until_complete(go_round(rounds))
        assert time.monotonic() - started >= rounds * background.YIELD_LIMIT * 0.9

        # The intake goes idle while a round waits: the round goes on then, not at the limit.
        turns.busy()
        waiting = threading.Event()
        original = turns.give_way

        def give_way() -> None:
            waiting.set()
            original()

        turns.give_way = give_way  # type: ignore[method-assign]
        freed = threading.Thread(target=lambda: (waiting.wait(5), turns.idle()))
        freed.start()
        loop.run_until_complete(go_round(1))
        freed.join()
        assert waiting.is_set()  # the round asked, and went on once the intake was idle
        assert not _busy(turns)
    finally:
        loop.close()


class _CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


def test_the_runs_do_not_wait_while_the_intake_waits_for_the_write_lock(tmp_path) -> None:
    """The runs may hold the write lock the intake waits for: they go on, and let it go."""
    turns = Turns()
    turns._idle = _CountingEvent()
    background.URGENT_WAIT_HOOKS.append(turns.let_go)
    lock = _write_lock(str(tmp_path / "chatops.db"))
    runs_loop = asyncio.new_event_loop()
    intake_loop = asyncio.new_event_loop()
    try:
        runs_loop.run_until_complete(lock.acquire())  # a run's write transaction
        turns.busy()
        turns.give_way()
        assert turns._idle.waits == 1  # the intake is busy, and waits for nothing of the runs'

        turns.busy()
        urgent = intake_loop.create_task(lock.acquire(urgent=True))
        intake_loop.run_until_complete(asyncio.sleep(0))  # the intake's write now waits
        assert urgent_writer_waiting()
        assert turns._idle.is_set()  # the waiting round was let go
        turns.busy()  # the intake's loop is busy again with other deliveries
        turns.give_way()
        assert turns._idle.waits == 1  # the runs went on without waiting

        lock.release()  # handed to the intake
        intake_loop.run_until_complete(urgent)
        assert not urgent_writer_waiting()
        lock.release()
    finally:
        background.URGENT_WAIT_HOOKS.remove(turns.let_go)
        runs_loop.close()
        intake_loop.close()
