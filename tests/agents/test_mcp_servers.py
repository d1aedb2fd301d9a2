"""MCP servers as chatops runs them: real servers (tests/mcp_servers/widgets.py, written with the
`mcp` SDK) started as processes over stdio, or reached over streamable HTTP on loopback.

A server is connected in the background, its tools become `<server>__<tool>` actions with
the server's schema and annotations, a call's result (or error) is what the model reads, a
server that dies is restarted with backoff while its tools say clearly that it is down, and
its tool list follows list_changed on both protocol eras.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes import wait_until
from mcp_servers import HttpWidgets, WidgetFiles, stdio_server
from pydantic import ValidationError

from agents.actions.base import Action, ActionContext, Requester
from agents.config import Config, parse_config
from agents.errors import ActionError
from agents.mcp import Backoff, McpManager, transport
from agents.mcp.connection import CallInterrupted, ServerUnavailable
from agents.mcp.results import OUTPUT_LIMIT

AGENT = '\n[[agents]]\nname = "ops"\ndefault = true\nmcp_servers = ["widgets"]\n'
QUICK = Backoff(first=0.05, most=0.5)
REFUSES = "import sys; print('no licence for widgets', file=sys.stderr); sys.exit(2)"


def config(server: str) -> Config:
    import tomllib

    return parse_config(tomllib.loads(AGENT + server))


@pytest.fixture
async def manager(widget_files: WidgetFiles) -> AsyncIterator[McpManager]:
    mcp = McpManager(config(stdio_server()).mcp_servers, backoff=QUICK)
    try:
        yield mcp
    finally:
        await mcp.stop()


def context(key: str = "chatops-1-1") -> ActionContext:
    requester = Requester("T1", "C1", "U1", "1.0")
    return ActionContext(run_id=1, agent="ops", requester=requester, db=None, chat=None, idempotency_key=key)  # type: ignore[arg-type]


async def run(action: Action, key: str = "chatops-1-1", **arguments: Any) -> str:
    result = await action.run(context(key), action.args_model.model_validate(arguments))
    return result.output


async def up_again(mcp: McpManager, after: int) -> None:
    """Wait until the server listed its tools again after version `after` (a reconnection)."""
    connection = mcp.connections["widgets"]
    await wait_until(
        lambda: connection.state.status == "up" and connection.version > after,
        15,
        message=lambda: f"the server up again: {connection.state}",
    )


async def test_a_stdio_server_is_listed_as_actions_with_its_schema_and_annotations(
    manager: McpManager, widget_files: WidgetFiles
) -> None:
    await manager.ready(["widgets"])
    [state] = manager.states()
    assert (state.status, state.error) == ("up", None)
    actions = manager.actions("widgets")
    assert {"widgets__create_widget", "widgets__delete_widget", "widgets__list_widgets"} <= set(actions)

    create = actions["widgets__create_widget"].tool()["function"]
    assert create["description"] == "Create a widget."
    assert create["parameters"] == {  # the server's schema, as the server wrote it
        "type": "object",
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "size": {"default": 1, "title": "Size", "type": "integer"},
        },
        "required": ["name"],
        "title": "create_widgetArguments",
    }
    flags = {
        n: (a.read_only, a.risk, a.idempotent, a.reversible)
        for n, a in actions.items()
        if n.split("__")[1] in ("list_widgets", "delete_widget", "set_color", "paint_widget")
    }
    assert flags == {
        "widgets__list_widgets": (True, "low", True, True),  # readOnlyHint
        "widgets__delete_widget": (False, "high", False, False),  # destructiveHint
        "widgets__set_color": (False, "low", True, False),  # idempotentHint; no undo
        "widgets__paint_widget": (False, "low", False, False),
    }


async def test_settings_override_the_annotations_and_the_allow_list_limits_the_tools(
    widget_files: WidgetFiles,
) -> None:
    extra = """tools = ["create_widget", "delete_widget", "list_widgets"]
undo = { create_widget = { tool = "delete_widget", args = { name = "{{ args.name }}" } } }
[mcp_servers.settings.delete_widget]
risk = "low"
reversible = true
description = "Remove a widget for good"
[mcp_servers.settings.list_widgets]
read_only = false
customers = true
"""
    mcp = McpManager(config(stdio_server(extra=extra)).mcp_servers)
    try:
        await mcp.ready(["widgets"])
        actions = mcp.actions("widgets")
        assert set(actions) == {"widgets__create_widget", "widgets__delete_widget", "widgets__list_widgets"}
        create, delete, listing = (
            actions[f"widgets__{t}"] for t in ("create_widget", "delete_widget", "list_widgets")
        )
        assert (create.reversible, create.risk) == (True, "low")  # an undo is mapped
        assert (delete.risk, delete.reversible) == ("low", True)
        assert delete.description == "Remove a widget for good"
        assert (listing.read_only, listing.customers) == (False, True)
    finally:
        await mcp.stop()


async def test_a_call_returns_what_the_tool_said_and_the_server_gets_the_idempotency_key(
    manager: McpManager, widget_files: WidgetFiles
) -> None:
    await manager.ready(["widgets"])
    actions = manager.actions("widgets")

    output = await run(actions["widgets__create_widget"], key="chatops-7-3", name="gear", size=3)

    assert json.loads(output) == {"name": "gear", "size": 3, "id": 1}
    assert widget_files.widgets() == {"gear": {"size": 3, "color": None}}
    [call] = widget_files.calls("create_widget")
    assert (call["args"], call["key"]) == ({"name": "gear", "size": 3}, "chatops-7-3")
    assert await run(actions["widgets__list_widgets"]) == "gear"  # not again as {"result": ["gear"]}


async def test_an_error_result_and_bad_arguments_are_told_to_the_model(
    manager: McpManager, widget_files: WidgetFiles
) -> None:
    await manager.ready(["widgets"])
    actions = manager.actions("widgets")

    with pytest.raises(ActionError) as failed:
        await run(actions["widgets__break_widget"], name="gear")
    assert str(failed.value) == (
        "widgets__break_widget failed: Error executing tool break_widget: widget gear is unbreakable"
    )
    create = actions["widgets__create_widget"]
    with pytest.raises(ValidationError) as invalid:
        create.args_model.model_validate({"name": 3, "size": "big"})
    assert (
        invalid.value.errors()[0]["msg"]
        == "name: 3 is not of type 'string'; size: 'big' is not of type 'integer'"
    )
    with pytest.raises(ValidationError):
        create.args_model.model_validate({})
    assert [c["tool"] for c in widget_files.calls()] == ["break_widget"]  # nothing invalid was sent


async def test_a_long_result_is_cut_to_the_limit(manager: McpManager) -> None:
    await manager.ready(["widgets"])
    output = await run(manager.actions("widgets")["widgets__big_report"])
    assert len(output) < OUTPUT_LIMIT + 100
    assert output.endswith("more characters]")


async def test_a_server_that_crashes_is_restarted_and_meanwhile_its_tools_say_it_is_down(
    manager: McpManager, widget_files: WidgetFiles
) -> None:
    await manager.ready(["widgets"])
    actions = manager.actions("widgets")
    version = manager.connections["widgets"].version

    with pytest.raises(CallInterrupted) as lost:
        await run(actions["widgets__crash"])
    assert "whether widgets__crash took effect is unknown" in str(lost.value)
    with pytest.raises(ServerUnavailable) as down:
        await run(actions["widgets__list_widgets"])
    assert str(down.value).startswith("widgets__list_widgets did not run: MCP server widgets is down since")
    assert "its process exited" in str(down.value)

    await up_again(manager, version)
    assert await run(actions["widgets__list_widgets"]) == "[]"  # the same action object works again
    assert manager.states()[0].error is None


async def test_a_server_that_cannot_start_is_down_with_its_reason_and_tried_again(
    widget_files: WidgetFiles,
) -> None:
    broken = f"""
[[mcp_servers]]
name = "widgets"
command = [{json.dumps(sys.executable)}, "-c", "{REFUSES}"]
"""
    mcp = McpManager(config(broken).mcp_servers, backoff=Backoff(first=0.05, most=0.1))
    try:
        await mcp.ready(["widgets"])
        first = mcp.states()[0]
        assert first.down and first.retry_at is not None
        assert "no licence for widgets" in (first.error or "")
        assert mcp.actions("widgets") == {}  # nothing listed: nothing offered
        await wait_until(lambda: mcp.connections["widgets"].state.retry_at != first.retry_at)
        assert mcp.states()[0].since == first.since  # down since the first failure, however many tries
    finally:
        await mcp.stop()
    assert mcp.states()[0].status == "stopped"


def test_the_backoff_doubles_up_to_its_limit() -> None:
    assert [Backoff(1, 10).delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_a_slow_server_holds_up_nothing_and_a_call_waits_at_most_its_connect_timeout(
    widget_files: WidgetFiles,
) -> None:
    slow = f"""
[[mcp_servers]]
name = "widgets"
command = [{json.dumps(sys.executable)}, "-c", "import time; time.sleep(60)"]
connect_timeout = 0.5
"""
    mcp = McpManager(config(slow).mcp_servers)
    try:
        mcp.start()  # returns at once
        assert mcp.states()[0].status == "starting"
        action = mcp.action("widgets__create_widget")
        assert action is not None
        with pytest.raises(ServerUnavailable) as unavailable:
            await run(action, name="x")
        assert str(unavailable.value).startswith("widgets__create_widget did not run: MCP server widgets is")
        await wait_until(lambda: mcp.states()[0].down)
        assert "it did not start and list its tools within 0.5s" in (mcp.states()[0].error or "")
    finally:
        await mcp.stop()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_tool_list_follows_list_changed_on_both_protocol_eras(
    mode: str, widget_files: WidgetFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "MODE", mode)
    mcp = McpManager(config(stdio_server()).mcp_servers)
    try:
        await mcp.ready(["widgets"])
        assert "widgets__count_gadgets" not in mcp.actions("widgets")
        await run(mcp.actions("widgets")["widgets__add_gadgets"])
        await wait_until(lambda: "widgets__count_gadgets" in mcp.actions("widgets"), message="the new tool")
        assert await run(mcp.actions("widgets")["widgets__count_gadgets"]) == "42"
    finally:
        await mcp.stop()


async def test_stopping_the_manager_stops_a_stdio_server(manager: McpManager) -> None:
    await manager.ready(["widgets"])
    pid = json.loads(await run(manager.actions("widgets")["widgets__whoami"]))["pid"]

    await manager.stop()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await wait_until(gone, message=f"process {pid} to exit")


async def test_an_http_server_gets_its_headers_and_is_reconnected_after_it_dies(
    widget_files: WidgetFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WIDGETS_TOKEN", "tok-http-98765")
    with HttpWidgets(widget_files, token="tok-http-98765") as server:
        remote = f"""
[[mcp_servers]]
name = "widgets"
url = "{server.url}"
headers = {{ X-Widgets-Token = "{{{{ env.WIDGETS_TOKEN }}}}" }}
"""
        mcp = McpManager(config(remote).mcp_servers, backoff=QUICK)
        try:
            await mcp.ready(["widgets"])
            whoami = mcp.actions("widgets")["widgets__whoami"]
            assert json.loads(await run(whoami))["token_ok"] is True
            version = mcp.connections["widgets"].version

            server.kill()
            await wait_until(lambda: mcp.states()[0].down, message="the server seen down")
            with pytest.raises(ServerUnavailable):
                await run(whoami)

            server.start()
            await up_again(mcp, version)
            assert json.loads(await run(whoami))["token_ok"] is True
        finally:
            await mcp.stop()


async def test_calls_from_many_runs_share_one_connection(
    manager: McpManager, widget_files: WidgetFiles
) -> None:
    await manager.ready(["widgets"])
    create = manager.actions("widgets")["widgets__create_widget"]

    await asyncio.gather(*(run(create, key=f"chatops-{i}-1", name=f"w{i}") for i in range(8)))

    assert sorted(widget_files.widgets()) == [f"w{i}" for i in range(8)]
    pids = {json.loads(await run(manager.actions("widgets")["widgets__whoami"]))["pid"] for _ in range(2)}
    assert len(pids) == 1
