"""A reasoning model (OpenAI's o-series) refuses `max_tokens` and `temperature`: its
`[models."<name>"]` entry says to send `max_completion_tokens` and no temperature; without
one, the run fails at once and says what to set."""

from __future__ import annotations

from fakes import slack_events as ev

from storage.models import RunStatus

REASONING = """
[models."fake-model"]
max_tokens_param = "max_completion_tokens"
temperature = false

[[agents]]
name = "ops"
default = true
max_output_tokens = 4000
"""


async def test_a_reasoning_model_is_asked_as_its_entry_says(start_desk):
    desk = await start_desk(REASONING, model=True)
    model = desk.model
    model.reasoning = True
    model.call("ticket_create", {"title": "Printer on fire"}).answer("Created ticket #1.")
    await desk.send.event(ev.app_mention("<@UBOT> the printer is on fire, open a ticket"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    assert len(await desk.tickets()) == 1
    assert len(model.requests) == 2
    for body in model.requests:
        assert body["max_completion_tokens"] == 4000
        assert "max_tokens" not in body and "temperature" not in body


async def test_a_reasoning_model_without_its_entry_fails_at_once_saying_what_to_set(start_desk):
    desk = await start_desk(model=True, chatops_model_retries=4)
    desk.model.reasoning = True
    desk.model.answer("never sent")
    await desk.send.event(ev.app_mention("<@UBOT> hello"))

    run = await desk.only_run()
    assert run.status == RunStatus.failed
    assert 'max_tokens_param = "max_completion_tokens" under [models."fake-model"]' in (run.error or "")
    assert len(desk.model.requests) == 1  # a refused request is not sent again
    assert "max_completion_tokens" in desk.slack.posts()[-1].text
