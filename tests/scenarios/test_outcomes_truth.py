"""Outcomes tell the truth: a run that did nothing (a request the planner could not act on,
arguments the model never got right, an action refused) is not shown as ✅ succeeded, and is
counted as "did nothing" in the summary; a run that only talked is a conversation that
succeeded; a failure rolled back automatically shows ❌.
"""

from __future__ import annotations

from fakes import slack_events as ev
from fakes import wait_until

from storage.models import RunStatus, StepStatus


async def test_a_request_the_offline_planner_cannot_act_on_did_nothing(start_desk):
    desk = await start_desk()
    mention = ev.app_mention("<@UBOT> make the coffee stronger")
    await desk.send.event(mention)
    run = await desk.only_run()
    assert run.status == RunStatus.no_action
    assert run.error == "Nothing was done: the request was not understood."
    outcome = desk.slack.messages[run.outcome_ts]
    assert outcome.text.startswith(f":warning: Run #{run.id} (ops) did nothing.")
    assert ":white_check_mark:" not in outcome.text
    assert "only understand a few forms" in outcome.text  # what it can do instead
    # The reaction follows the outcome post: wait for it rather than read it at once.
    await wait_until(lambda: "warning" in desk.slack.reactions_on("C1", mention["event"]["ts"]))
    assert "chatops_undo" not in outcome.action_ids()


async def test_calls_that_were_all_refused_did_nothing(start_desk):
    desk = await start_desk(model=True)
    desk.model.call("deploy_everything", {"where": "prod"})
    desk.model.call("ticket_create", {"title": ""})
    desk.model.answer("I could not do it.")
    await desk.send.event(ev.app_mention("<@UBOT> deploy everything"))
    run = await desk.only_run()
    assert run.status == RunStatus.no_action
    assert (run.error or "").startswith("Nothing was done: every call was refused (deploy_everything:")
    assert [s.status for s in await desk.steps(run.id) if s.kind == "action"] == [StepStatus.rejected] * 2
    assert await desk.tickets() == []


async def test_an_answer_without_calls_is_a_conversation_that_succeeded(start_desk):
    desk = await start_desk(model=True)
    desk.model.answer("Hi! I can open, update and close tickets, and reply in Slack.")
    await desk.send.event(ev.app_mention("<@UBOT> hi, what can you do?"))
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded and run.error is None
