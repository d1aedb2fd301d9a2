"""`[[mcp_servers]]` in the configuration file: what is checked when it is loaded, in the file's
words (entry, field, message), and what the rest of the configuration makes of it (agents
naming MCP tools, the environment it reads, the secrets to redact)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from agents.config import Config, parse_config
from agents.errors import ConfigError

ENVIRON = {"WIDGETS_TOKEN": "tok-widgets-1234", "SHOP_KEY": "key-shop-5678", "HOME": "/home/ops"}

GOOD = """
[[agents]]
name = "ops"
default = true
mcp_servers = ["widgets", "shop"]
customer_actions = ["widgets__list_widgets"]
action_autonomy = { widgets__create_widget = "approve" }

[[mcp_servers]]
name = "widgets"
command = "python widgets.py --verbose"
env = { TOKEN = "{{ env.WIDGETS_TOKEN }}", MODE = "demo" }

[mcp_servers.undo.create_widget]
tool = "delete_widget"
args = { name = "{{ args.name }}", n = "{{ result.id }}" }

[mcp_servers.settings.list_widgets]
customers = true

[[mcp_servers]]
name = "shop"
url = "https://shop.example/mcp"
headers = { Authorization = "Bearer {{ env.SHOP_KEY }}" }
tools = ["refund"]
undo = { refund = { url = "https://shop.example/refunds/{{ result.id }}", method = "DELETE" } }
"""


def load(text: str, environ: dict[str, str] | None = None) -> Config:
    return parse_config(
        tomllib.loads(text), source="chatops.toml", environ=ENVIRON if environ is None else environ
    )


def problems(text: str) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as e:
        load(text)
    assert str(e.value).startswith("invalid configuration\nchatops.toml: ")
    return e.value.problems


def test_a_good_file_loads_with_both_transports() -> None:
    config = load(GOOD)
    widgets, shop = config.mcp_servers
    assert widgets.command == ["python", "widgets.py", "--verbose"]  # a string is a command line
    assert (shop.url, shop.tools) == ("https://shop.example/mcp", ["refund"])
    assert widgets.undo["create_widget"].kind == "tool"
    assert shop.undo["refund"].kind == "http"
    assert widgets.settings["list_widgets"].customers
    assert config.agents[0].mcp_servers == ["widgets", "shop"]


def test_what_the_servers_read_from_the_environment_is_secret() -> None:
    config = load(GOOD)
    assert {"WIDGETS_TOKEN", "SHOP_KEY"} <= config.environment_names()
    assert config.secret_values(ENVIRON) == {"tok-widgets-1234", "key-shop-5678"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            'mcp_servers = ["widgest"]',
            ("agents[0] (ops)", "mcp_servers", "unknown MCP server 'widgest' (did you mean 'widgets'?)"),
        ),
        (
            'customer_actions = ["widgets__list"]\nmcp_servers = ["shop"]',
            ("agents[0] (ops)", "customer_actions", "'widgets__list' is not in its actions"),
        ),
        (
            'action_autonomy = { shop__refnd = "approve" }\nmcp_servers = ["shop"]',
            (
                "agents[0] (ops)",
                "action_autonomy",
                "'shop__refnd' is not in its actions (did you mean 'shop__refund'?)",
            ),
        ),
    ],
)
def test_agents_name_only_servers_and_tools_that_can_exist(
    change: str, expected: tuple[str, str, str]
) -> None:
    before = 'mcp_servers = ["widgets", "shop"]\ncustomer_actions = ["widgets__list_widgets"]\n'
    before += 'action_autonomy = { widgets__create_widget = "approve" }'
    assert before in GOOD
    text = GOOD.replace(before, change)
    assert expected in problems(text)


def test_names_of_mcp_tools_are_accepted_wherever_an_agent_names_actions() -> None:
    config = load(GOOD)
    agent = config.agents[0]
    assert config.offers_mcp_tool(agent, "widgets__anything")  # no allow-list: any tool it will list
    assert config.offers_mcp_tool(agent, "shop__refund")
    assert not config.offers_mcp_tool(agent, "shop__charge")  # not in its allow-list
    assert not config.offers_mcp_tool(agent, "payments__refund")  # not one of its servers


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "{{ args.name }}",
            "{{ arg.name }}",
            ("undo.create_widget.args.name", "undefined variable 'arg' (did you mean 'args'?)"),
        ),
        ("{{ result.id }}", "{{ result.id }", ("undo.create_widget.args.n", "template syntax error")),
        (
            '"Bearer {{ env.SHOP_KEY }}"',
            '"Bearer {{ env.SHOP_SECRET }}"',
            ("headers.Authorization", "environment variable SHOP_SECRET is not set"),
        ),
        (
            '"{{ env.WIDGETS_TOKEN }}"',
            '"{{ env.WIDGETS_TOKN }}"',
            ("env.TOKEN", "environment variable WIDGETS_TOKN is not set"),
        ),
        (
            'undo = { refund = { url = "https://shop.example/refunds/{{ result.id }}", method = "DELETE" } }',
            'undo = { refund = { url = "{{ result.host }}/refunds", method = "DELETE" } }',
            ("undo.refund.url", "a parameter cannot stand in the URL's scheme or host"),
        ),
        ('tools = ["refund"]', 'tools = ["refunds"]', ("undo.refund", "'refund' is not in its tools")),
        ('url = "https://shop.example/mcp"', 'url = "shop.example/mcp"', ("url", "must be an absolute URL")),
        (
            'tool = "delete_widget"',
            'tool = "delete_widget"\nmethod = "GET"',
            ("undo.create_widget", "method cannot go with tool"),
        ),
        (
            'tool = "delete_widget"',
            'tol = "delete_widget"',
            ("undo.create_widget.tol", "unknown key 'tol' (did you mean 'tool'?)"),
        ),
        (
            'command = "python widgets.py --verbose"',
            'command = "python widgets.py --verbose"\nurl = "https://x.example/mcp"',
            ("command", "give either command (a stdio server) or url (streamable HTTP)"),
        ),
        (
            'headers = { Authorization = "Bearer {{ env.SHOP_KEY }}" }',
            'env = { A = "b" }',
            ("env", "only a stdio server (command) has it"),
        ),
        ('name = "shop"', 'name = "my__shop"', ("name", "not '__'")),
        (
            "customers = true",
            'customers = true\nresource = "widget:{{ name }}"',
            ("settings.list_widgets.resource", "undefined variable 'name'; it can use args, env"),
        ),
        (
            "customers = true",
            'rsk = "high"',
            ("settings.list_widgets.rsk", "unknown key 'rsk' (did you mean 'risk'?)"),
        ),
    ],
)
def test_mistakes_are_reported_with_the_entry_the_field_and_what_is_wrong(
    replace: str, by: str, expected: tuple[str, str]
) -> None:
    assert replace in GOOD
    found = problems(GOOD.replace(replace, by))
    field, words = expected
    assert any(f == field and words in m and e.startswith("mcp_servers[") for e, f, m in found), found


def test_an_undo_command_is_checked_as_a_command_template() -> None:
    table = '[mcp_servers.undo.create_widget]\ntool = "delete_widget"\n'
    table += 'args = { name = "{{ args.name }}", n = "{{ result.id }}" }'
    assert table in GOOD
    text = GOOD.replace(table, '[mcp_servers.undo]\ncreate_widget = "cat <<EOF\\n{{ args.name }}\\nEOF"')
    [(entry, field, message)] = problems(text)
    assert (entry, field) == ("mcp_servers[0] (widgets)", "undo.create_widget")
    assert "heredoc" in message


def test_two_servers_of_one_name_and_an_action_in_a_servers_namespace_are_refused() -> None:
    text = GOOD.replace('name = "shop"', 'name = "widgets"').replace('"widgets", "shop"', '"widgets"')
    text += """
[[actions]]
name = "widgets__cleanup"
description = "Not an MCP tool"
kind = "command"
run = "true"
"""
    found = problems(text.replace('customer_actions = ["widgets__list_widgets"]', ""))
    assert ("mcp_servers[1] (widgets)", "name", "duplicate MCP server name") in found
    assert (
        "actions[0] (widgets__cleanup)",
        "name",
        "names widgets__<tool> are the tools of MCP server widgets",
    ) in found


def _raw(**server: Any) -> dict[str, Any]:
    return {"agents": [{"name": "ops", "mcp_servers": ["s"]}], "mcp_servers": [{"name": "s", **server}]}


def test_a_server_needs_a_program_or_an_endpoint() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_raw(command=[]))
    assert e.value.problems == [
        ("mcp_servers[0] (s)", "command", 'must name the program to start, like ["python", "server.py"]')
    ]
    with pytest.raises(ConfigError) as e:
        parse_config(_raw(command="python 'unclosed"))
    [(_, field, message)] = e.value.problems
    assert field == "command" and message.startswith("not a valid command line")
