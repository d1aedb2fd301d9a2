"""A bad configuration file stops chatops before it listens, naming file, entry and field.

Templates count: a syntax error, an undefined variable or an unset environment variable in
instructions, a command, an HTTP request or an undo is found when the file is loaded, not
when a run first renders it (a crash loop, or a failure after a human approved the action).
"""

from __future__ import annotations

import subprocess

import pytest

from agents.errors import ConfigError
from scenarios.faults_support import chatops_command, environment, free_port

UNDO_TEMPLATE = """
[[agents]]
name = "ops"
actions = ["restart"]

[[actions]]
name = "restart"
description = "Restart a service"
kind = "command"
params = { service = "string" }
run = "systemctl restart {{ service }}"
undo = "systemctl restart {{ servce }}"
"""
HTTP_UNDO_ENV = """
[[agents]]
name = "ops"
actions = ["refund"]

[[actions]]
name = "refund"
description = "Refund an order"
kind = "http"
params = { order = "integer" }
url = "https://shop.example/orders/{{ order }}/refund"
undo = { url = "{{ env.CHATOPS_TEST_UNSET_API }}/refunds/{{ response.id }}" }
"""


@pytest.mark.parametrize(
    ("toml", "entry", "field", "words"),
    [
        (
            '[[agents]]\nname = "ops"\nactions = ["ticket_create"]\ncolour = "blue"\n',
            "agents[0] (ops)",
            "colour",
            "unknown key 'colour'",
        ),
        (
            '[[agents]]\nname = "ops"\nmax_step = 3\n',
            "agents[0] (ops)",
            "max_step",
            "unknown key 'max_step' (did you mean 'max_steps'?)",
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
            "must be an integer",
        ),
        (
            '[[agents]]\nname = "ops"\n\n[[actions]]\nname = "restart"\nkind = "command"\nrun = "true"\n',
            "actions[0] (restart)",
            "description",
            "missing field",
        ),
        (
            '[[agents]]\nname = "ops"\ninstructions = "You help {{ user }"\n',
            "agents[0] (ops)",
            "instructions",
            "template syntax error on line 1: unexpected '}'",
        ),
        (
            '[[agents]]\nname = "ops"\ninstructions = "You are {{ agent.nmae }}"\n',
            "agents[0] (ops)",
            "instructions",
            "agent has no field 'nmae' (did you mean 'name'?)",
        ),
        (
            UNDO_TEMPLATE,
            "actions[0] (restart)",
            "undo",
            "undefined variable 'servce' (did you mean 'service'?)",
        ),
        (
            HTTP_UNDO_ENV,
            "actions[0] (refund)",
            "undo.url",
            "environment variable CHATOPS_TEST_UNSET_API is not set",
        ),
        (
            '[[agents]]\nname = "ops"\n\n[[actions]]\nname = "x"\ndescription = "d"\nkind = "command"\n'
            'run = "true"\nparams = { service = 3 }\n',
            "actions[0] (x)",
            "params.service",
            "must be a type name (string, integer, number, boolean) or a table like { type = ... }",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-key-suggested",
        "unknown-action",
        "bad-type",
        "missing-field",
        "instructions-syntax",
        "instructions-attribute",
        "undo-undefined",
        "http-undo-unset-env",
        "param-form",
    ],
)
async def test_a_bad_configuration_is_reported_and_nothing_starts(
    start_desk, fake_slack, toml, entry, field, words
):
    with pytest.raises(ConfigError) as caught:
        await start_desk(toml)
    assert f"chatops.toml: {entry}: {field}: {words}" in str(caught.value)
    assert "Input should" not in str(caught.value)
    assert fake_slack.calls == []  # nothing started: not even auth.test


def test_chatops_serve_exits_on_a_template_error_and_says_where(tmp_path, fake_slack):
    path = tmp_path / "chatops.toml"
    path.write_text(UNDO_TEMPLATE, encoding="utf-8")
    env = environment(slack=fake_slack, database_url=f"sqlite:///{tmp_path / 'chatops.db'}", config=path)
    done = subprocess.run(
        [*chatops_command(), "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,  # it exits at once; a regression would serve until killed here
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"chatops: invalid configuration\n{path}: actions[0] (restart): undo: "
        "undefined variable 'servce' (did you mean 'service'?)\n"
    )
    assert fake_slack.calls == []
    assert not (tmp_path / "chatops.db").exists()
