"""The model server times out, fails, or never answers: the openai client's retries ride out the
passing trouble unseen by the journal; a model that never answers, once the outage allowance
(CHATOPS_MODEL_OUTAGE_MINUTES; waiting it out is in test_faults_model_outage.py) is spent,
fails the run cleanly, and the run's earlier steps are rolled back.
"""

from __future__ import annotations

from fakes import slack_events as ev

from storage.models import RunStatus, StepKind, StepStatus


async def test_a_model_that_times_out_then_fails_then_recovers_is_retried_and_the_run_succeeds(start_desk):
    desk = await start_desk(model=True, chatops_model_timeout=0.5, chatops_model_retries=3)
    model = desk.model
    model.answer("too late: the client gave up on this one", held=True)  # a timeout
    model.fail(500)
    model.call("ticket_create", {"title": "Despite the flaky model"})
    model.answer("Created the ticket.")
    await desk.send.event(ev.app_mention("<@UBOT> open a ticket while the model is flaky"))

    run = await desk.only_run(timeout=20)
    assert run.status == RunStatus.succeeded, run.error
    assert len(model.requests) == 4 and model.remaining == 0 and model.overrun == 0
    [ticket] = await desk.tickets()
    assert ticket.title == "Despite the flaky model"
    steps = await desk.steps(run.id)
    # The client's retries are not steps: the journal shows two clean model turns.
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
    assert "Created the ticket." in desk.slack.posts()[-1].text


async def test_a_model_that_never_answers_fails_the_run_and_rolls_back_its_earlier_steps(start_desk):
    desk = await start_desk(
        model=True, chatops_model_timeout=0.5, chatops_model_retries=1, chatops_model_outage_minutes=0
    )
    slack, model = desk.slack, desk.model
    model.call("slack_reply", {"text": "Working on the outage."})
    model.call("ticket_create", {"title": "Outage"})
    model.answer("never sent", held=True)  # the call ...
    model.answer("never sent either", held=True)  # ... and its retry time out
    mention = ev.app_mention("<@UBOT> handle the outage")
    ts = mention["event"]["ts"]
    await desk.send.event(mention)

    run = await desk.only_run(timeout=20)
    assert run.status == RunStatus.rolled_back
    assert "did not answer in time" in (run.error or "")
    assert await desk.tickets() == []  # the ticket was deleted again
    _, reply, outcome = slack.thread("C1", ts)
    assert reply.deleted  # and the reply taken back
    assert [c.params["ts"] for c in slack.calls_to("chat.delete")] == [reply.ts]
    assert outcome.ts == run.outcome_ts
    assert "rolled back" in outcome.text and "did not answer in time" in outcome.text
    assert "chatops_undo" not in outcome.action_ids()
    steps = await desk.steps(run.id)
    assert [(s.kind, s.name if s.kind != StepKind.model else "", s.status) for s in steps] == [
        (StepKind.model, "", StepStatus.succeeded),
        (StepKind.action, "slack_reply", StepStatus.compensated),
        (StepKind.model, "", StepStatus.succeeded),
        (StepKind.action, "ticket_create", StepStatus.compensated),
        (StepKind.model, "", StepStatus.failed),
        (StepKind.compensation, "ticket_create", StepStatus.succeeded),  # newest first
        (StepKind.compensation, "slack_reply", StepStatus.succeeded),
    ]
    assert "did not answer in time" in (steps[4].error or "")
    assert len(model.requests) == 4 and model.overrun == 0
