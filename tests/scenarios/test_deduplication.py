"""One Slack message is one request, however often and through whichever events it arrives."""

from __future__ import annotations

import asyncio
import copy

from fakes import slack_events as ev


async def test_slack_retries_of_one_event_make_one_run(start_desk):
    desk = await start_desk()
    mention = ev.app_mention("<@UBOT> create a ticket for the retried bug")
    ts = mention["event"]["ts"]
    for retry in (None, 1, 2, 3):
        delivery = await desk.send.event(mention, retry_num=retry)
        assert delivery.status == 200, (retry, delivery.text)

    run = await desk.only_run()
    await desk.settled()
    assert len(await desk.requests()) == 1
    assert [d.key for d in await desk.deliveries()] == [mention["event_id"]]
    assert len(await desk.tickets()) == 1
    assert [m.ts for m in desk.slack.thread("C1", ts)] == [run.status_ts, run.outcome_ts]


async def test_a_mention_delivered_as_app_mention_and_as_message_makes_one_run(start_desk):
    desk = await start_desk()
    text = "<@UBOT> create a ticket for the double delivery"
    mention = ev.app_mention(text, channel="C1")
    ts = mention["event"]["ts"]
    message = ev.channel_message(text, channel="C1", ts=ts)
    assert mention["event_id"] != message["event_id"]

    assert (await desk.send.event(message)).status == 200
    assert (await desk.send.event(mention)).status == 200

    await desk.only_run()
    await desk.settled()
    assert len(await desk.requests()) == 1
    assert len(await desk.deliveries()) == 2  # both deliveries were seen; one became a request
    assert len(await desk.tickets()) == 1
    assert len(desk.slack.thread("C1", ts)) == 2
    assert desk.slack.reactions_on("C1", ts).count("eyes") == 1


async def test_retries_and_double_delivery_arriving_concurrently_make_one_run(start_desk):
    desk = await start_desk()
    text = "<@UBOT> create a ticket for the thundering herd"
    mention = ev.app_mention(text, channel="C1")
    ts = mention["event"]["ts"]
    message = ev.channel_message(text, channel="C1", ts=ts)
    sends = [
        desk.send.event(copy.deepcopy(body), retry_num=retry)
        for body in (mention, message)
        for retry in (None, 1, 2, 3)
    ]
    deliveries = await asyncio.gather(*sends)

    assert [d.status for d in deliveries] == [200] * 8
    await desk.only_run()
    await desk.settled()
    assert len(await desk.requests()) == 1
    assert len(await desk.deliveries()) == 2
    assert len(await desk.tickets()) == 1
    assert len(desk.slack.thread("C1", ts)) == 2


async def test_many_different_messages_at_once_each_get_their_own_run(start_desk):
    desk = await start_desk()
    mentions = [ev.app_mention(f"<@UBOT> create a ticket for bug {i}", channel="C1") for i in range(10)]
    deliveries = await asyncio.gather(*(desk.send.event(m) for m in mentions))
    assert [d.status for d in deliveries] == [200] * 10

    runs = await desk.runs()
    assert len(runs) == 10
    for run in runs:
        assert run.id is not None
        await desk.finished(run.id)
    await desk.settled()
    assert sorted(t.title for t in await desk.tickets()) == sorted(f"bug {i}" for i in range(10))
    for m in mentions:
        thread = desk.slack.thread("C1", m["event"]["ts"])
        assert len(thread) == 2, thread
