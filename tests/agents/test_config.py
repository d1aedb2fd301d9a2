from __future__ import annotations

import copy
import tomllib
from datetime import datetime, time
from pathlib import Path
from typing import Any

import pytest

from agents.config import (
    BUILTIN_ACTIONS,
    AgentConfig,
    AlertsConfig,
    ApprovalPolicy,
    CommandActionConfig,
    Config,
    HttpActionConfig,
    HttpRequestSpec,
    ParamSpec,
    TeamConfig,
    default_config,
    load_config,
    parse_config,
)
from agents.config_mcp import McpServerConfig, McpToolSettings, McpUndo
from agents.errors import ConfigError

# The example from the outside contract (CONTRACT.md, "The configuration file"), verbatim.
CONTRACT_EXAMPLE = """
[control]
admins = []                  # Slack user ids; empty = any full member of the workspace

[summary]
channel = "C0123SUMMARY"
time = "09:00"
timezone = "UTC"

[[agents]]
name = "ops"
channels = ["C0123OPS"]      # top-level messages here are requests for this agent
default = true               # mentions and DMs elsewhere go to the default agent
instructions = "You run operations for ..."   # jinja2 template
actions = ["restart_service", "ticket_create"]
max_steps = 12
on_failure = "rollback"      # or "keep"

[[actions]]
name = "restart_service"
description = "Restart one service"
kind = "command"
params = { service = "string" }
run = "systemctl restart {{ service }}"       # each parameter is shell-quoted when substituted
undo = "systemctl restart {{ service }}"
risk = "low"                 # "high" or reversible = false: a human approves first
timeout = 60
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chatops.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value, path


def _agent(**fields: Any) -> dict[str, Any]:
    return {"name": "ops", "default": True, **fields}


def _command(**fields: Any) -> dict[str, Any]:
    return {"name": "restart", "description": "Restart", "kind": "command", "run": "true", **fields}


def _error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="ops.toml")
    return info.value


def test_contract_example_parses(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONTRACT_EXAMPLE))

    agent = config.agent("ops")
    assert agent is not None and agent.default and agent.on_failure == "rollback"
    assert config.default_agent is agent
    assert config.agent_for_channel("C0123OPS") is agent
    assert config.summary.channel == "C0123SUMMARY"
    action = config.action_config("restart_service")
    assert isinstance(action, CommandActionConfig)
    assert action.param_specs()["service"].type == "string"
    assert action.is_reversible()  # it has an undo


def test_unknown_key_names_file_entry_and_field(tmp_path: Path) -> None:
    error, path = _problems(
        tmp_path,
        '[[agents]]\nname = "ops"\nmax_step = 3\n',
    )
    assert error.path == str(path)
    assert error.problems == [
        ("agents[0] (ops)", "max_step", "unknown key 'max_step' (did you mean 'max_steps'?)")
    ]
    assert f"{path}: agents[0] (ops): max_step: unknown key 'max_step' (did you mean 'max_steps'?)" in str(
        error
    )


def test_unknown_key_in_an_action_names_the_action(tmp_path: Path) -> None:
    error, path = _problems(
        tmp_path,
        '[[agents]]\nname = "ops"\nactions = ["restart"]\n'
        '[[actions]]\nname = "restart"\ndescription = "d"\nkind = "command"\nrun = "true"\ncomand = "x"\n',
    )
    assert ("actions[0] (restart)", "comand", "unknown key 'comand'") in error.problems
    assert f"{path}: actions[0] (restart): comand: unknown key 'comand'" in str(error)


def test_unknown_top_level_section() -> None:
    error = _error({"agents": [_agent()], "agent": {}})
    assert error.problems == [("agent", "", "unknown key 'agent' (did you mean 'agents'?)")]


def test_missing_fields() -> None:
    error = _error({"agents": [_agent()], "actions": [{"name": "restart", "kind": "command", "run": "x"}]})
    assert error.problems == [("actions[0] (restart)", "description", "missing field")]
    assert "ops.toml: actions[0] (restart): description: missing field" in str(error)

    error = _error({"agents": [{"default": True}]})
    assert error.problems == [("agents[0]", "name", "missing field")]

    error = _error({"summary": {"time": "09:00"}})
    assert error.problems == [("agents", "", "missing field")]


def test_missing_or_unknown_action_kind() -> None:
    no_kind = _error({"agents": [_agent()], "actions": [{"name": "a", "description": "d", "run": "x"}]})
    assert [(e, f) for e, f, _ in no_kind.problems] == [("actions[0] (a)", "kind")]

    bad_kind = _error({"agents": [_agent()], "actions": [_command(kind="ftp")]})
    assert [(e, f) for e, f, _ in bad_kind.problems] == [("actions[0] (restart)", "kind")]


def test_bad_types() -> None:
    error = _error({"agents": [_agent(max_steps="many", channels="C1")]})
    by_field = {f: (e, m) for e, f, m in error.problems}
    assert set(by_field) == {"max_steps", "channels"}
    assert by_field["max_steps"][0] == "agents[0] (ops)"
    assert "integer" in by_field["max_steps"][1]

    error = _error({"agents": [_agent(on_failure="explode")]})
    assert [(e, f) for e, f, _ in error.problems] == [("agents[0] (ops)", "on_failure")]

    error = _error({"agents": [_agent()], "actions": [_command(timeout="soon")]})
    assert [(e, f) for e, f, _ in error.problems] == [("actions[0] (restart)", "timeout")]
    assert "ops.toml: actions[0] (restart): timeout:" in str(error)


def test_bad_param_name_and_type() -> None:
    error = _error({"agents": [_agent()], "actions": [_command(params={"bad-name": "string"})]})
    entry, field, message = error.problems[0]
    assert (entry, field) == ("actions[0] (restart)", "params")
    assert "bad-name" in message

    error = _error({"agents": [_agent()], "actions": [_command(params={"service": "text"})]})
    assert error.problems and all(e == "actions[0] (restart)" for e, _, _ in error.problems)
    assert all(f.startswith("params.service") for _, f, _ in error.problems)


def test_duplicate_agent_names() -> None:
    error = _error({"agents": [_agent(), {"name": "ops"}]})
    assert error.problems == [("agents[1] (ops)", "name", "duplicate agent name")]
    assert "ops.toml: agents[1] (ops): name: duplicate agent name" in str(error)


def test_duplicate_and_builtin_action_names() -> None:
    error = _error({"agents": [_agent()], "actions": [_command(), _command(), _command(name="ticket_find")]})
    assert ("actions[1] (restart)", "name", "duplicate or built-in action name") in error.problems
    assert ("actions[2] (ticket_find)", "name", "duplicate or built-in action name") in error.problems
    assert len(error.problems) == 2


def test_agent_references_unknown_action() -> None:
    error = _error({"agents": [_agent(actions=["ticket_create", "reboot_world"])]})
    assert error.problems == [("agents[0] (ops)", "actions", "unknown action 'reboot_world'")]
    assert "ops.toml: agents[0] (ops): actions: unknown action 'reboot_world'" in str(error)


def test_customer_actions_and_action_autonomy_must_be_the_agents_actions() -> None:
    error = _error(
        {
            "agents": [
                _agent(
                    actions=["ticket_create"],
                    customer_actions=["slack_reply"],
                    action_autonomy={"ticket_find": "approve"},
                )
            ]
        }
    )
    assert error.problems == [
        ("agents[0] (ops)", "customer_actions", "'slack_reply' is not in its actions"),
        ("agents[0] (ops)", "action_autonomy", "'ticket_find' is not in its actions"),
    ]
    bad_level = _error({"agents": [_agent(autonomy="yolo")]})
    assert [(e, f) for e, f, _ in bad_level.problems] == [("agents[0] (ops)", "autonomy")]


def test_channel_served_twice() -> None:
    error = _error({"agents": [_agent(channels=["C1", "C2"]), {"name": "db", "channels": ["C2"]}]})
    assert error.problems == [("agents[1] (db)", "channels", "channel C2 is already served by ops")]


def test_more_than_one_default_agent() -> None:
    error = _error({"agents": [_agent(), _agent(name="db")]})
    assert [(e, f) for e, f, _ in error.problems] == [("agents", "default")]


def test_bad_summary_time_and_timezone() -> None:
    error = _error({"agents": [_agent()], "summary": {"time": "25:00", "timezone": "Mars/Olympus_Mons"}})
    assert ("summary", "time", "must be HH:MM, e.g. 09:00") in error.problems
    assert ("summary", "timezone", "unknown time zone 'Mars/Olympus_Mons'") in error.problems
    assert "ops.toml: summary: time: must be HH:MM" in str(error)


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    error, _ = _problems(
        tmp_path,
        '[[agents]]\nname = "ops"\ncolour = "red"\n[[agents]]\nname = "db"\nmax_steps = 0\n',
    )
    assert {(e, f) for e, f, _ in error.problems} == {
        ("agents[0] (ops)", "colour"),
        ("agents[1] (db)", "max_steps"),
    }


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert f"{path}: file: not found" in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    error, path = _problems(tmp_path, '[[agents]]\nname = "ops\n')
    assert error.problems[0][0] == "file"
    assert f"{path}: file: not valid TOML" in str(error)


def test_none_means_defaults() -> None:
    assert load_config(None) == default_config()


def test_default_config_has_one_default_agent_with_builtin_actions() -> None:
    config = default_config()
    assert len(config.agents) == 1
    agent = config.default_agent
    assert agent.default
    assert agent.actions == list(BUILTIN_ACTIONS)
    assert config.actions == []


def test_http_action_with_undo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_TOKEN", "t0ken-value")
    config = parse_config(
        {
            "agents": [_agent(actions=["silence"])],
            "actions": [
                {
                    "name": "silence",
                    "description": "Silence an alert",
                    "kind": "http",
                    "url": "https://alerts.example/api/silences",
                    "body": {"alert": "{{ alert }}", "minutes": "{{ minutes }}"},
                    "headers": {"Authorization": "Bearer {{ env.ALERTS_TOKEN }}"},
                    "params": {"alert": "string", "minutes": {"type": "integer", "default": 30}},
                    "undo": {
                        "method": "DELETE",
                        "url": "https://alerts.example/api/silences/{{ response.id }}",
                    },
                }
            ],
        }
    )
    action = config.action_config("silence")
    assert isinstance(action, HttpActionConfig)
    assert action.method == "POST"
    assert action.undo is not None and action.undo.method == "DELETE"
    assert action.is_reversible()
    assert action.param_specs()["minutes"].default == 30


def test_reversible_defaults() -> None:
    config = parse_config(
        {
            "agents": [_agent(actions=["a", "b", "c"])],
            "actions": [
                _command(name="a"),
                _command(name="b", read_only=True),
                _command(name="c", undo="true"),
            ],
        }
    )
    reversible = {a.name: a.is_reversible() for a in config.actions}
    assert reversible == {"a": False, "b": True, "c": True}


ENVIRON = {"SHOP_API": "https://shop.example/api", "SHOP_TOKEN": "tok-123456", "KUBECONFIG": "/k/config"}


def _http(**fields: Any) -> dict[str, Any]:
    return {
        "name": "refund",
        "description": "Refund",
        "kind": "http",
        "url": "https://shop.example/orders/{{ order }}",
        "params": {"order": "integer"},
        **fields,
    }


def _with_action(action: dict[str, Any]) -> dict[str, Any]:
    return {"agents": [_agent(actions=[action["name"]])], "actions": [action]}


NAME_RULE = "must start with a letter and have only letters, digits, '_' and '-' (at most 64 characters)"
PARAM_FORM = "must be a type name (string, integer, number, boolean) or a table like { type = ... }"
BAD = [
    # Keys and names: the closest valid one is suggested.
    ({"agents": [_agent(timout=3)]}, "agents[0] (ops)", "timout", "unknown key 'timout'"),
    (
        _with_action(_command(timout=3)),
        "actions[0] (restart)",
        "timout",
        "unknown key 'timout' (did you mean 'timeout'?)",
    ),
    (
        _with_action(_command(params={"s": {"typ": "string"}})),
        "actions[0] (restart)",
        "params.s.typ",
        "unknown key 'typ' (did you mean 'type'?)",
    ),
    (
        {"agents": [_agent()], "alerts": {"stuck_minute": 5}},
        "alerts",
        "stuck_minute",
        "unknown key 'stuck_minute' (did you mean 'stuck_minutes'?)",
    ),
    (
        {"agents": [_agent(actions=["ticket_craete"])]},
        "agents[0] (ops)",
        "actions",
        "unknown action 'ticket_craete' (did you mean 'ticket_create'?)",
    ),
    (
        {"agents": [_agent(actions=["ticket_create"], customer_actions=["ticket_creat"])]},
        "agents[0] (ops)",
        "customer_actions",
        "'ticket_creat' is not in its actions (did you mean 'ticket_create'?)",
    ),
    (
        _with_action(_command(kind="comand")),
        "actions[0] (restart)",
        "kind",
        "unknown kind 'comand' (did you mean 'command'?); must be one of: command, http",
    ),
    (
        {"agents": [_agent()], "actions": [{"name": "a", "description": "d", "run": "x"}]},
        "actions[0] (a)",
        "kind",
        'missing field (kind = "command" or "http")',
    ),
    (
        _with_action(_command(params={"s": "strng"})),
        "actions[0] (restart)",
        "params.s",
        "unknown type 'strng' (did you mean 'string'?); must be one of: string, integer, number, boolean",
    ),
    (
        _with_action(_command(params={"s": {"type": "integr"}})),
        "actions[0] (restart)",
        "params.s.type",
        "unknown type 'integr' (did you mean 'integer'?); must be one of: string, integer, number, boolean",
    ),
    (
        {"agents": [_agent(autonomy="aprove")]},
        "agents[0] (ops)",
        "autonomy",
        "unknown value 'aprove' (did you mean 'approve'?); must be one of: auto, approve, propose",
    ),
    (
        _with_action(_command(risk=3)),
        "actions[0] (restart)",
        "risk",
        "must be one of: low, medium, high",
    ),
    # Types, in the file's words.
    (_with_action(_command(params={"s": 3})), "actions[0] (restart)", "params.s", PARAM_FORM),
    (_with_action(_command(params={"s": ["a"]})), "actions[0] (restart)", "params.s", PARAM_FORM),
    (
        _with_action(_command(params="s")),
        "actions[0] (restart)",
        "params",
        'must be a table, like { key = "value" }',
    ),
    (
        _with_action(_command(params={"s": {"enum": [True]}})),
        "actions[0] (restart)",
        "params.s.enum",
        'must be a list of strings or numbers, like ["api", "web"]',
    ),
    (
        _with_action(_command(params={"n": {"type": "integer", "default": "x"}})),
        "actions[0] (restart)",
        "params.n",
        "the default 'x' is not of type integer",
    ),
    (
        _with_action(_command(params={"s": {"pattern": "[a-"}})),
        "actions[0] (restart)",
        "params.s.pattern",
        "not a valid regular expression: '[a-'",
    ),
    (
        _with_action(_command(params={"env": "string"})),
        "actions[0] (restart)",
        "params",
        "parameter name 'env' is reserved: templates use it already",
    ),
    (
        _with_action(_http(params={"response": "string"})),
        "actions[0] (refund)",
        "params",
        "parameter name 'response' is reserved: templates use it already",
    ),
    (_with_action(_command(timeout=-1)), "actions[0] (restart)", "timeout", "must be greater than 0"),
    (_with_action(_command(timeout=1e9)), "actions[0] (restart)", "timeout", "must be at most 3600"),
    (
        _with_action(_command(timeout=float("nan"))),
        "actions[0] (restart)",
        "timeout",
        "must be a finite number",
    ),
    ({"agents": [_agent(max_steps=1.5)]}, "agents[0] (ops)", "max_steps", "must be an integer"),
    ({"agents": [_agent(default="yes please")]}, "agents[0] (ops)", "default", "must be true or false"),
    ({"agents": [_agent(channels="C1")]}, "agents[0] (ops)", "channels", 'must be a list, like ["a", "b"]'),
    ({"agents": [_agent(name="9 lives")]}, "agents[0] (9 lives)", "name", NAME_RULE),
    ({"agents": [_agent()], "control": "x"}, "control", "", "must be a table"),
    (
        {"agents": [_agent()], "summary": {"time": time(9, 0)}},
        "summary",
        "time",
        "must be a string (in quotes)",
    ),
    ({"agents": [_agent()], "prices": {"m": 3}}, "prices", "m", "must be a table"),
    ({"agents": _agent()}, "agents", "", "must be an array of tables: write [[agents]] above each one"),
    ({"agents": []}, "agents", "", "at least one [[agents]] entry is needed"),
    ({"agents": ["ops"]}, "agents[0]", "", "must be a table"),
    (_with_action(_http(body=3)), "actions[0] (refund)", "body", "must be a string or a table"),
    (
        _with_action(_http(headers={"X": 3})),
        "actions[0] (refund)",
        "headers.X",
        "must be a string (in quotes)",
    ),
    (
        _with_action(_http(method="get")),
        "actions[0] (refund)",
        "method",
        "unknown value 'get'; must be one of: GET, POST, PUT, PATCH, DELETE",
    ),
    (_with_action(_http(undo="DELETE")), "actions[0] (refund)", "undo", "must be a table"),
    (_with_action(_http(undo={"method": "DELETE"})), "actions[0] (refund)", "undo.url", "missing field"),
    # The environment a command gets.
    (
        _with_action(_command(env="KUBECONFIG")),
        "actions[0] (restart)",
        "env",
        'must be a list, like ["a", "b"]',
    ),
    (
        _with_action(_command(env=["NOT_SET_ANYWHERE"])),
        "actions[0] (restart)",
        "env",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        _with_action(_command(env=["SLACK_BOT_TOKEN"])),
        "actions[0] (restart)",
        "env",
        "SLACK_BOT_TOKEN is chatops' own setting; it is never passed to a command",
    ),
    (
        _with_action(_command(env=["OPENAI_API_KEY"])),
        "actions[0] (restart)",
        "env",
        "OPENAI_API_KEY is chatops' own setting; it is never passed to a command",
    ),
    (
        _with_action(_command(env=["A-B"])),
        "actions[0] (restart)",
        "env",
        "'A-B' is not an environment variable name",
    ),
]


@pytest.mark.parametrize(("raw", "entry", "field", "message"), BAD)
def test_a_bad_configuration_is_reported_in_the_files_words(
    raw: dict[str, Any], entry: str, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="ops.toml", environ=ENVIRON)
    assert info.value.problems == [(entry, field, message)]


TEMPLATES = [
    (
        {"agents": [_agent(instructions="You are {{ agent.name }")]},
        "agents[0] (ops)",
        "instructions",
        "template syntax error on line 1: unexpected '}'",
    ),
    (
        {"agents": [_agent(instructions="Hi.\nHelp {{ usr }} in {{ channel }}.")]},
        "agents[0] (ops)",
        "instructions",
        "undefined variable 'usr' (did you mean 'user'?)",
    ),
    (
        {"agents": [_agent(instructions="{{ colour }}")]},
        "agents[0] (ops)",
        "instructions",
        "undefined variable 'colour'; it can use agent, channel, env, now, request, user",
    ),
    (
        {"agents": [_agent(instructions="{{ agent.nmae }}")]},
        "agents[0] (ops)",
        "instructions",
        "agent has no field 'nmae' (did you mean 'name'?)",
    ),
    (
        {"agents": [_agent(instructions="{{ request.txt }}")]},
        "agents[0] (ops)",
        "instructions",
        "request has no field 'txt' (did you mean 'text'?)",
    ),
    (
        {"agents": [_agent(instructions="Token: {{ env.NOT_SET_ANYWHERE }}")]},
        "agents[0] (ops)",
        "instructions",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        _with_action(_command(params={"service": "string"}, run="systemctl restart {{ servce }}")),
        "actions[0] (restart)",
        "run",
        "undefined variable 'servce' (did you mean 'service'?)",
    ),
    (
        _with_action(_command(run="true", undo="echo {{ service | shout }}", params={"service": "string"})),
        "actions[0] (restart)",
        "undo",
        "template error on line 1: No filter named 'shout'.",
    ),
    (
        _with_action(_command(run="echo {{ env[name] }}", params={"name": "string"})),
        "actions[0] (restart)",
        "run",
        "env can only be read with a fixed name, as env.NAME",
    ),
    (
        _with_action(_command(resource="service:{{ svc }}", params={"service": "string"})),
        "actions[0] (restart)",
        "resource",
        "undefined variable 'svc' (did you mean 'service'?)",
    ),
    (
        _with_action(_http(url="https://shop.example/orders/{{ ordr }}")),
        "actions[0] (refund)",
        "url",
        "undefined variable 'ordr' (did you mean 'order'?)",
    ),
    (
        _with_action(_http(url="https://{{ order }}.shop.example/")),
        "actions[0] (refund)",
        "url",
        "a parameter cannot stand in the URL's host or port; "
        "name the host before the first parameter, e.g. https://host/items/{{ id }}",
    ),
    (
        _with_action(_http(url="{{ env.SHOP_HOST }}/orders/{{ order }}")),
        "actions[0] (refund)",
        "url",
        "environment variable SHOP_HOST is not set",
    ),
    (
        _with_action(_http(headers={"Authorization": "Bearer {{ env.SHOP_TOKN }}"})),
        "actions[0] (refund)",
        "headers.Authorization",
        "environment variable SHOP_TOKN is not set",
    ),
    (
        _with_action(_http(body={"refund": {"order": "{{ order }}", "note": "{{ reason }}"}})),
        "actions[0] (refund)",
        "body.refund.note",
        "undefined variable 'reason'; it can use env, order",
    ),
    (
        _with_action(_http(body="{{ order")),
        "actions[0] (refund)",
        "body",
        "template syntax error on line 1: unexpected end of template, expected 'end of print statement'.",
    ),
    (
        _with_action(_http(url="https://shop.example/orders/{{ response.id }}")),
        "actions[0] (refund)",
        "url",
        "undefined variable 'response'; it can use env, order",
    ),
    (
        _with_action(_http(undo={"url": "{{ env.SHOP_API }}/refunds/{{ respone.id }}"})),
        "actions[0] (refund)",
        "undo.url",
        "undefined variable 'respone' (did you mean 'response'?)",
    ),
    (
        _with_action(_http(undo={"url": "https://{{ response.host }}/refunds"})),
        "actions[0] (refund)",
        "undo.url",
        "a parameter cannot stand in the URL's host or port; "
        "name the host before the first parameter, e.g. https://host/items/{{ id }}",
    ),
    (
        _with_action(_http(undo={"url": "https://shop.example/r", "headers": {"X": "{{ orderr }}"}})),
        "actions[0] (refund)",
        "undo.headers.X",
        "undefined variable 'orderr' (did you mean 'order'?)",
    ),
]


@pytest.mark.parametrize(("raw", "entry", "field", "message"), TEMPLATES)
def test_a_template_that_would_fail_is_caught_at_load(
    raw: dict[str, Any], entry: str, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="ops.toml", environ=ENVIRON)
    assert info.value.problems == [(entry, field, message)]
    assert f"ops.toml: {entry}: {field}: {message}" in str(info.value)


def test_every_template_problem_of_an_entry_is_reported_at_once() -> None:
    raw = _with_action(
        _command(
            params={"service": "string"},
            run="restart {{ servce }}",
            undo="restart {{ service }",
            resource="{{ env.NOT_SET_ANYWHERE }}",
            env=["NOT_SET_EITHER"],
        )
    )
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ=ENVIRON)
    assert [(f, m.split(" (")[0]) for _, f, m in info.value.problems] == [
        ("run", "undefined variable 'servce'"),
        ("undo", "not a usable command template: an expression `{{` is not closed"),
        ("resource", "environment variable NOT_SET_ANYWHERE is not set"),
        ("env", "environment variable NOT_SET_EITHER is not set"),
    ]


def test_good_templates_load() -> None:
    config = parse_config(
        {
            "agents": [
                _agent(
                    actions=["refund", "restart"],
                    instructions="{{ agent.name }} for {{ user }} in {{ channel }} at {{ now }}: "
                    "{{ request.text }} {% for a in agent.actions %}{{ a }} {% endfor %}",
                )
            ],
            "actions": [
                _http(
                    url="{{ env.SHOP_API }}/orders/{{ order }}?q={{ order }}",
                    headers={"Authorization": "Bearer {{ env.SHOP_TOKEN }}"},
                    body={"order": "{{ order }}", "tags": ["{{ order }}", 3]},
                    undo={"url": "{{ env.SHOP_API }}/refunds/{{ response.id }}", "body": "{{ order }}"},
                    resource="order:{{ order }}",
                ),
                _command(
                    params={"service": "string"}, run='systemctl restart "{{ service }}"', env=["KUBECONFIG"]
                ),
            ],
        },
        environ=ENVIRON,
    )
    assert [a.name for a in config.actions] == ["refund", "restart"]


def test_secret_values_are_the_environment_values_the_configuration_reads() -> None:
    environ = {
        **ENVIRON,
        "HOME": "/home/ops",
        "DEPLOY_KEY": "deploy-key-value",
        "GREETING": "hello there",
        "EMPTY": "",
        "UNREAD": "never-read",
    }
    config = parse_config(
        {
            "agents": [_agent(actions=["refund", "restart"], instructions="Say {{ env['GREETING'] }}.")],
            "actions": [
                _http(
                    url="{{ env.SHOP_API }}/orders/{{ order }}",
                    headers={"Authorization": "Bearer {{ env.SHOP_TOKEN }}"},
                    undo={"url": "{{ env.SHOP_API }}/refunds/{{ response.id }}"},
                ),
                _command(run="deploy {{ env.EMPTY }}", env=["KUBECONFIG", "DEPLOY_KEY", "HOME"]),
            ],
        },
        environ=environ,
    )
    assert config.environment_names() == {
        "GREETING",
        "SHOP_API",
        "SHOP_TOKEN",
        "EMPTY",
        "KUBECONFIG",
        "DEPLOY_KEY",
        "HOME",
    }
    assert config.secret_values(environ) == {
        "hello there",
        "https://shop.example/api",
        "tok-123456",
        "/k/config",
        "deploy-key-value",
    }  # HOME (and PATH, LANG, TZ) every command gets anyway; an empty value hides nothing
    assert default_config().secret_values(environ) == frozenset()


def test_secret_values_read_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATOPS_TEST_SECRET", "s3cr3t-value")
    config = parse_config({"agents": [_agent(instructions="{{ env.CHATOPS_TEST_SECRET }}")]})
    assert config.secret_values() == {"s3cr3t-value"}


# Every field of the file, with a valid value: the sweep below puts wrong values in each.
COMPLETE: dict[str, Any] = {
    "control": {
        "admins": ["U1"],
        "approval_timeout_hours": 24,
        "role_cache_minutes": 60,
        "max_handoff_depth": 3,
        "handoff_cycles": False,
        "approvers": ["U1", "U2"],
        "approvals": 1,
        "self_approval": True,
    },
    "summary": {"channel": "C1", "time": "09:00", "timezone": "UTC"},
    "alerts": {
        "channel": "C2",
        "stuck_minutes": 15,
        "window_minutes": 60,
        "min_runs": 5,
        "failure_rate": 0.5,
        "undo_rate": 0.3,
        "model_failures": 5,
        "slack_failures": 5,
        "pause_on_breach": True,
        "negative_votes": 3,
        "team": "T0OPS",
    },
    "teams": {"T0ABC": {"summary_channel": "C0SUM", "alerts_channel": "C0ALR"}},
    "prices": {"m": {"input": 0.15, "output": 0.6}},
    "models": {"m": {"max_tokens_param": "max_completion_tokens", "temperature": False}},
    "agents": [
        {
            "name": "ops",
            "description": "d",
            "channels": ["C1"],
            "default": True,
            "instructions": "hi",
            "model": "m",
            "actions": ["restart", "refund"],
            "max_steps": 12,
            "on_failure": "rollback",
            "autonomy": "auto",
            "action_autonomy": {"restart": "approve", "widgets__delete_widget": "propose"},
            "customer_actions": ["restart", "widgets__list_widgets"],
            "history_tokens": 3000,
            "max_output_tokens": 1024,
            "handoffs": ["deployer"],
            "mcp_servers": ["widgets", "shop"],
            "max_tokens_per_run": 20000,
            "max_cost_per_day": 1.5,
        },
        {"name": "deployer", "actions": ["restart"]},
    ],
    "actions": [
        {
            "name": "restart",
            "description": "d",
            "kind": "command",
            "params": {
                "s": {
                    "type": "string",
                    "description": "d",
                    "enum": ["a", "b"],
                    "required": False,
                    "default": "a",
                    "pattern": "^[a-z]$",
                    "allow_leading_dash": False,
                }
            },
            "run": "echo {{ s }}",
            "undo": "echo {{ s }}",
            "cwd": "/tmp",
            "env": ["KUBECONFIG"],
            "risk": "low",
            "reversible": True,
            "read_only": False,
            "idempotent": False,
            "resource": "s:{{ s }}",
            "timeout": 60,
            "autonomy": "approve",
            "customers": False,
            "approvers": ["U1", "U2"],
            "approvals": 2,
            "self_approval": False,
        },
        {
            "name": "refund",
            "description": "d",
            "kind": "http",
            "params": {"order": "integer"},
            "method": "POST",
            "url": "https://shop.example/orders/{{ order }}",
            "body": {"order": "{{ order }}"},
            "headers": {"X": "{{ order }}"},
            "undo": {
                "method": "DELETE",
                "url": "https://shop.example/r/{{ response.id }}",
                "body": "x",
                "headers": {},
            },
        },
    ],
    "mcp_servers": [
        {
            "name": "widgets",
            "command": ["python", "widgets.py"],
            "cwd": "/tmp",
            "env": {"KUBECONFIG": "{{ env.KUBECONFIG }}"},
            "tools": ["create_widget", "delete_widget", "list_widgets"],
            "undo": {
                "create_widget": {"tool": "delete_widget", "args": {"name": "{{ args.name }}"}},
                "delete_widget": "echo {{ args.name }}",
            },
            "settings": {
                "delete_widget": {
                    "description": "d",
                    "risk": "high",
                    "reversible": True,
                    "read_only": False,
                    "idempotent": True,
                    "customers": False,
                    "resource": "widget:{{ args.name }}",
                    "timeout": 30,
                    "autonomy": "approve",
                }
            },
            "timeout": 60,
            "connect_timeout": 30,
        },
        {
            "name": "shop",
            "url": "https://shop.example/mcp",
            "headers": {"Authorization": "Bearer {{ env.SHOP_TOKEN }}"},
            "undo": {
                "refund": {
                    "method": "POST",
                    "url": "https://shop.example/refunds/{{ result.id }}/cancel",
                    "headers": {"X": "{{ args.order }}"},
                    "body": {"why": "undo"},
                }
            },
        },
    ],
}
WRONG = ["text", 3, -1, 1.5, float("nan"), True, [1], ["a"], {"k": 1}, {}, time(9, 0), datetime(2024, 1, 1)]
LIBRARY_WORDS = (
    "Input should",
    "valid dictionary",
    "instance of",
    "Value error",
    "[type=",
    "pydantic",
    "Field required",
)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into COMPLETE, the tables themselves included."""
    paths = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += _leaves(value, (*path, index))
    return paths


def _replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(COMPLETE)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


def test_the_complete_example_loads_and_names_every_field() -> None:
    config = parse_config(COMPLETE, environ=ENVIRON)
    command, http = config.actions
    assert set(COMPLETE) == set(Config.model_fields)
    assert set(COMPLETE["agents"][0]) == set(AgentConfig.model_fields)
    assert set(COMPLETE["alerts"]) == set(AlertsConfig.model_fields)
    assert set(COMPLETE["teams"]["T0ABC"]) == set(TeamConfig.model_fields)
    assert set(COMPLETE["actions"][0]) == set(CommandActionConfig.model_fields)
    http_only = set(HttpActionConfig.model_fields) - set(CommandActionConfig.model_fields)
    assert http_only | {"name", "description", "kind", "params", "undo"} == set(COMPLETE["actions"][1])
    assert set(COMPLETE["actions"][0]["params"]["s"]) == set(ParamSpec.model_fields)
    assert set(COMPLETE["actions"][1]["undo"]) == set(HttpRequestSpec.model_fields)
    assert isinstance(command, CommandActionConfig) and isinstance(http, HttpActionConfig)
    stdio, remote = COMPLETE["mcp_servers"]
    assert set(stdio) | set(remote) == set(McpServerConfig.model_fields)
    assert set(stdio["settings"]["delete_widget"]) == set(McpToolSettings.model_fields)
    assert set(stdio["undo"]["create_widget"]) | set(remote["undo"]["refund"]) == set(
        McpUndo.model_fields
    ) - {"command"}


@pytest.mark.parametrize("path", _leaves(COMPLETE), ids=lambda p: ".".join(map(str, p)))
def test_no_wrong_value_anywhere_leaks_the_validation_librarys_words(path: tuple[Any, ...]) -> None:
    for value in WRONG:
        try:
            parse_config(_replaced(path, value), environ=ENVIRON)
        except ConfigError as e:
            for entry, field, message in e.problems:
                assert not any(w in message for w in LIBRARY_WORDS), (path, value, entry, field, message)
                assert message != "is not a valid value here", (path, value, field)


def test_the_readme_example_loads() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The configuration file (TOML)") :]
    example = section[section.index("```toml\n") + len("```toml\n") :]
    raw = tomllib.loads(example[: example.index("```")])
    config = parse_config(raw, environ={"SHOP_API": "https://shop.example/api", "SHOP_TOKEN": "t0ken"})
    assert [a.name for a in config.actions] == ["restart_service", "refund_order"]
    assert config.secret_values({"SHOP_API": "https://shop.example/api", "SHOP_TOKEN": "t0ken"}) == {
        "https://shop.example/api",
        "t0ken",
    }


# Budgets and the approval policy (issue 17) ------------------------------------------------


def test_an_action_s_approval_policy_falls_back_on_control_s() -> None:
    config = parse_config(
        {
            "control": {"approvers": ["U1", "U2", "U3"], "approvals": 2, "self_approval": False},
            "agents": [_agent(actions=["restart", "deploy"])],
            "actions": [
                _command(approvers=["U9"], approvals=1, self_approval=True),
                _command(name="deploy"),
            ],
        }
    )
    assert config.approval_policy("restart") == ApprovalPolicy(
        approvers=("U9",), needed=1, self_approval=True
    )
    assert config.approval_policy("deploy") == ApprovalPolicy(
        approvers=("U1", "U2", "U3"), needed=2, self_approval=False
    )
    assert config.approval_policy("ticket_create") == config.approval_policy()  # built-ins: [control]'s
    assert default_config().approval_policy() == ApprovalPolicy(approvers=(), needed=1, self_approval=True)


def test_a_two_person_rule_needs_two_approvers_to_be_possible() -> None:
    control = _error({"control": {"approvers": ["U1"], "approvals": 2}, "agents": [_agent()]})
    assert control.problems == [
        ("control", "approvals", "2 approvals need as many approvers; approvers lists 1")
    ]
    action = _error(
        {"agents": [_agent(actions=["restart"])], "actions": [_command(approvers=["U1"], approvals=2)]}
    )
    assert action.problems == [
        ("actions[0] (restart)", "approvals", "2 approvals need as many approvers; its approvers are 1")
    ]
    # Without a list, whoever may control agents may approve: two of them can always be found.
    parse_config({"control": {"approvals": 2}, "agents": [_agent()]})


def test_a_daily_cap_needs_a_price_for_the_model_it_names() -> None:
    error = _error({"agents": [_agent(model="gpt-x", max_cost_per_day=5)]})
    assert error.problems == [
        ("agents[0] (ops)", "max_cost_per_day", "needs a price for its model 'gpt-x' in [prices]")
    ]
    priced = parse_config(
        {
            "prices": {"gpt-x": {"input": 1, "output": 2}},
            "agents": [_agent(model="gpt-x", max_cost_per_day=5)],
        }
    )
    assert priced.agents[0].max_cost_per_day == 5
    assert _error({"agents": [_agent(max_tokens_per_run=0)]}).problems[0][1] == "max_tokens_per_run"
