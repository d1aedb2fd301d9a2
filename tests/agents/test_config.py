from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.config import (
    BUILTIN_ACTIONS,
    CommandActionConfig,
    HttpActionConfig,
    default_config,
    load_config,
    parse_config,
)
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
    assert error.problems == [("agents[0] (ops)", "max_step", "unknown key")]
    assert f"{path}: agents[0] (ops): max_step: unknown key" in str(error)


def test_unknown_key_in_an_action_names_the_action(tmp_path: Path) -> None:
    error, path = _problems(
        tmp_path,
        '[[agents]]\nname = "ops"\nactions = ["restart"]\n'
        '[[actions]]\nname = "restart"\ndescription = "d"\nkind = "command"\nrun = "true"\ncomand = "x"\n',
    )
    assert ("actions[0] (restart)", "comand", "unknown key") in error.problems
    assert f"{path}: actions[0] (restart): comand: unknown key" in str(error)


def test_unknown_top_level_section() -> None:
    error = _error({"agents": [_agent()], "agent": {}})
    assert error.problems == [("agent", "", "unknown key")]


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


def test_http_action_with_undo() -> None:
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
