"""The emergency stop works when Slack does not, and an outage never demotes a member.

What users.info says is kept in the database with an expiry (`control.role_cache_minutes`);
when Slack cannot answer, the last known answer is used. A user Slack never described and cannot
describe now may pause (and only pause), audited. A request taken while Slack could not say who
asked is stored as "unverified" (never as a customer) and asked about again when its run starts.
"""

from __future__ import annotations

from datetime import timedelta

from fakes import wait_until
from fakes.slack_api import TEAM_ID

from scenarios.control_support import OPS_CHANNEL, audit, config, ephemerals_to, post, say
from scenarios.faults_support import TestClock
from storage.clock import now, set_clock
from storage.models import Control, Request, RunStatus, UserRole

DOWN = 50  # users.info answers 500 this many times: past every retry of every lookup in a test


async def _role(desk, user: str) -> UserRole | None:
    rows = await desk.rows(UserRole)
    return next((r for r in rows if r.user_id == user), None)


async def test_a_member_known_before_keeps_control_while_slack_is_down(start_desk, tmp_path):
    clock = TestClock(now())
    set_clock(clock)
    desk = await start_desk(config(tmp_path / "notes.txt"), model=True)
    desk.model.call("check_status").answer("All good.")
    ts = await post(desk, "check the status", channel=OPS_CHANNEL)
    run = await desk.only_run()
    known = await _role(desk, "U1")
    assert known is not None and known.refusal is None  # a member, remembered for an hour
    assert known.expires_at - known.checked_at == timedelta(minutes=60)

    clock.advance(timedelta(hours=2))  # the answer is stale: Slack is asked again, and is down
    desk.slack.fail("users.info", status=500, times=DOWN)
    await say(desk, "undo", thread_ts=ts, channel=OPS_CHANNEL)
    await wait_until(lambda: _rolled_back(desk, run.id), message="the undo")
    assert [e.action for e in await audit(desk)] == ["undo"]


async def _rolled_back(desk, run_id: int) -> bool:
    return (await desk.run(run_id)).status == RunStatus.rolled_back


async def test_an_unverifiable_user_may_pause_and_nothing_else(start_desk, tmp_path):
    desk = await start_desk(config(tmp_path / "notes.txt"), model=True)
    desk.slack.fail("users.info", status=500, times=DOWN)
    await post(desk, "undo", channel=OPS_CHANNEL, user="U2")
    [refusal] = await wait_until(lambda: ephemerals_to(desk, "U2"), message="the refusal")
    assert refusal.text == (
        "Sorry <@U2>, you can't undo this run: I could not verify who you are in this workspace "
        "(Slack did not answer)."
    )
    await post(desk, "pause all agents", channel=OPS_CHANNEL, user="U2")

    async def paused() -> list[Control]:
        return [c for c in await desk.rows(Control) if c.paused]

    [pause] = await wait_until(paused, message="the pause")
    assert (pause.scope, pause.by_user) == ("*", "U2")
    actions = [(e.action, e.target) for e in await audit(desk)]
    assert ("unverified", "pause") in actions and ("pause", "agent:*") in actions
    assert await _role(desk, "U2") is None  # nothing was learnt, so nothing is remembered


async def test_a_request_taken_while_slack_is_down_is_checked_again_when_its_run_starts(start_desk, tmp_path):
    desk = await start_desk(config(tmp_path / "notes.txt"), model=True)
    desk.slack.fail("users.info", status=500, times=DOWN)
    desk.model.hold()  # the run's first model turn waits until Slack is back
    desk.model.call("append_line", {"line": "from a member"}).answer("Appended.")
    await post(desk, "append a line", channel=OPS_CHANNEL)

    async def request() -> Request | None:
        rows = await desk.rows(Request)
        return rows[0] if rows else None

    taken = await wait_until(request, message="the request")
    assert taken.requester_role == "unverified"  # not "customer": Slack said nothing
    await wait_until(lambda: len(desk.model.requests) >= 1, message="the run to ask the model")
    # Still down when the run started: it reached only what customers may.
    assert "append_line" not in desk.model.tool_names(0)
    desk.slack.recover("users.info")
    desk.model.release()
    run = await desk.only_run()
    assert run.status == RunStatus.no_action  # append_line was not offered to it
    assert (await request()).requester_role == "unverified"

    # Slack is back: the next request of the same person is a member's, with every action.
    desk.model.call("append_line", {"line": "from a member"}).answer("Appended.")
    await post(desk, "append a line again", channel=OPS_CHANNEL)

    async def second() -> list[Request]:
        return (await desk.rows(Request))[1:]

    [again] = await wait_until(second, message="the second request")
    assert again.requester_role == "member"
    run = await desk.finished((await desk.runs())[-1].id)
    assert run.status == RunStatus.succeeded, run.error
    assert "append_line" in desk.model.tool_names(2)  # the first run asked twice (its call refused)
    assert (tmp_path / "notes.txt").read_text().splitlines() == ["from a member"]


async def test_an_unverified_request_is_a_members_once_slack_answers_at_its_start(start_desk, tmp_path):
    desk = await start_desk(config(tmp_path / "notes.txt"), model=True)
    await post(desk, "pause all agents", channel=OPS_CHANNEL)  # U1, a member Slack describes
    await wait_until(lambda: _paused(desk), message="the pause")
    desk.slack.fail("users.info", status=500, times=DOWN)
    desk.model.call("append_line", {"line": "from U2"}).answer("Appended.")
    await post(desk, "append a line", channel=OPS_CHANNEL, user="U2")
    [taken] = await wait_until(lambda: desk.rows(Request), message="the request")
    assert taken.requester_role == "unverified"

    desk.slack.recover("users.info")
    await post(desk, "resume all", channel=OPS_CHANNEL)
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    assert "append_line" in desk.model.tool_names(0)
    [request] = await desk.rows(Request)
    assert request.requester_role == "member"
    assert (tmp_path / "notes.txt").read_text().splitlines() == ["from U2"]


async def _paused(desk) -> bool:
    return any(c.paused for c in await desk.rows(Control))


async def test_a_role_is_asked_once_while_fresh_and_again_once_stale(start_desk, tmp_path):
    """The process keeps what it learnt of a user in memory (no read per request), but only
    until it expires: a guest now is a customer once the old answer is stale, and an answer
    another process learnt since (a newer row) is taken from the database without asking Slack."""
    clock = TestClock(now())
    set_clock(clock)
    desk = await start_desk(config(tmp_path / "notes.txt"))
    for n in range(3):
        await post(desk, f"say hello {n}", channel=OPS_CHANNEL)
    requests = await wait_until(lambda: _requests(desk, 3), message="three requests")
    assert [r.requester_role for r in requests] == ["member"] * 3
    assert len(desk.slack.calls_to("users.info")) == 1  # asked once, then known

    desk.slack.add_user("U1", is_restricted=True)  # made a guest; the answer kept is still fresh
    await post(desk, "say hello 3", channel=OPS_CHANNEL)
    assert await _role_of_request(desk, 4) == "member"

    clock.advance(timedelta(minutes=61))  # stale: Slack is asked again
    await post(desk, "say hello 4", channel=OPS_CHANNEL)
    assert await _role_of_request(desk, 5) == "customer"
    assert len(desk.slack.calls_to("users.info")) == 2

    # Another process learnt later that U1 is a member again, and kept it in the database.
    clock.advance(timedelta(minutes=61))
    async with desk.db.write() as session:
        row = await session.get(UserRole, (TEAM_ID, "U1"))
        assert row is not None
        row.refusal, row.checked_at, row.expires_at = None, now(), now() + timedelta(minutes=60)
    await post(desk, "say hello 5", channel=OPS_CHANNEL)
    assert await _role_of_request(desk, 6) == "member"
    assert len(desk.slack.calls_to("users.info")) == 2  # the database's answer was fresh


async def _role_of_request(desk, n: int) -> str:
    """The requester's role stored with the n-th request, once it is stored."""
    rows = await wait_until(lambda: _requests(desk, n), message=f"request {n}")
    return str(rows[n - 1].requester_role)


async def _requests(desk, n: int) -> list[Request] | None:
    rows = await desk.rows(Request)
    return rows if len(rows) >= n else None
