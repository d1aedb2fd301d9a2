from __future__ import annotations

import json
from typing import Any

import pytest

from agents.actions.chat import CHAT_ACTIONS
from agents.actions.tickets import TICKET_ACTIONS
from agents.conversation import TurnContext
from agents.offline import OfflinePlanner

TOOLS = [cls().tool() for cls in [*TICKET_ACTIONS, *CHAT_ACTIONS]]
SYSTEM = {"role": "system", "content": "You are ops."}
ASKED_BY = TurnContext(requester="U0REQ")  # who "me" is comes from the run's context, not the prompt's text


async def _plan(text: str, tools: list[dict[str, Any]] = TOOLS) -> tuple[str, dict[str, Any]]:
    turn = await OfflinePlanner().next_turn(
        [SYSTEM, {"role": "user", "content": text}], tools, context=ASKED_BY
    )
    assert turn.content is None, f"expected a tool call, got {turn.content!r}"
    assert len(turn.tool_calls) == 1
    call = turn.tool_calls[0]
    return call.name, json.loads(call.arguments)


def test_it_says_what_it_is() -> None:
    planner = OfflinePlanner()
    assert planner.label == "offline planner"
    assert planner.offline is True


async def test_explicit_action_form() -> None:
    name, args = await _plan('ticket_update ticket_id=12 title="Disk full on db1" priority=high')
    assert (name, args) == (
        "ticket_update",
        {"ticket_id": 12, "title": "Disk full on db1", "priority": "high"},
    )


async def test_explicit_form_works_for_configured_actions() -> None:
    tools = [{"type": "function", "function": {"name": "restart_service", "parameters": {}}}]
    name, args = await _plan("restart_service service=web force=true count=-2", tools)
    assert (name, args) == ("restart_service", {"service": "web", "force": True, "count": -2})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("create a ticket for login bug", ("ticket_create", {"title": "login bug"})),
        (
            "<@UBOT> please open a new ticket about Disk full on db1, high priority",
            ("ticket_create", {"title": "Disk full on db1", "priority": "high"}),
        ),
        (
            "create a ticket for login bug and assign it to me",
            ("ticket_create", {"title": "login bug", "assignee": "U0REQ"}),
        ),
        (
            "close ticket #4 because fixed in 1.2",
            ("ticket_close", {"ticket_id": 4, "resolution": "fixed in 1.2"}),
        ),
        ("resolve issue 9", ("ticket_close", {"ticket_id": 9})),
        (
            "comment on ticket 3: looks good to me",
            ("ticket_comment", {"ticket_id": 3, "text": "looks good to me"}),
        ),
        ("assign ticket 5 to <@U999|bob>", ("ticket_update", {"ticket_id": 5, "assignee": "U999"})),
        ("assign ticket 5 to me", ("ticket_update", {"ticket_id": 5, "assignee": "U0REQ"})),
        ("find open tickets about login", ("ticket_find", {"query": "login", "status": "open"})),
        ("list tickets", ("ticket_find", {})),
        ("reply hello   there", ("slack_reply", {"text": "hello there"})),
    ],
)
async def test_plain_requests(text: str, expected: tuple[str, dict[str, Any]]) -> None:
    assert await _plan(text) == expected


async def test_unknown_text_gets_help_naming_the_offline_planner() -> None:
    turn = await OfflinePlanner().next_turn(
        [SYSTEM, {"role": "user", "content": "what's the weather?"}], TOOLS
    )
    assert turn.tool_calls == []
    assert turn.content is not None
    assert "offline planner" in turn.content
    assert "ticket_create" in turn.content  # it lists what it can do


async def test_a_plain_request_for_a_tool_the_agent_lacks_gets_help() -> None:
    only_find = [t for t in TOOLS if t["function"]["name"] == "ticket_find"]
    turn = await OfflinePlanner().next_turn(
        [SYSTEM, {"role": "user", "content": "create a ticket for x"}], only_find
    )
    assert turn.tool_calls == [] and "offline planner" in (turn.content or "")


async def test_conclusion_after_tool_results() -> None:
    planner = OfflinePlanner()
    first = await planner.next_turn([SYSTEM, {"role": "user", "content": "create a ticket for x"}], TOOLS)
    messages = [
        SYSTEM,
        {"role": "user", "content": "create a ticket for x"},
        first.message(),
        {
            "role": "tool",
            "tool_call_id": first.tool_calls[0].id,
            "content": "created ticket #1 [open, normal] x",
        },
    ]
    done = await planner.next_turn(messages, TOOLS)
    assert done.tool_calls == []
    assert done.content == "(offline planner) Done:\ncreated ticket #1 [open, normal] x"

    messages[-1] = {"role": "tool", "tool_call_id": "x", "content": "error: there is no ticket #1"}
    failed = await planner.next_turn(messages, TOOLS)
    assert failed.content == "(offline planner) I could not do it:\nerror: there is no ticket #1"
