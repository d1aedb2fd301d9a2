"""OpenAIPlanner against a loopback OpenAI-compatible server: what it sends, how it reads an
answer that cannot be used as it is (cut off, empty, a refusal, careless call ids), and which
failures it tries again (a server down or busy) and which not (a request the server refuses).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fakes import FakeModel

from agents.errors import ModelError
from agents.model import OpenAIPlanner, make_client

SYSTEM = {"role": "system", "content": "You are ops."}
ASK = {"role": "user", "content": "open a ticket for the printer"}
TOOL = {
    "type": "function",
    "function": {
        "name": "ticket_create",
        "description": "Create a ticket",
        "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
    },
}


@pytest.fixture
def server() -> Iterator[FakeModel]:
    with FakeModel(strict=True) as model:
        yield model


@pytest.fixture
async def planner(server: FakeModel) -> AsyncIterator[OpenAIPlanner]:
    client = make_client(api_key="sk-test", base_url=server.url, timeout=5)
    yield OpenAIPlanner(client, "fake-model", max_output_tokens=300, temperature=0.2, retries=3)
    await client.close()


async def test_every_request_says_tool_choice_auto_and_carries_the_output_limit(server, planner):
    server.call("ticket_create", {"title": "Printer"}).answer("Done.")
    await planner.next_turn([SYSTEM, ASK], [TOOL])
    await planner.next_turn([SYSTEM, ASK], [])

    with_tools, without = server.requests
    assert with_tools["tool_choice"] == "auto" and with_tools["tools"] == [TOOL]
    assert "tool_choice" not in without and "tools" not in without
    for body in server.requests:
        assert body["max_tokens"] == 300 and body["temperature"] == 0.2
    assert server.problems == []


async def test_a_reasoning_model_gets_max_completion_tokens_and_no_temperature(server):
    server.reasoning = True
    server.answer("Hello.")
    client = make_client(api_key="sk-test", base_url=server.url, timeout=5)
    reasoner = OpenAIPlanner(
        client, "o3-mini", max_output_tokens=4000, max_tokens_param="max_completion_tokens", temperature=None
    )
    try:
        turn = await reasoner.next_turn([SYSTEM, ASK], [TOOL])
    finally:
        await client.close()
    assert turn.content == "Hello."
    [body] = server.requests
    assert body["max_completion_tokens"] == 4000
    assert "max_tokens" not in body and "temperature" not in body


async def test_a_reasoning_model_asked_with_max_tokens_fails_at_once_saying_what_to_configure(
    server, planner
):
    server.reasoning = True
    server.answer("never")
    with pytest.raises(ModelError) as refused:
        await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert not refused.value.transient
    assert "HTTP 400" in str(refused.value) and "max_completion_tokens" in str(refused.value)
    assert '[models."fake-model"]' in str(refused.value)
    assert len(server.requests) == 1


async def test_the_assistant_message_echoed_back_has_content_not_null(server, planner):
    server.call("ticket_create", {"title": "Printer"}).answer("Done.")
    turn = await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert turn.message()["content"] == ""
    result = {"role": "tool", "tool_call_id": turn.tool_calls[0].id, "content": "created ticket #1"}
    # A turn journaled by an older version, with its null, goes out as "" too.
    old = {**turn.message(), "content": None}
    assert (await planner.next_turn([SYSTEM, ASK, old, result], [TOOL])).content == "Done."
    assert server.messages(1)[2]["content"] == ""
    assert server.problems == []


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "invalid_request_error"), (404, "not_found_error"), (422, "Unprocessable")],
)
async def test_a_request_the_server_refuses_is_not_sent_again(server, planner, status, error_type):
    server.fail(status, times=5, error_type=error_type)
    with pytest.raises(ModelError) as refused:
        await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert not refused.value.transient
    assert f"refused the request (HTTP {status}" in str(refused.value)
    assert len(server.requests) == 1


async def test_a_request_that_crashes_the_server_twice_is_not_sent_a_third_time(server, planner):
    server.fail(500, times=5, error_type="internal_server_error")
    with pytest.raises(ModelError) as crashed:
        await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert not crashed.value.transient
    assert "failed on this request 2 times" in str(crashed.value)
    assert len(server.requests) == 2


async def test_a_crash_that_passes_is_ridden_out(server, planner):
    server.fail(500, error_type="internal_server_error").answer("Done.")
    assert (await planner.next_turn([SYSTEM, ASK], [TOOL])).content == "Done."
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(503, "server_error"), (502, "bad_gateway"), (429, "rate_limit_exceeded"), (500, "server_error")],
)
async def test_a_server_down_or_busy_is_tried_again_and_then_waited_out(server, planner, status, error_type):
    server.fail(status, times=10, error_type=error_type)
    with pytest.raises(ModelError) as down:
        await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert down.value.transient  # the run waits the outage out (agents/loop.py)
    assert len(server.requests) == 4  # the first try and 3 retries


async def test_an_unreachable_server_is_an_outage(server):
    client = make_client(api_key="sk-test", base_url=server.url, timeout=5)
    server.stop()
    gone = OpenAIPlanner(client, "fake-model", retries=1)
    try:
        with pytest.raises(ModelError) as down:
            await gone.next_turn([SYSTEM, ASK], [TOOL])
    finally:
        await client.close()
    assert down.value.transient and "could not reach" in str(down.value)


async def test_an_answer_cut_off_at_the_limit_is_not_a_call_and_the_model_is_told(server, planner):
    server.cut(call=("ticket_create", '{"title": "Printer on f'))
    server.call("ticket_create", {"title": "Printer on fire"})
    turn = await planner.next_turn([SYSTEM, ASK], [TOOL])

    assert [(c.name, c.arguments) for c in turn.tool_calls] == [
        ("ticket_create", '{"title": "Printer on fire"}')
    ]
    first, second = server.requests
    note = second["messages"][-1]
    assert second["messages"][:-1] == first["messages"]  # the same prefix, and one note after it
    assert note["role"] == "user" and "cut off" in note["content"] and "300 tokens" in note["content"]
    assert turn.completion_tokens > 5 + 1  # both answers' tokens count: the cut one's too


async def test_an_answer_cut_off_twice_fails_the_turn_naming_the_limit(server, planner):
    server.cut(call=("ticket_create", '{"title": "Pri')).cut("The tickets are: 1, 2, ")
    with pytest.raises(ModelError) as cut:
        await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert not cut.value.transient
    assert "cut off twice" in str(cut.value) and "max_output_tokens" in str(cut.value)


async def test_an_empty_answer_is_asked_again_and_an_empty_one_again_counts_as_not_understood(
    server, planner
):
    server.empty().answer("Nothing to do here.")
    turn = await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert turn.content == "Nothing to do here." and turn.understood
    assert "was empty" in server.messages(1)[-1]["content"]

    server.empty().answer("   ")
    turn = await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert not turn.understood and not turn.tool_calls
    assert len(server.requests) == 4


async def test_a_refusal_is_the_answer(server, planner):
    server.refuse("I can't help with that.")
    turn = await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert turn.content == "I can't help with that." and not turn.tool_calls
    assert turn.message() == {"role": "assistant", "content": "I can't help with that."}
    assert len(server.requests) == 1


@pytest.mark.parametrize("ids", [["same", "same"], [None, None]])
async def test_parallel_calls_get_an_id_each_whatever_the_server_gives(server, planner, ids: list[Any]):
    server.calls([("ticket_create", {"title": "A"}), ("ticket_create", {"title": "B"})], ids=ids)
    turn = await planner.next_turn([SYSTEM, ASK], [TOOL])
    assert [c.arguments for c in turn.tool_calls] == ['{"title": "A"}', '{"title": "B"}']
    assert len({c.id for c in turn.tool_calls}) == 2 and all(c.id for c in turn.tool_calls)
