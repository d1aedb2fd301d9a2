"""The tools as the model is shown them: length limits a grammar-constrained server can turn
into a grammar, while the arguments model still enforces the real ones."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agents.actions.base import SCHEMA_MAX_LENGTH
from agents.actions.registry import Registry
from agents.config import parse_config


def _lengths(node: Any) -> list[int]:
    if isinstance(node, dict):
        own = [node["maxLength"]] if "maxLength" in node else []
        return own + [n for v in node.values() for n in _lengths(v)]
    if isinstance(node, list):
        return [n for v in node for n in _lengths(v)]
    return []


CONFIG = parse_config(
    {
        "agents": [{"name": "ops", "actions": ["ticket_create", "ticket_comment", "slack_post", "note"]}],
        "actions": [
            {
                "name": "note",
                "description": "Write a note",
                "kind": "command",
                "params": {"text": "string"},
                "run": "echo -- {{ text }}",
                "read_only": True,
            }
        ],
    }
)
ACTIONS = Registry(CONFIG).for_agent(CONFIG.agents[0], customer=False)


def test_no_tool_states_a_length_a_grammar_cannot_hold() -> None:
    tools = [a.tool() for a in ACTIONS.values()]
    assert max(n for t in tools for n in _lengths(t)) <= SCHEMA_MAX_LENGTH
    # Short limits stay: they help a model and cost a grammar little.
    slack_post = ACTIONS["slack_post"].tool()["function"]["parameters"]["properties"]
    assert slack_post["channel"]["maxLength"] == 80
    assert slack_post["text"]["description"] == "Message text (Slack mrkdwn). At most 3000 characters."


@pytest.mark.parametrize(
    ("action", "field", "limit", "args"),
    [
        ("ticket_create", "description", 20000, {"title": "t"}),
        ("ticket_comment", "text", 20000, {"ticket_id": 1}),
        ("note", "text", 4096, {}),
    ],
)
def test_a_long_limit_is_said_in_words_and_still_enforced(action, field, limit, args) -> None:
    schema = ACTIONS[action].tool()["function"]["parameters"]["properties"][field]
    assert f"At most {limit} characters." in str(schema)
    model = ACTIONS[action].args_model
    model.model_validate({**args, field: "x" * limit})
    with pytest.raises(ValidationError):
        model.model_validate({**args, field: "x" * (limit + 1)})
