"""A model that calls tools wrongly is told so (as the tool result) and the run goes on;
a model that never stops is stopped by max_steps; a model server that fails is retried.
"""

from __future__ import annotations

from fakes import slack_events as ev

from storage.models import RunStatus, StepStatus


async def test_wrong_tool_calls_go_back_to_the_model_as_errors_and_the_run_finishes(start_desk):
    desk = await start_desk(model=True)
    model = desk.model
    model.call("deploy_everything", {"where": "prod"})  # no such tool
    model.call("ticket_create", '{"title": "Printer on fire", ')  # malformed JSON
    model.call("ticket_create", {"title": "", "priority": "whenever"})  # invalid arguments
    model.call("ticket_create", '["Printer on fire"]')  # JSON, but not an object
    model.call("ticket_create", {"title": "Printer on fire", "priority": "urgent"})
    model.answer("Created ticket #1 after a few tries.")
    await desk.send.event(ev.app_mention("<@UBOT> the printer is on fire, open a ticket"))

    run = await desk.only_run()
    assert len(model.requests) == 6 and model.overrun == 0

    unknown, malformed, invalid, not_object, created = (model.tool_results(i)[-1] for i in range(1, 6))
    assert unknown.startswith("error:") and "deploy_everything" in unknown and "ticket_create" in unknown
    assert malformed.startswith("error:") and "JSON" in malformed
    assert invalid.startswith("error:") and "title" in invalid and "priority" in invalid
    assert not_object.startswith("error:") and "object" in not_object
    assert created.startswith("created ticket #1")
    # Each result answers the call it belongs to.
    for i in range(1, 6):
        call_id = model.messages(i)[-2]["tool_calls"][0]["id"]
        assert model.messages(i)[-1]["tool_call_id"] == call_id

    assert run.status == RunStatus.succeeded
    [ticket] = await desk.tickets()
    assert (ticket.title, ticket.priority) == ("Printer on fire", "urgent")
    actions = [s for s in await desk.steps(run.id) if s.kind == "action"]
    assert [s.status for s in actions] == [StepStatus.rejected] * 4 + [StepStatus.succeeded]
    assert actions[1].arguments == {"_raw": '{"title": "Printer on fire", '}
    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts and "Created ticket #1 after a few tries." in outcome.text


async def test_max_steps_ends_a_looping_run_as_failed(start_desk):
    config = """
[[agents]]
name = "ops"
default = true
max_steps = 3
"""
    desk = await start_desk(config, model=True)
    for _ in range(6):
        desk.model.call("ticket_find", {"query": "printer"})
    await desk.send.event(ev.app_mention("<@UBOT> look for printer tickets forever"))

    run = await desk.only_run()
    assert run.status == RunStatus.failed
    assert "max_steps" in (run.error or "")
    steps = await desk.steps(run.id)
    assert len([s for s in steps if s.kind in ("model", "action")]) == 3
    assert len(desk.model.requests) == 2 and desk.model.overrun == 0
    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts
    assert "failed" in outcome.text and "max_steps" in outcome.text
    assert "chatops_undo" not in outcome.action_ids()


async def test_a_failed_looping_run_is_rolled_back(start_desk):
    config = """
[[agents]]
name = "ops"
default = true
max_steps = 4
on_failure = "rollback"
"""
    desk = await start_desk(config, model=True)
    slack = desk.slack
    desk.model.call("slack_reply", {"text": "On it, opening tickets."})
    for i in range(6):
        desk.model.call("ticket_create", {"title": f"duplicate {i}"})
    mention = ev.app_mention("<@UBOT> open tickets until told to stop")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    run = await desk.only_run()
    assert run.status == RunStatus.rolled_back
    assert "max_steps" in (run.error or "")
    assert await desk.tickets() == []  # the ticket it made was deleted again
    actions = [s for s in await desk.steps(run.id) if s.kind == "action"]
    assert [(s.name, s.status) for s in actions] == [
        ("slack_reply", StepStatus.compensated),
        ("ticket_create", StepStatus.compensated),
    ]
    # The agent's own reply in the thread was deleted again (newest first: ticket, then reply).
    [reply] = [m for m in slack.thread("C1", ts) if m.text == "On it, opening tickets."]
    assert reply.deleted
    assert [c.params["ts"] for c in slack.calls_to("chat.delete")] == [reply.ts]
    outcome = slack.thread("C1", ts)[-1]
    assert outcome.ts == run.outcome_ts
    assert "rolled back" in outcome.text and "deleted ticket" in outcome.text
    assert "chatops_undo" not in outcome.action_ids()


async def test_a_model_server_error_is_retried(start_desk):
    desk = await start_desk(model=True)
    desk.model.fail(500).fail(429)
    desk.model.answer("Nothing to do.")
    await desk.send.event(ev.app_mention("<@UBOT> hello"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded
    assert len(desk.model.requests) == 3
    assert "Nothing to do." in desk.slack.posts()[-1].text


async def test_a_model_server_that_keeps_failing_fails_the_run_with_a_reply(start_desk):
    # No outage allowance: the run gives up at once (waiting an outage out: test_faults_model_outage.py).
    desk = await start_desk(model=True, chatops_model_retries=1, chatops_model_outage_minutes=0)
    desk.model.fail(500, times=2)
    await desk.send.event(ev.app_mention("<@UBOT> hello"))

    run = await desk.only_run()
    assert run.status == RunStatus.failed
    assert "model" in (run.error or "") and "500" in (run.error or "")
    assert len(desk.model.requests) == 2 and desk.model.overrun == 0
    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts and "failed" in outcome.text
