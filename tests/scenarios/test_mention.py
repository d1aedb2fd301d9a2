"""A person mentions the bot; the agent works in the thread and reports what it did."""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until

from storage import tickets
from storage.models import RunStatus, StepKind, StepStatus


async def test_a_mention_is_acked_at_once_and_the_run_reports_in_its_thread(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("ticket_create", {"title": "Login page broken", "priority": "high"})
    model.answer("I created ticket #1 for the login bug.")
    model.hold()  # the model "thinks" until released: the ack must not wait for it

    mention = ev.app_mention("<@UBOT> create a ticket for the login bug", user="U1", channel="C1")
    ts = mention["event"]["ts"]
    delivery = await desk.send.event(mention)

    assert delivery.status == 200
    assert delivery.elapsed < 3.0  # Slack's limit; the agent's work happens after the ack
    [request] = await desk.requests()  # persisted before the ack
    assert (request.channel_id, request.ts, request.thread_ts, request.kind) == ("C1", ts, ts, "mention")
    assert request.text == "create a ticket for the login bug"

    # While the model thinks: :eyes: on the message, one status message in its thread naming
    # the agent and the run, already edited to say the run is being worked on.
    await wait_until(lambda: "eyes" in slack.reactions_on("C1", ts))
    status = await wait_until(lambda: slack.thread("C1", ts))
    status = status[0]
    [run] = await desk.runs()
    assert "ops" in status.posted_text and f"run #{run.id}" in status.posted_text
    await wait_until(lambda: "is working on this" in status.text, message=lambda: status.text)
    assert run.status in (RunStatus.queued, RunStatus.running)

    model.release()
    run = await desk.finished(run.id)
    assert run.status == RunStatus.succeeded
    assert run.thread_ts == ts

    # Exactly two messages in the thread: the status (edited, never re-posted) and the outcome.
    # The model's answer is shorter than a piece of a stream, so it is posted whole (one call).
    status_msg, outcome = slack.thread("C1", ts)
    assert status_msg.ts == run.status_ts and outcome.ts == run.outcome_ts
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert slack.calls_to("chat.startStream") == []
    assert len(status_msg.edits) >= 1  # quick steps share an edit (the pace of the loading status)
    assert "finished" in status_msg.text and "created ticket #1" in status_msg.text
    assert {c.params["ts"] for c in slack.calls_to("chat.update")} == {status_msg.ts}

    # The outcome says what was done and offers Undo.
    assert outcome.block("markdown")["text"] == "I created ticket #1 for the login bug."
    assert "created ticket #1" in outcome.shown()
    assert "chatops_undo" in outcome.action_ids()
    await wait_until(lambda: "white_check_mark" in slack.reactions_on("C1", ts))

    # The ticket exists, made by this run for this requester.
    [ticket] = await desk.tickets()
    assert (ticket.title, ticket.priority, ticket.reporter, ticket.run_id) == (
        "Login page broken",
        "high",
        "U1",
        run.id,
    )

    # The model was offered the tools, saw the request, and got the tool's result back.
    assert len(model.requests) == 2 and model.remaining == 0 and model.overrun == 0
    assert model.requests[0]["model"] == "fake-model"
    assert "ticket_create" in model.tool_names(0)
    first = model.messages(0)
    assert first[0]["role"] == "system" and "Run: #1" in first[0]["content"]
    assert first[1] == {"role": "user", "content": "create a ticket for the login bug"}
    [result] = model.tool_results(1)
    assert result.startswith("created ticket #1")
    assistant = model.messages(1)[2]
    assert assistant["tool_calls"][0]["function"]["name"] == "ticket_create"

    # The journal: model turn, action, model turn.
    steps = await desk.steps(run.id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
    assert run.prompt_tokens > 0 and run.completion_tokens > 0


async def test_a_mention_inside_a_thread_replies_in_that_thread(start_desk):
    desk = await start_desk()
    parent = ev.new_ts()
    mention = ev.app_mention("<@UBOT> find tickets about printers", channel="C1", thread_ts=parent)
    assert (await desk.send.event(mention)).status == 200

    run = await desk.only_run()
    assert run.thread_ts == parent
    [request] = await desk.requests()
    assert request.ts == mention["event"]["ts"] and request.thread_ts == parent
    assert [m.ts for m in desk.slack.thread("C1", parent)] == [run.status_ts, run.outcome_ts]
    assert desk.slack.top_level("C1") == []
    # The reaction goes on the person's message, not on the thread's parent.
    assert desk.slack.reactions_on("C1", mention["event"]["ts"])[0] == "eyes"
    assert desk.slack.reactions_on("C1", parent) == []


async def test_the_status_message_shows_each_step_as_it_completes(start_desk):
    desk = await start_desk(model=True)
    slack, model = desk.slack, desk.model
    model.call("ticket_create", {"title": "Step one"})
    model.call("ticket_create", {"title": "Step two"}, held=True)  # waits until released
    model.answer("Two tickets.")
    mention = ev.app_mention("<@UBOT> create two tickets")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    await wait_until(lambda: len(model.requests) == 2)  # the first action is done; the model thinks
    status = (await wait_until(lambda: slack.thread("C1", ts)))[0]
    await wait_until(lambda: "Step one" in status.text, message=lambda: status.text)
    assert "is working on this" in status.text and "Step two" not in status.text
    edits_while_working = len(status.edits)

    model.release()
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    assert "Step one" in status.text and "Step two" in status.text and "finished" in status.text
    assert len(status.edits) > edits_while_working
    assert len(slack.thread("C1", ts)) == 2  # still one status message and one outcome


async def test_status_edits_are_coalesced_to_respect_slacks_rate_limits(start_desk):
    config = '[[agents]]\nname = "ops"\nmax_steps = 30\n'
    desk = await start_desk(config, model=True, chatops_edit_interval=5.0)
    slack, model = desk.slack, desk.model
    for i in range(8):
        model.call("ticket_create", {"title": f"Batch {i}"})
    model.answer("Eight tickets.")
    mention = ev.app_mention("<@UBOT> create eight tickets")
    await desk.send.event(mention)

    run = await desk.only_run(timeout=30)  # the final edit alone waits out the 5 s interval
    assert run.status == RunStatus.succeeded
    status = slack.thread("C1", mention["event"]["ts"])[0]
    # 17 journaled steps, but far fewer edits: progress is coalesced to one per interval.
    assert len(await desk.steps(run.id)) == 17
    assert 1 <= len(slack.calls_to("chat.update")) <= 3
    assert all(f"Batch {i}" in status.text for i in range(8)) and "finished" in status.text


async def test_slack_escaping_is_undone_before_the_agent_reads_the_request(start_desk):
    """Slack sends & < > as &amp; &lt; &gt;; the ticket gets what the person typed."""
    desk = await start_desk()
    await desk.send.event(ev.dm("create a ticket for R&amp;D &lt;urgent&gt;"))
    run = await desk.only_run()
    await desk.finished(run.id)
    async with desk.db.read() as session:
        [ticket] = await tickets.find_tickets(session=session)
    assert ticket.title == "R&D <urgent>"
