"""The app's DM as Slack's assistant container: a new thread gets suggested prompts drawn from the
default agent's actions (at most four, only those the person may reach) and a title; the
channel the person is viewing (the thread's context, kept as it changes) reaches the run of
each request made in the thread, and the model is told.
"""

from __future__ import annotations

from typing import Any

from fakes import slack_events as ev
from fakes import wait_until

from storage.models import AssistantThread, RunStatus

DM = "D1"
THREAD = "1726133698.626339"

CONFIG = """
[[agents]]
name = "ops"
default = true
actions = ["ticket_create", "ticket_find", "ticket_comment", "ticket_close", "slack_reply"]
customer_actions = ["ticket_find"]
"""


def assistant_event(kind: str, *, viewing: str, user: str = "U1") -> dict[str, Any]:
    """assistant_thread_started or assistant_thread_context_changed, as Slack sends them."""
    event = {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": viewing, "team_id": "T1", "enterprise_id": None},
            "channel_id": DM,
            "thread_ts": THREAD,
        },
        "event_ts": ev.new_ts(),
    }
    return ev.envelope(event)


async def _ask_in_thread(desk, text: str):
    message = ev.dm(text, channel=DM, thread_ts=THREAD)
    await desk.send.event(message)
    ts = message["event"]["ts"]
    requests = await wait_until(lambda: _request(desk, ts), message=f"the request {text!r}")
    run = next(r for r in await desk.runs() if r.request_id == requests.id)
    return requests, await desk.finished(run.id)


async def _request(desk, ts: str):
    return next((r for r in await desk.requests() if r.ts == ts), None)


async def test_a_new_thread_gets_prompts_and_its_viewed_channel_reaches_the_model(start_desk):
    desk = await start_desk(CONFIG, model=True)
    slack, model = desk.slack, desk.model
    assert (
        await desk.send.event(assistant_event("assistant_thread_started", viewing="C_INCIDENTS"))
    ).status == 200

    [suggested] = slack.suggested
    assert (suggested["channel_id"], suggested["thread_ts"]) == (DM, THREAD)
    assert suggested["title"] == "Ask ops, for example:"
    assert [p["message"] for p in suggested["prompts"]] == [
        "Create a ticket in the team's tracker",
        "Search tickets by words, status or assignee",
        "Add a comment to a ticket",
        "Close a ticket, with an optional resolution note",
    ]  # the agent's first four actions, as they describe themselves
    [thread] = await desk.rows(AssistantThread)
    assert thread.context["channel_id"] == "C_INCIDENTS"

    model.answer("Nothing is on fire in there.")
    request, run = await _ask_in_thread(desk, "anything on fire here?")
    assert request.context_channel_id == "C_INCIDENTS" and request.kind == "dm"
    assert run.status in (RunStatus.succeeded, RunStatus.no_action) and run.thread_ts == THREAD
    system = model.messages(0)[0]["content"]
    assert "They are viewing <#C_INCIDENTS> (channel id C_INCIDENTS)." in system

    # The person moves to another channel: the next request carries it.
    await desk.send.event(assistant_event("assistant_thread_context_changed", viewing="C_DEPLOYS"))
    model.answer("Deploys look fine.")
    request, _ = await _ask_in_thread(desk, "and here?")
    assert request.context_channel_id == "C_DEPLOYS"
    assert "They are viewing <#C_DEPLOYS>" in model.messages(1)[0]["content"]
    assert len(slack.suggested) == 1  # prompts are for a new thread only


async def test_a_guest_is_offered_only_what_customers_may_ask_for(start_desk):
    desk = await start_desk(CONFIG)
    desk.slack.add_user("UGUEST", is_restricted=True)
    await desk.send.event(assistant_event("assistant_thread_started", viewing="C1", user="UGUEST"))
    [suggested] = desk.slack.suggested
    assert [p["title"] for p in suggested["prompts"]] == ["Search tickets by words, status or assignee"]


async def test_a_dm_outside_an_assistant_thread_carries_no_viewed_channel(start_desk):
    desk = await start_desk()
    await desk.send.event(ev.dm("create a ticket for the plain DM"))
    run = await desk.only_run()
    [request] = await desk.requests()
    assert request.context_channel_id is None and run.status == RunStatus.succeeded


async def test_prompts_sent_through_bolts_own_client_are_cleaned_of_secrets(start_desk):
    """bolt's Assistant utilities call Slack with the request's own client (context.client): it
    is a redacting one too, so a secret in an action's description never reaches Slack."""
    config = """
[[agents]]
name = "ops"
default = true
actions = ["status_page"]

[[actions]]
name = "status_page"
description = "Show the status page (its API token is xoxb-test)"
kind = "command"
run = "echo ok"
read_only = true
"""
    desk = await start_desk(config)
    assert (
        await desk.send.event(assistant_event("assistant_thread_started", viewing="C_INCIDENTS"))
    ).status == 200
    [suggested] = await wait_until(lambda: desk.slack.suggested, message="the suggested prompts")
    [prompt] = suggested["prompts"]
    assert prompt["message"] == "Show the status page (its API token is [redacted])"
    assert not any("xoxb-test" in str(call.params) for call in desk.slack.calls)
