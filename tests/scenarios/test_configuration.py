"""A bad configuration file stops `chatops serve` before it listens, naming file, entry and field."""

from __future__ import annotations

import pytest

from agents.errors import ConfigError


@pytest.mark.parametrize(
    ("toml", "entry", "field", "words"),
    [
        (
            '[[agents]]\nname = "ops"\nactions = ["ticket_create"]\ncolour = "blue"\n',
            "agents[0] (ops)",
            "colour",
            "unknown key",
        ),
        (
            '[[agents]]\nname = "ops"\nactions = ["restart"]\n',
            "agents[0] (ops)",
            "actions",
            "unknown action 'restart'",
        ),
        (
            '[[agents]]\nname = "ops"\nmax_steps = "many"\n',
            "agents[0] (ops)",
            "max_steps",
            "integer",
        ),
        (
            '[[agents]]\nname = "ops"\n\n[[actions]]\nname = "restart"\nkind = "command"\nrun = "true"\n',
            "actions[0] (restart)",
            "description",
            "missing field",
        ),
    ],
    ids=["unknown-key", "unknown-action", "bad-type", "missing-field"],
)
async def test_a_bad_configuration_is_reported_and_nothing_starts(
    start_desk, fake_slack, toml, entry, field, words
):
    with pytest.raises(ConfigError) as caught:
        await start_desk(toml)
    message = str(caught.value)
    assert "chatops.toml" in message and entry in message and field in message and words in message
    assert fake_slack.calls == []  # nothing started: not even auth.test
