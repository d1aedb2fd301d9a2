"""The loading status against the loopback fake Slack: one call per change, in order, with the
changes that come while Slack answers coalesced into the latest; nothing sent once the run
replies; a status Slack refuses never raises, and one Slack does not offer is not asked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fakes import FakeSlack, wait_until

from bot.loading import THINKING, LoadingStatus
from bot.surface import SlackSurface, make_client

WHERE = ("C1", "1700000000.000001")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def loading_for(slack: FakeSlack, **kwargs: float) -> LoadingStatus:
    async def locate(run_id: int) -> tuple[str, str] | None:
        return WHERE

    return LoadingStatus(SlackSurface(make_client("xoxb-test", slack.url)), locate, **kwargs)


def sent(slack: FakeSlack) -> list[str]:
    return slack.statuses_in(*WHERE)


async def test_a_status_already_shown_costs_nothing_and_changes_go_in_order(slack: FakeSlack) -> None:
    loading = loading_for(slack)
    loading.show(1, THINKING)
    await wait_until(lambda: sent(slack) == [THINKING])
    loading.show(1, THINKING)  # the next model turn: nothing changed
    await loading.idle()
    assert sent(slack) == [THINKING]

    slack.hold("assistant.threads.setStatus")
    loading.show(1, "is running deploy…")
    await wait_until(lambda: len(slack.calls_to("assistant.threads.setStatus")) == 2)
    # While Slack has not answered, three more steps come and go: only the latest is sent.
    loading.show(1, THINKING)
    loading.show(1, "is running check…")
    loading.show(1, "is running report…")
    slack.release("assistant.threads.setStatus")
    await wait_until(lambda: len(sent(slack)) == 3)
    await loading.idle()
    assert sent(slack) == [THINKING, "is running deploy…", "is running report…"]


async def test_once_the_run_replies_a_status_in_flight_lands_first_and_nothing_follows(
    slack: FakeSlack,
) -> None:
    loading = loading_for(slack)
    slack.hold("assistant.threads.setStatus")
    loading.show(1, THINKING)
    await wait_until(lambda: len(slack.calls_to("assistant.threads.setStatus")) == 1)
    replied = asyncio.create_task(loading.replied(1))
    await asyncio.sleep(0)
    assert not replied.done()  # it waits for the status on its way
    loading.show(1, "is running late…")  # too late: the run has replied
    slack.release("assistant.threads.setStatus")
    assert await replied == WHERE  # a status shows there (the reply clears it)
    await loading.idle()
    assert sent(slack) == [THINKING]


async def test_a_wait_clears_the_status_and_a_run_never_shown_is_not_cleared(slack: FakeSlack) -> None:
    loading = loading_for(slack)
    loading.clear(2)  # nothing was shown for run 2: no call
    loading.show(1, THINKING)
    await wait_until(lambda: sent(slack) == [THINKING])
    loading.clear(1)
    await wait_until(lambda: sent(slack) == [THINKING, ""])
    await loading.idle()
    assert len(slack.calls_to("assistant.threads.setStatus")) == 2


async def test_a_refused_status_is_logged_and_the_next_change_is_sent(slack: FakeSlack) -> None:
    loading = loading_for(slack)
    slack.refuse("assistant.threads.setStatus", "channel_not_found", times=1)
    loading.show(1, THINKING)  # never raises into the caller
    await wait_until(lambda: len(slack.calls_to("assistant.threads.setStatus")) == 1)
    loading.show(1, "is running deploy…")
    await wait_until(lambda: sent(slack)[-1:] == ["is running deploy…"])
    assert loading.enabled


async def test_where_slack_has_no_loading_status_it_is_asked_once(slack: FakeSlack) -> None:
    loading = loading_for(slack)
    slack.refuse("assistant.threads.setStatus", "unknown_method")
    loading.show(1, THINKING)
    await wait_until(lambda: not loading.enabled)
    loading.show(2, THINKING)
    loading.show(1, "is running deploy…")
    await loading.idle()
    assert len(slack.calls_to("assistant.threads.setStatus")) == 1


async def test_a_status_still_wanted_is_sent_again_before_slack_drops_it(slack: FakeSlack) -> None:
    loading = loading_for(slack, refresh=0.05)
    loading.show(1, THINKING)
    await wait_until(lambda: len(sent(slack)) >= 3)
    assert set(sent(slack)) == {THINKING}
    await loading.replied(1)
    after = len(sent(slack))
    await asyncio.sleep(0.2)  # a bound on what must NOT happen: no refresh once the run replied
    assert len(sent(slack)) == after
