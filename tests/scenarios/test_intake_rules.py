"""Which Slack messages are requests: mentions, DMs, top-level messages in served channels.

Bots (ours included), edits, deletions and stray thread replies never are. Ignored
deliveries are still acked (200), so Slack does not retry them.
"""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until

CONFIG = """
[[agents]]
name = "ops"
default = true

[[agents]]
name = "support"
channels = ["CSUP"]
actions = ["ticket_create", "ticket_find", "slack_reply"]
"""


async def test_a_dm_is_a_request_for_the_default_agent(start_desk):
    desk = await start_desk(CONFIG)
    message = ev.dm("create a ticket for the printer jam", user="U2", channel="D42")
    assert (await desk.send.event(message)).status == 200

    run = await desk.only_run()
    [request] = await desk.requests()
    assert (request.kind, request.agent, request.user_id) == ("dm", "ops", "U2")
    assert run.agent == "ops" and run.thread_ts == message["event"]["ts"]
    [ticket] = await desk.tickets()
    assert ticket.title == "the printer jam" and ticket.reporter == "U2"
    status, outcome = desk.slack.thread("D42", message["event"]["ts"])
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "offline planner" in outcome.text


async def test_top_level_messages_in_a_served_channel_are_requests_for_its_agent(start_desk):
    desk = await start_desk(CONFIG)
    message = ev.channel_message("create a ticket for refund of order 1042", user="U2", channel="CSUP")
    ts = message["event"]["ts"]
    assert (await desk.send.event(message)).status == 200

    run = await desk.only_run()
    [request] = await desk.requests()
    assert (request.kind, request.agent) == ("channel", "support")
    assert run.agent == "support" and run.thread_ts == ts
    assert "support" in desk.slack.thread("CSUP", ts)[0].posted_text
    [ticket] = await desk.tickets()
    assert ticket.title == "refund of order 1042"


async def test_a_reply_in_a_runs_thread_is_a_follow_up_but_other_thread_replies_are_not(start_desk):
    desk = await start_desk(CONFIG)
    first = ev.channel_message("find tickets about refunds", channel="CSUP")
    first_ts = first["event"]["ts"]
    await desk.send.event(first)
    run = await desk.only_run()

    stray = ev.thread_reply("create a ticket for something", channel="CSUP", thread_ts=ev.new_ts())
    assert (await desk.send.event(stray)).status == 200
    assert len(await desk.requests()) == 1  # the ack comes after intake decided: nothing stored

    follow_up = ev.thread_reply("create a ticket for the refund", channel="CSUP", thread_ts=first_ts)
    assert (await desk.send.event(follow_up)).status == 200
    requests = await desk.requests()
    assert [(r.kind, r.agent, r.thread_ts) for r in requests] == [
        ("channel", "support", first_ts),
        ("thread", "support", first_ts),
    ]
    second = await desk.finished(run.id + 1)
    assert second.thread_ts == first_ts
    # Both runs report in the one thread: two status messages and two outcomes.
    assert len(desk.slack.thread("CSUP", first_ts)) == 4
    assert desk.slack.reactions_on("CSUP", stray["event"]["ts"]) == []


async def test_a_plain_message_in_a_channel_no_agent_serves_is_ignored(start_desk):
    desk = await start_desk(CONFIG)
    message = ev.channel_message("create a ticket for the coffee machine", channel="CRANDOM")
    assert (await desk.send.event(message)).status == 200
    assert await desk.requests() == []
    # The same words with a mention are a request, for the default agent.
    mention = ev.channel_message("<@UBOT> create a ticket for the coffee machine", channel="CRANDOM")
    assert (await desk.send.event(mention)).status == 200
    run = await desk.only_run()
    assert run.agent == "ops"


async def test_bots_edits_and_deletions_are_never_requests(start_desk):
    desk = await start_desk(CONFIG)
    human = ev.channel_message("create a ticket for the VPN", channel="CSUP")
    human_ts = human["event"]["ts"]
    ignored = [
        # Another app's message, top level in a served channel, even mentioning us.
        ev.bot_message("<@UBOT> create a ticket for spam", bot_id="B999", channel="CSUP"),
        # A bot user's message without the legacy subtype.
        ev.bot_message(
            "create a ticket for spam", bot_id="B998", user="UOTHERBOT", subtype=None, channel="CSUP"
        ),
        # Our own message echoed back (user UBOT, bot_id BBOT), in a served channel and in a run's thread.
        ev.bot_message("create a ticket for echo", bot_id="BBOT", user="UBOT", subtype=None, channel="CSUP"),
        ev.bot_message(
            "<@UBOT> create a ticket",
            bot_id="BBOT",
            user="UBOT",
            subtype=None,
            channel="CSUP",
            thread_ts=human_ts,
        ),
        # A bot mentioning us.
        _bot_mention("<@UBOT> create a ticket for bots", bot_id="B999", channel="C1"),
        # Edits and deletions of a person's message, even when the edit adds a mention.
        ev.message_changed(channel="CSUP", ts=ev.new_ts(), new_text="<@UBOT> create a ticket for edits"),
        ev.message_changed(channel="C1", ts=ev.new_ts(), new_text="<@UBOT> create a ticket for edits"),
        ev.message_deleted(channel="CSUP", ts=ev.new_ts()),
        # A join message in a served channel.
        _subtyped("channel_join", "<@U3> has joined the channel", channel="CSUP"),
    ]
    for body in ignored:
        delivery = await desk.send.event(body)
        assert delivery.status == 200, (body["event"], delivery.text)
    assert await desk.requests() == []
    assert desk.slack.calls_to("chat.postMessage") == []

    # A person's message after all that is still taken, and only it.
    await desk.send.event(human)
    run = await desk.only_run()
    await desk.settled()
    assert [r.ts for r in await desk.requests()] == [human_ts]
    assert len(await desk.runs()) == 1
    assert {m.thread_ts for m in desk.slack.posts()} == {human_ts}
    assert run.status == "succeeded"
    assert {(c, t) for c, t, _ in desk.slack.reactions} == {("CSUP", human_ts)}


async def test_our_own_messages_in_a_runs_thread_start_nothing(start_desk):
    """The status and outcome messages come back as message events; they must not loop."""
    desk = await start_desk(CONFIG)
    human = ev.channel_message("create a ticket for the printer", channel="CSUP")
    await desk.send.event(human)
    run = await desk.only_run()
    for posted in desk.slack.thread("CSUP", human["event"]["ts"]):
        echo = ev.bot_message(
            posted.text,
            bot_id="BBOT",
            user="UBOT",
            subtype=None,
            channel="CSUP",
            ts=posted.ts,
            thread_ts=posted.thread_ts,
        )
        assert (await desk.send.event(echo)).status == 200
    await desk.settled()
    assert len(await desk.requests()) == 1
    assert [r.id for r in await desk.runs()] == [run.id]


async def test_ignored_deliveries_are_acked_quickly_even_when_unknown(start_desk):
    desk = await start_desk(CONFIG)
    reaction = ev.envelope(
        {
            "type": "reaction_added",
            "user": "U1",
            "reaction": "thumbsup",
            "item": {"type": "message", "channel": "C1", "ts": ev.new_ts()},
        }
    )
    delivery = await desk.send.event(reaction)
    assert delivery.status == 200  # a 404 would make Slack retry it
    assert await desk.requests() == []
    await wait_until(lambda: desk.slack.calls_to("auth.test"))  # bolt authorized the event
    assert desk.slack.calls_to("chat.postMessage") == []


def _bot_mention(text: str, *, bot_id: str, channel: str) -> dict:
    body = ev.app_mention(text, user="UOTHERBOT", channel=channel)
    body["event"]["bot_id"] = bot_id
    return body


def _subtyped(subtype: str, text: str, *, channel: str) -> dict:
    body = ev.channel_message(text, user="U3", channel=channel)
    body["event"]["subtype"] = subtype
    return body


async def test_a_mention_in_a_served_channel_goes_to_that_channels_agent(start_desk):
    desk = await start_desk(CONFIG)
    mention = ev.app_mention("<@UBOT> find tickets about refunds", channel="CSUP")
    await desk.send.event(mention)
    run = await desk.only_run()
    assert run.agent == "support"
    [request] = await desk.requests()
    assert (request.kind, request.agent) == ("mention", "support")
