"""Without OPENAI_API_KEY the agents use the offline planner, and every reply says so."""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until

from storage.models import RunStatus, TicketComment


async def test_the_offline_planner_creates_and_assigns_a_ticket(start_desk):
    desk = await start_desk()
    mention = ev.app_mention("<@UBOT> create a ticket for the login bug and assign it to me", user="U2")
    await desk.send.event(mention)

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    assert run.planner == "offline planner"
    [ticket] = await desk.tickets()
    assert (ticket.title, ticket.assignee, ticket.reporter) == ("the login bug", "U2", "U2")

    status, outcome = desk.slack.thread("C1", mention["event"]["ts"])
    assert "offline planner" in outcome.text
    assert "created ticket #1" in outcome.text
    assert "chatops_undo" in outcome.action_ids()
    assert "offline planner" in status.text


async def test_the_offline_planner_says_what_it_understands_when_it_does_not(start_desk):
    desk = await start_desk()
    await desk.send.event(ev.app_mention("<@UBOT> deploy api to staging"))

    run = await desk.only_run()
    assert run.status == RunStatus.no_action  # it did nothing, and says so (not ✅)
    assert await desk.tickets() == []
    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts
    assert "offline planner" in outcome.text and "create a ticket for" in outcome.text
    assert "chatops_undo" not in outcome.action_ids()  # nothing was done, nothing to undo


async def test_no_request_reaches_a_model_server_without_an_api_key(start_desk, fake_model):
    """Even with OPENAI_BASE_URL set, no key means the offline planner and no model call."""
    desk = await start_desk(openai_base_url=fake_model.url)
    await desk.send.event(ev.app_mention("<@UBOT> find tickets about printers"))

    run = await desk.only_run()
    assert run.planner == "offline planner"
    assert fake_model.requests == []


async def test_every_message_the_offline_planner_writes_says_so(start_desk):
    """The contract: the offline planner is "labelled as such in every reply"."""
    desk = await start_desk()
    mention = ev.app_mention("<@UBOT> reply the deploy is done")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    thread = desk.slack.thread("C1", ts)
    assert len(thread) == 3  # status, the reply it was asked to write, outcome
    assert any("the deploy is done" in m.text for m in thread)
    unlabelled = [m.text for m in thread if "offline planner" not in m.text]
    assert unlabelled == [], f"replies that do not say they come from the offline planner: {unlabelled}"


async def test_the_offline_planner_follows_up_on_the_thread_and_talks(start_desk):
    desk = await start_desk()
    mention = ev.app_mention("<@UBOT> create a ticket for the login bug")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)
    await desk.only_run()

    async def say(text: str):
        before = len(await desk.runs())
        await desk.send.event(ev.thread_reply(text, thread_ts=ts))

        async def new():
            runs = await desk.runs()
            return runs[-1] if len(runs) > before else None

        run = await wait_until(new, message=f"the run for {text!r}")
        return await desk.finished(run.id)

    commented = await say("add a comment saying it's urgent")
    assert commented.status == RunStatus.succeeded, commented.error
    [ticket] = await desk.tickets()
    [comment] = await desk.rows(TicketComment)
    assert (comment.ticket_id, comment.text) == (ticket.id, "it's urgent")
    closed = await say("close it")
    assert closed.status == RunStatus.succeeded
    assert (await desk.tickets())[0].status == "closed"

    recap = await say("what did you just do?")
    assert recap.status == RunStatus.succeeded  # a conversation: nothing done, nothing refused
    assert f"In run #{closed.id} you asked “close it”. I did: closed ticket #{ticket.id}." in (
        recap.outcome or ""
    )
    hello = await say("hi")
    assert hello.status == RunStatus.succeeded and "Hello!" in (hello.outcome or "")
    abilities = await say("what can you do?")
    assert "`ticket_create`: Create a ticket" in (abilities.outcome or "")
    assert len(await desk.tickets()) == 1 and len(await desk.rows(TicketComment)) == 1


async def test_it_without_a_ticket_in_the_thread_is_asked_about_not_guessed(start_desk):
    desk = await start_desk()
    await desk.send.event(ev.app_mention("<@UBOT> close it"))
    run = await desk.only_run()
    assert run.status == RunStatus.no_action
    assert "I don't know which ticket you mean" in (run.outcome or "")
