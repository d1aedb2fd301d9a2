"""MCP tools through the one executor: journaled before and after, approved by the same rules,
refused to customers unless allowed, and reversed by rollback through the compensation the
configuration maps them to (another tool of the server, a command, an HTTP request).

The server is the real widgets server (tests/mcp_servers) over stdio; the database is real.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_doubles import ScriptedPlanner, claimed_run, make_runtime
from fakes import wait_until
from fakes.loopback import LoopbackServer, Reply
from mcp_servers import WidgetFiles, stdio_server

from agents import gate
from agents.actions.base import ActionContext, Requester
from agents.actions.registry import Registry
from agents.config import parse_config
from agents.errors import ActionError
from agents.executor import Executor
from agents.mcp import McpManager
from agents.mcp.undo import render_arguments
from agents.model import ToolCall
from agents.rollback import reverse
from agents.runtime import Runtime
from storage import approvals, journal
from storage.engine import Database
from storage.models import Step, StepKind, StepStatus

REQUESTER = Requester("T1", "C1", "U1REQ", "1.0")
UNDO_DELETE = 'undo = { create_widget = { tool = "delete_widget", args = { name = "{{ args.name }}" } } }'
_index = itertools.count()


def tool_call(tool: str, /, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call-{tool}", name=tool, arguments=json.dumps(arguments), index=next(_index))


@dataclass
class Desk:
    rt: Runtime
    mcp: McpManager
    run_id: int

    async def next_run(self) -> None:
        """Go on with another run (this one waits for a human)."""
        self.run_id = await claimed_run(self.rt.db)

    def executor(self, *, customer: bool = False) -> Executor:
        agent = self.rt.config.agents[0]
        actions = self.rt.registry.for_agent(agent, customer=customer)
        return Executor(self.rt, run_id=self.run_id, agent="ops", requester=REQUESTER, actions=actions)

    async def steps(self) -> list[Step]:
        async with self.rt.db.read() as session:
            return await journal.steps_of(session=session, run_id=self.run_id)


@pytest.fixture
async def desks(db: Database, widget_files: WidgetFiles) -> AsyncIterator[Any]:
    """`await desks(toml)`: a runtime whose agent `ops` uses the servers of `toml`."""
    managers: list[McpManager] = []

    async def make(servers: str, agent: str = "") -> Desk:
        agent_toml = (
            f'[[agents]]\nname = "ops"\ndefault = true\nactions = []\nmcp_servers = ["widgets"]\n{agent}\n'
        )
        config = parse_config(tomllib.loads(agent_toml + servers))
        mcp = McpManager(config.mcp_servers)
        managers.append(mcp)
        rt = make_runtime(db, config, ScriptedPlanner([]))
        rt.registry, rt.mcp = Registry(config, mcp=mcp), mcp
        await rt.registry.ready(config.agents[0])
        return Desk(rt, mcp, await claimed_run(db))

    yield make
    for mcp in managers:
        await mcp.stop()


async def test_a_call_is_journaled_before_and_after_and_rolled_back_through_the_mapped_tool(
    desks: Any, widget_files: WidgetFiles
) -> None:
    desk = await desks(
        stdio_server(extra=UNDO_DELETE + "\n[mcp_servers.settings.paint_widget]\nreversible = true")
    )
    executor = desk.executor()
    widget_files.gate.touch()  # paint_widget waits: the journal is read while it runs
    painting = asyncio.create_task(
        executor.call(tool_call("widgets__paint_widget", name="gear", color="red"))
    )
    await wait_until(lambda: widget_files.calls("paint_widget"), message="the call to reach the server")
    [intent] = await desk.steps()
    assert (intent.name, intent.status, intent.arguments) == (
        "widgets__paint_widget",
        StepStatus.intent,
        {"name": "gear", "color": "red"},
    )
    assert widget_files.calls("paint_widget")[0]["key"] == intent.idempotency_key
    widget_files.gate.unlink()
    assert await painting == "painted gear red"

    reply = await executor.call(tool_call("widgets__create_widget", name="bolt", size=2))

    assert json.loads(reply) == {"name": "bolt", "size": 2, "id": 2}
    _, created = await desk.steps()
    assert (created.status, created.reversible) == (StepStatus.succeeded, True)
    assert created.undo == {"params": {"args": {"name": "bolt", "size": 2}, "result": json.loads(reply)}}
    assert created.data == {
        "summary": "called widgets__create_widget(name='bolt', size=2)",
        **_on_widgets("create"),
    }

    reversals = await reverse(desk.rt, run_id=desk.run_id)

    assert [(r.action, r.reversed, r.text) for r in reversals] == [
        ("widgets__create_widget", True, "called delete_widget on widgets"),
        (
            "widgets__paint_widget",
            False,
            "called widgets__paint_widget(name='gear', color='red'): it cannot be reversed",
        ),
    ]
    [deleted] = widget_files.calls("delete_widget")
    assert (deleted["args"], deleted["key"]) == ({"name": "bolt"}, f"{created.idempotency_key}-undo")
    assert set(widget_files.widgets()) == {"gear"}
    steps = await desk.steps()
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.action, StepStatus.succeeded),
        (StepKind.action, StepStatus.compensated),
        (StepKind.compensation, StepStatus.succeeded),
    ]


def _on_widgets(tool: str) -> dict[str, str]:
    return {"mcp_server": "widgets", "mcp_tool": f"{tool}_widget"}


async def test_a_destructive_tool_and_one_that_cannot_be_undone_ask_a_human_first(
    desks: Any, widget_files: WidgetFiles
) -> None:
    desk = await desks(stdio_server())
    executor = desk.executor()

    for name, arguments, reason in [
        ("widgets__delete_widget", {"name": "gear"}, "its risk is high"),  # destructiveHint
        ("widgets__paint_widget", {"name": "gear", "color": "red"}, "it cannot be undone"),  # no undo
    ]:
        with pytest.raises(gate.AwaitingApproval):
            await executor.call(tool_call(name, **arguments))
        async with desk.rt.db.read() as session:
            [approval] = [a for a in await approvals.pending_approvals(session=session) if a.action == name]
        assert (approval.arguments, approval.reason) == (arguments, reason)
        await desk.next_run()
        executor = desk.executor()
    assert await executor.call(tool_call("widgets__list_widgets")) == "[]"  # read-only: no approval
    assert [c["tool"] for c in widget_files.calls()] == ["list_widgets"]


async def test_arguments_that_do_not_fit_the_schema_and_an_error_result_are_told_to_the_model(
    desks: Any, widget_files: WidgetFiles
) -> None:
    desk = await desks(stdio_server(extra="[mcp_servers.settings.break_widget]\nreversible = true"))
    executor = desk.executor()

    invalid = await executor.call(tool_call("widgets__create_widget", name=3))
    failed = await executor.call(tool_call("widgets__break_widget", name="gear"))

    assert invalid == (
        "error: invalid arguments for widgets__create_widget: arguments: name: 3 is not of type 'string'"
    )
    assert failed == (
        "error: widgets__break_widget failed: Error executing tool break_widget: widget gear is unbreakable"
    )
    rejected, broken = await desk.steps()
    assert (rejected.status, rejected.arguments) == (StepStatus.rejected, {"name": 3})
    assert (broken.status, broken.error) == (StepStatus.failed, failed.removeprefix("error: "))
    assert [c["tool"] for c in widget_files.calls()] == ["break_widget"]  # the invalid call never left


async def test_customers_reach_only_the_tools_listed_for_them_or_marked_so(desks: Any) -> None:
    listed = await desks(stdio_server(), agent='customer_actions = ["widgets__list_widgets"]')
    assert set(listed.executor(customer=True).actions) == {"widgets__list_widgets"}
    reply = await listed.executor(customer=True).call(tool_call("widgets__create_widget", name="x"))
    assert reply == "error: widgets__create_widget is not available to customers"
    [refused] = await listed.steps()
    assert refused.data == {
        "summary": "widgets__create_widget is not available to customers",
        "not_for_customers": True,
    }

    marked = await desks(stdio_server(extra="[mcp_servers.settings.whoami]\ncustomers = true"))
    assert set(marked.executor(customer=True).actions) == {"widgets__whoami"}
    assert "widgets__create_widget" in marked.executor().actions  # a member reaches them all


class Recorder(LoopbackServer):
    """An HTTP endpoint that records what it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        with self.lock:
            self.received.append((method, path, json.loads(raw) if raw else None))
        return Reply(200, {"ok": True})


async def test_an_undo_can_be_a_command_or_an_http_request_given_the_args_and_the_result(
    desks: Any, widget_files: WidgetFiles, tmp_path: Path
) -> None:
    notes = tmp_path / "undone.txt"
    with Recorder() as recorder:
        url = f"http://127.0.0.1:{recorder.port}/widgets/{{{{ result.id }}}}"
        http_undo = (
            f'undo = {{ create_widget = {{ url = "{url}", method = "POST", '
            'body = { name = "{{ args.name }}", size = "{{ args.size }}" } } }'
        )
        command_undo = (
            f'undo = {{ create_widget = "echo undo {{{{ args.name }}}} {{{{ result.id }}}} >> {notes}" }}'
        )
        for name, undo in (("first", command_undo), ("second", http_undo)):
            desk = await desks(stdio_server(extra=undo))
            await desk.executor().call(tool_call("widgets__create_widget", name=name, size=4))
            [reversal] = await reverse(desk.rt, run_id=desk.run_id)
            assert reversal.reversed, reversal.text

        assert notes.read_text() == "undo first 1\n"
        # A body's values are text (as in a configured action's undo).
        assert recorder.received == [("POST", "/widgets/2", {"name": "second", "size": "4"})]
        assert reversal.text == "called the undo of widgets__create_widget (HTTP 200)"


async def test_an_undo_that_cannot_be_prepared_leaves_the_call_irreversible_and_says_so(desks: Any) -> None:
    undo = 'undo = { create_widget = { tool = "delete_widget", args = { name = "{{ result.label }}" } } }'
    desk = await desks(stdio_server(extra=undo))

    reply = await desk.executor().call(tool_call("widgets__create_widget", name="gear"))

    assert "(this call cannot be undone: its undo could not be prepared: template error:" in reply
    [step] = await desk.steps()
    assert (step.status, step.reversible, step.undo) == (StepStatus.succeeded, False, None)


async def test_a_value_an_undo_command_would_take_for_an_option_is_refused(
    desks: Any, widget_files: WidgetFiles
) -> None:
    desk = await desks(stdio_server(extra='undo = { create_widget = "rm -f -- {{ args.name }}.lock" }'))

    reply = await desk.executor().call(tool_call("widgets__create_widget", name="-rf"))

    assert reply.startswith(
        "error: invalid arguments for widgets__create_widget: arguments: name: must not start"
    )
    assert widget_files.calls() == []


async def test_a_tool_locks_the_resource_its_settings_name(desks: Any) -> None:
    desk = await desks(
        stdio_server(
            extra=UNDO_DELETE + '\n[mcp_servers.settings.create_widget]\nresource = "widget:{{ args.name }}"'
        )
    )
    create = desk.rt.registry.get("widgets__create_widget")
    assert create is not None
    ctx = ActionContext(
        run_id=1, agent="ops", requester=REQUESTER, db=desk.rt.db, chat=desk.rt.chat, idempotency_key="k"
    )
    assert create.resource(create.args_model.model_validate({"name": "gear"}), ctx) == "widget:gear"

    await desk.executor().call(tool_call("widgets__create_widget", name="gear"))

    [step] = await desk.steps()
    assert step.resource == "widget:gear"


async def test_undo_arguments_keep_their_types() -> None:
    params = {"args": {"size": 3, "name": "gear"}, "result": {"tags": ["a", "b"], "id": 7}}
    template = {
        "size": "{{ args.size }}",
        "label": "{{ args.name }}-{{ result.id }}",
        "tags": "{{ result.tags }}",
    }

    assert render_arguments(template, params) == {"size": 3, "label": "gear-7", "tags": ["a", "b"]}
    with pytest.raises(ActionError, match=r"result\.nope is undefined"):
        render_arguments({"x": "{{ result.nope }}"}, params)


async def test_a_compensation_waits_for_a_server_that_has_not_started_and_fails_cleanly_when_it_is_stopped(
    desks: Any, widget_files: WidgetFiles
) -> None:
    desk = await desks(stdio_server(extra=UNDO_DELETE))
    await desk.executor().call(tool_call("widgets__create_widget", name="gear"))
    await desk.mcp.stop()  # chatops is shutting down: no undo can reach the server

    [stopped] = await reverse(desk.rt, run_id=desk.run_id)
    assert not stopped.reversed and "MCP server widgets is stopped" in stopped.text

    # A new process: the manager has not connected yet, and the tool is not listed yet.
    fresh = McpManager(desk.rt.config.mcp_servers)
    desk.rt.registry = Registry(desk.rt.config, mcp=fresh)
    try:
        [reversal] = await reverse(desk.rt, run_id=desk.run_id)
    finally:
        await fresh.stop()
    assert (reversal.reversed, reversal.text) == (True, "called delete_widget on widgets")
    assert widget_files.widgets() == {}
