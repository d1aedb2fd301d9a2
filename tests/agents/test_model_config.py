"""The configuration of what chatops asks a model for: an agent's `max_output_tokens`, and a
model's `[models."<name>"]` entry (reasoning models take `max_completion_tokens` and no
`temperature`), and the planner each agent gets from them."""

from __future__ import annotations

from typing import Any

import pytest

from agents.config import parse_config
from agents.errors import ConfigError
from agents.model import OpenAIPlanner
from bot.services import planner_factory
from bot.settings import Settings


def _config(models: dict[str, Any] | None = None, **agent: Any) -> Any:
    raw: dict[str, Any] = {"agents": [{"name": "ops", **agent}]}
    if models is not None:
        raw["models"] = models
    return parse_config(raw)


def test_the_defaults_send_max_tokens_1024_and_a_low_temperature() -> None:
    config = _config()
    assert config.agents[0].max_output_tokens == 1024
    shape = config.model("gpt-4o-mini")
    assert (shape.max_tokens_param, shape.temperature) == ("max_tokens", 0.2)


def test_a_models_entry_shapes_its_requests() -> None:
    config = _config({"o3-mini": {"max_tokens_param": "max_completion_tokens", "temperature": False}})
    assert config.model("o3-mini").max_tokens_param == "max_completion_tokens"
    assert config.model("o3-mini").temperature is False
    assert config.model("gpt-4o-mini").temperature == 0.2  # others keep the defaults
    assert _config({"m": {"temperature": 0}}).model("m").temperature == 0.0  # 0 is a temperature, not false


@pytest.mark.parametrize(
    ("models", "agent", "field", "words"),
    [
        ({"m": {"temperature": True}}, {}, "m.temperature", "a number from 0 to 2, or false"),
        ({"m": {"temperature": 3}}, {}, "m.temperature", "a number from 0 to 2, or false"),
        ({"m": {"max_tokens_param": "max_completion"}}, {}, "m.max_tokens_param", "max_completion_tokens"),
        ({"m": {"temprature": 1}}, {}, "m.temprature", "did you mean 'temperature'"),
        (None, {"max_output_tokens": 0}, "max_output_tokens", "at least 16"),
    ],
)
def test_a_wrong_value_is_reported_where_it_is(models, agent, field, words) -> None:
    with pytest.raises(ConfigError) as bad:
        _config(models, **agent)
    [(_, where, message)] = bad.value.problems
    assert where == field and words in message


def test_each_agent_gets_a_planner_for_its_model_and_output_limit() -> None:
    config = parse_config(
        {
            "models": {"o3-mini": {"max_tokens_param": "max_completion_tokens", "temperature": False}},
            "agents": [
                {"name": "ops", "default": True},
                {"name": "thinker", "model": "o3-mini", "max_output_tokens": 8000},
                {"name": "terse", "max_output_tokens": 200},
            ],
        }
    )
    settings = Settings(openai_api_key="sk-test", chatops_model="small-model", chatops_model_retries=3)
    planner_for, _ = planner_factory(settings, config)
    ops, thinker, terse = (planner_for(a) for a in config.agents)
    assert (
        isinstance(ops, OpenAIPlanner)
        and isinstance(thinker, OpenAIPlanner)
        and isinstance(terse, OpenAIPlanner)
    )
    assert (ops.model, ops.max_output_tokens, ops.max_tokens_param, ops.temperature) == (
        "small-model",
        1024,
        "max_tokens",
        0.2,
    )
    assert (thinker.model, thinker.max_output_tokens, thinker.max_tokens_param, thinker.temperature) == (
        "o3-mini",
        8000,
        "max_completion_tokens",
        None,
    )
    assert (terse.model, terse.max_output_tokens) == ("small-model", 200)
    assert ops.retries == 3 and ops.client is thinker.client  # one client for all
    assert planner_for(config.agents[0]) is ops
