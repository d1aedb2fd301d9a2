"""`/agent <request>`: the ack names the run; a new message opens the thread the run reports in."""

from __future__ import annotations

from fakes import slack_events as ev


async def test_agent_command_opens_a_thread_and_the_run_reports_there(start_desk):
    desk = await start_desk()
    slack = desk.slack
    command = ev.slash_command("create a ticket for the flaky deploy", user="U2", channel="C7")
    delivery = await desk.send.command(command)

    assert delivery.status == 200 and delivery.elapsed < 3.0
    [request] = await desk.requests()
    assert (request.kind, request.user_id, request.channel_id) == ("command", "U2", "C7")
    ack = delivery.text  # bolt answers ack("...") as a plain-text body
    assert f"Run #{(await desk.runs())[0].id}" in ack and "ops" in ack

    run = await desk.only_run()
    [opener] = slack.top_level("C7")
    assert "<@U2>" in opener.text and "create a ticket for the flaky deploy" in opener.text
    assert run.thread_ts == opener.ts
    [request] = await desk.requests()
    assert request.thread_ts == opener.ts
    status, outcome = slack.thread("C7", opener.ts)
    assert (status.ts, outcome.ts) == (run.status_ts, run.outcome_ts)
    assert "offline planner" in outcome.text and "created ticket #1" in outcome.text
    assert "chatops_undo" in outcome.action_ids()
    [ticket] = await desk.tickets()
    assert (ticket.title, ticket.reporter) == ("the flaky deploy", "U2")
    # A command has no message of the person's to react to.
    assert slack.calls_to("reactions.add") == []


async def test_the_same_command_delivered_twice_is_one_run(start_desk):
    desk = await start_desk()
    command = ev.slash_command("create a ticket for the printer", trigger_id="123.456.abc")
    first = await desk.send.command(command)
    second = await desk.send.command(command)
    assert first.status == second.status == 200
    assert "Run #1" in first.text
    assert "Run #" not in second.text and "Already" in second.text
    await desk.only_run()
    await desk.settled()
    assert len(await desk.requests()) == 1
    assert len(desk.slack.top_level("C1")) == 1


async def test_agent_command_without_words_explains_itself_and_starts_nothing(start_desk):
    desk = await start_desk()
    delivery = await desk.send.command(ev.slash_command("   "))
    assert delivery.status == 200
    assert "/agent" in delivery.text
    assert await desk.requests() == []
    assert desk.slack.calls_to("chat.postMessage") == []
