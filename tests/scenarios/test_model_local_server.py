"""chatops against a small model behind a strict local OpenAI-compatible server (as
llama-cpp-python's is): tools it would leave out of the prompt without `tool_choice`, a null
content it crashes on, tool schemas too long for its grammar, an answer cut at the output
limit, parallel calls, refusals and empty answers. The server asserts what it received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeModel
from fakes import slack_events as ev

from agents.actions.base import SCHEMA_MAX_LENGTH
from storage.models import RunStatus, StepKind, StepStatus


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    """The model server of every desk in this module: a strict one."""
    with FakeModel(strict=True) as model:
        yield model


def _max_lengths(node: Any) -> list[int]:
    if isinstance(node, dict):
        own = [node["maxLength"]] if "maxLength" in node else []
        return own + [n for v in node.values() for n in _max_lengths(v)]
    if isinstance(node, list):
        return [n for v in node for n in _max_lengths(v)]
    return []


def _footer(message) -> str:
    [context] = [b for b in message.blocks or [] if b.get("type") == "context"]
    return str(context["elements"][0]["text"])


async def test_a_run_works_against_a_strict_local_server(start_desk):
    desk = await start_desk(model=True)
    model = desk.model
    long_description = "The printer on floor 3 is on fire. " * 30  # ~1000 characters
    model.call("ticket_create", {"title": "Printer on fire", "description": long_description})
    model.answer("Created ticket #1 for the printer.")
    await desk.send.event(ev.app_mention("<@UBOT> the printer is on fire, open a ticket"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    [ticket] = await desk.tickets()
    assert (ticket.title, ticket.description) == ("Printer on fire", long_description)
    assert model.problems == [] and model.overrun == 0 and len(model.requests) == 2
    for body in model.requests:
        assert body["tool_choice"] == "auto" and body["tools"]
        assert body["max_tokens"] == 1024 and body["temperature"] == 0.2
        assert max(_max_lengths(body["tools"])) <= SCHEMA_MAX_LENGTH
    [create] = [t for t in model.requests[0]["tools"] if t["function"]["name"] == "ticket_create"]
    description = create["function"]["parameters"]["properties"]["description"]
    assert "maxLength" not in description and "At most 20000 characters." in description["description"]
    echoed = model.messages(1)[-2]
    assert echoed["role"] == "assistant" and echoed["content"] == "" and echoed["tool_calls"]

    outcome = desk.slack.posts()[-1]
    assert outcome.ts == run.outcome_ts
    tokens = run.prompt_tokens + run.completion_tokens
    assert tokens > 0 and _footer(outcome).endswith(f"2 model turns, 1 action · {tokens:,} tokens")


async def test_parallel_calls_in_one_turn_each_get_their_result(start_desk):
    desk = await start_desk(model=True)
    model = desk.model
    model.calls(
        [("ticket_create", {"title": "Printer on fire"}), ("ticket_create", {"title": "Toner empty"})]
    )
    model.answer("Created tickets #1 and #2.")
    await desk.send.event(ev.app_mention("<@UBOT> open tickets for the printer fire and the toner"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    assert sorted(t.title for t in await desk.tickets()) == ["Printer on fire", "Toner empty"]
    *_, turn, first, second = model.messages(1)
    assert [first["tool_call_id"], second["tool_call_id"]] == [c["id"] for c in turn["tool_calls"]]
    assert first["content"].startswith("created ticket #1") and second["content"].startswith(
        "created ticket #2"
    )
    assert model.problems == []


async def test_a_request_that_crashes_the_server_fails_the_run_at_once(start_desk):
    desk = await start_desk(model=True, chatops_model_retries=4)
    desk.model.fail(500, times=10, error_type="internal_server_error")
    await desk.send.event(ev.app_mention("<@UBOT> open a ticket for the printer"))

    run = await desk.only_run()
    assert run.status == RunStatus.failed  # not waiting for a server that is up
    assert "failed on this request 2 times" in (run.error or "")
    assert len(desk.model.requests) == 2  # one more try in case it passed, then no more
    [step] = await desk.steps(run.id)
    assert (step.kind, step.status, step.data) == (StepKind.model, StepStatus.failed, {"transient": False})


async def test_an_answer_cut_at_the_output_limit_is_no_call_and_the_model_is_told(start_desk):
    desk = await start_desk('[[agents]]\nname = "ops"\ndefault = true\nmax_output_tokens = 200\n', model=True)
    model = desk.model
    model.cut(call=("ticket_create", '{"title": "Printer on f'))
    model.call("ticket_create", {"title": "Printer on fire"})
    model.answer("Created ticket #1.")
    await desk.send.event(ev.app_mention("<@UBOT> the printer is on fire, open a ticket"))

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    [ticket] = await desk.tickets()
    assert ticket.title == "Printer on fire"
    assert [b["max_tokens"] for b in model.requests] == [200, 200, 200]
    note = model.messages(1)[-1]
    assert note["role"] == "user" and "cut off at the output limit of 200 tokens" in note["content"]
    assert "cut off" not in json.dumps(model.messages(2))  # the note was for that turn only
    steps = await desk.steps(run.id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.model, StepStatus.succeeded),
        (StepKind.action, StepStatus.succeeded),
        (StepKind.model, StepStatus.succeeded),
    ]
    assert model.problems == []


async def test_a_refusal_is_the_runs_answer(start_desk):
    desk = await start_desk(model=True)
    desk.model.refuse("I can't help with that.")
    await desk.send.event(ev.app_mention("<@UBOT> write me a poem about the boss"))

    run = await desk.only_run()
    assert run.outcome == "I can't help with that."
    assert "I can't help with that." in desk.slack.posts()[-1].text
    assert await desk.tickets() == []


async def test_a_model_that_answers_nothing_did_nothing(start_desk):
    desk = await start_desk(model=True)
    desk.model.empty().empty()
    await desk.send.event(ev.app_mention("<@UBOT> hmm"))

    run = await desk.only_run()
    assert run.status == RunStatus.no_action
    assert "not understood" in (run.error or "")
    assert "was empty" in desk.model.messages(1)[-1]["content"]
    assert len(desk.model.requests) == 2 and desk.model.problems == []


async def test_made_up_tools_and_arguments_go_back_as_errors_the_server_takes(start_desk):
    desk = await start_desk(model=True)
    model = desk.model
    model.calls([("deploy_everything", {"where": "prod"}), ("ticket_create", {"title": ""})])
    model.answer("I could not do it.")
    await desk.send.event(ev.app_mention("<@UBOT> deploy and open a ticket"))

    run = await desk.only_run()
    assert run.status == RunStatus.no_action
    unknown, invalid = model.tool_results(1)
    assert unknown.startswith("error:") and "deploy_everything" in unknown
    assert invalid.startswith("error:") and "title" in invalid
    assert model.problems == []
