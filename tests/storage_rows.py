"""Rows the storage and presenter tests start from, written through the real queries."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from storage import clock
from storage.engine import Database
from storage.models import RequestBase
from storage.requests import create_request

_ts = itertools.count(1)


def request(*, ts: str | None = None, thread_ts: str | None = None, channel: str = "C1") -> RequestBase:
    ts = ts or f"1690000000.{next(_ts):06d}"
    return RequestBase(
        kind="mention",
        team_id="T1",
        channel_id=channel,
        user_id="U1",
        ts=ts,
        thread_ts=thread_ts or ts,
        text="hello",
        agent="ops",
    )


async def new_run(db: Database, *, thread_ts: str | None = None, channel: str = "C1") -> int:
    async with db.write() as session:
        created = await create_request(session=session, request=request(thread_ts=thread_ts, channel=channel))
    assert created is not None and created[1].id is not None
    return created[1].id


class Clock:
    """The stored clock, moved by hand."""

    def __init__(self) -> None:
        self.at = clock.now()

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)
