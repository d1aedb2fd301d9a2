"""HTTP actions against a real HTTP server on loopback that stands in for the remote API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agent_doubles import RecordingChat
from aiohttp import web
from pydantic import ValidationError

from agents.actions.base import ActionContext, Requester
from agents.actions.configured import HttpAction, build
from agents.config import HttpActionConfig
from agents.errors import ActionError
from storage.engine import Database


@dataclass
class Received:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApi:
    base: str = ""
    received: list[Received] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    """(method, path) -> (status, JSON body); anything else answers 200 {"ok": true}."""

    def json(self, index: int = -1) -> Any:
        return json.loads(self.received[index].body)


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    fake = FakeApi()

    async def handle(request: web.Request) -> web.Response:
        fake.received.append(
            Received(request.method, request.raw_path, dict(request.headers), await request.read())
        )
        status, body = fake.replies.get((request.method, request.path), (200, {"ok": True}))
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def _action(**fields: Any) -> HttpAction:
    spec: dict[str, Any] = {"name": "api_call", "description": "call the API", "kind": "http"}
    spec.update(fields)
    action = build(HttpActionConfig.model_validate(spec))
    assert isinstance(action, HttpAction)
    return action


def _ctx(db: Database, key: str = "chatops-3-call-1") -> ActionContext:
    return ActionContext(
        run_id=3,
        agent="ops",
        requester=Requester("T1", "C1", "U1", "1690000000.000001"),
        db=db,
        chat=RecordingChat(),
        idempotency_key=key,
    )


async def test_json_body_keeps_parameter_types(api: FakeApi, db: Database) -> None:
    action = _action(
        url=api.base + "/silences",
        params={"alert": "string", "minutes": "integer", "notify": "boolean", "ratio": "number"},
        body={
            "alert": "{{ alert }}",
            "minutes": "{{ minutes }}",
            "notify": "{{ notify }}",
            "ratio": "{{ ratio }}",
            "note": "silenced {{ alert }} for {{ minutes }}m",
            "fixed": 1,
        },
    )
    args = action.args_model.model_validate(
        {"alert": 'disk "full"', "minutes": 30, "notify": False, "ratio": 0.5}
    )
    result = await action.run(_ctx(db), args)

    assert api.received[0].method == "POST"
    assert api.received[0].headers["Content-Type"] == "application/json"
    assert api.json() == {
        "alert": 'disk "full"',
        "minutes": 30,
        "notify": False,
        "ratio": 0.5,
        "note": 'silenced disk "full" for 30m',
        "fixed": 1,
    }
    assert result.output.startswith("HTTP 200\n")
    assert result.data == {"status": 200}
    assert result.undo is None  # no undo request configured
    assert not action.reversible


async def test_url_parameters_are_percent_encoded(api: FakeApi, db: Database) -> None:
    action = _action(
        method="GET", url=api.base + "/svc/{{ name }}?q={{ q }}", params={"name": "string", "q": "string"}
    )
    await action.run(_ctx(db), action.args_model.model_validate({"name": "../admin", "q": "a&b=c #"}))
    assert api.received[0].method == "GET"
    assert api.received[0].raw_path == "/svc/..%2Fadmin?q=a%26b%3Dc%20%23"


async def test_environment_values_pass_in_url_and_headers(
    api: FakeApi, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_TEST_API", api.base + "/v2/api")
    monkeypatch.setenv("CHATOPS_TEST_TOKEN", "s3cr3t/=+")
    action = _action(
        url="{{ env.CHATOPS_TEST_API }}/items/{{ item }}",
        headers={"Authorization": "Bearer {{ env.CHATOPS_TEST_TOKEN }}", "X-Item": "{{ item }}"},
        params={"item": "string"},
        body="raw {{ item }}",
    )
    await action.run(_ctx(db, key="chatops-3-call-8"), action.args_model.model_validate({"item": "a b"}))

    got = api.received[0]
    assert got.raw_path == "/v2/api/items/a%20b"
    assert got.headers["Authorization"] == "Bearer s3cr3t/=+"
    assert got.headers["X-Item"] == "a b"
    assert got.headers["Idempotency-Key"] == "chatops-3-call-8"
    assert got.body == b"raw a b"


async def test_client_error_is_a_permanent_action_error(api: FakeApi, db: Database) -> None:
    api.replies[("POST", "/items")] = (404, {"error": "no such item"})
    action = _action(url=api.base + "/items")
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    assert "api_call: HTTP 404" in str(info.value)
    assert "no such item" in str(info.value)
    assert not info.value.transient


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_are_transient(api: FakeApi, db: Database, status: int) -> None:
    api.replies[("POST", "/items")] = (status, {"error": "later"})
    action = _action(url=api.base + "/items")
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    assert f"HTTP {status}" in str(info.value)
    assert info.value.transient


async def test_unreachable_server_is_a_transient_action_error(db: Database) -> None:
    action = _action(url="http://127.0.0.1:9/items", timeout=5)  # the discard port: nothing listens
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_validate({}))
    assert info.value.transient


async def test_undo_request_uses_the_first_response(api: FakeApi, db: Database) -> None:
    api.replies[("POST", "/silences")] = (201, {"id": "sil 42", "state": "active"})
    action = _action(
        url=api.base + "/silences",
        params={"alert": "string"},
        body={"alert": "{{ alert }}"},
        undo={
            "method": "DELETE",
            "url": api.base + "/silences/{{ response.id }}?alert={{ alert }}",
            "headers": {"X-Reason": "undo of {{ alert }}"},
        },
    )
    result = await action.run(_ctx(db), action.args_model.model_validate({"alert": "disk/full"}))
    assert action.reversible
    assert result.undo == {"params": {"alert": "disk/full"}, "response": {"id": "sil 42", "state": "active"}}

    done = await action.compensate(_ctx(db), result.undo)

    assert "HTTP 200" in done
    undo = api.received[1]
    assert undo.method == "DELETE"
    assert undo.raw_path == "/silences/sil%2042?alert=disk%2Ffull"
    assert undo.headers["X-Reason"] == "undo of disk/full"
    assert undo.headers["Idempotency-Key"] == "chatops-3-call-1"


async def test_failing_undo_request_raises(api: FakeApi, db: Database) -> None:
    api.replies[("DELETE", "/things/1")] = (500, {"error": "boom"})
    action = _action(url=api.base + "/things", undo={"method": "DELETE", "url": api.base + "/things/1"})
    result = await action.run(_ctx(db), action.args_model.model_validate({}))
    assert result.undo is not None
    with pytest.raises(ActionError, match="HTTP 500"):
        await action.compensate(_ctx(db), result.undo)


DOT = "cannot be '.' or '..': it is part of the URL"


@pytest.mark.parametrize("value", [".", ".."])
def test_a_url_parameter_cannot_be_a_dot_segment(value: str) -> None:
    action = _action(
        url="https://api.example/orders/{{ order }}/refund",
        params={"order": "string", "note": "string"},
        undo={"url": "https://api.example/refunds/{{ response.id }}"},
    )
    action_with_undo_param = _action(
        url="https://api.example/orders",
        params={"by": "string"},
        undo={"url": "https://api.example/refunds/{{ by }}"},
    )
    with pytest.raises(ValidationError) as info:
        action.args_model.model_validate({"order": value, "note": "x"})
    assert [(e["loc"], e["msg"]) for e in info.value.errors()] == [(("order",), DOT)]
    with pytest.raises(ValidationError):
        action_with_undo_param.args_model.model_validate({"by": value})
    # A parameter outside the URL may be anything; dots inside a segment are fine.
    action.args_model.model_validate({"order": "..a", "note": ".."})


@pytest.mark.parametrize(
    ("template", "params"),
    [
        ("/orders/{{ order | trim }}/refund", {"order": " .. "}),  # a filter makes ".." after the check
        ("/orders/{{ order }}{{ tail }}", {"order": ".", "tail": "."}),  # arguments not checked
    ],
)
async def test_a_rendered_url_that_leaves_its_prefix_is_refused(
    api: FakeApi, db: Database, template: str, params: dict[str, str]
) -> None:
    """The check where the request is sent holds even when the arguments' own check did not."""
    action = _action(url=api.base + template, params={k: "string" for k in params})
    with pytest.raises(ActionError) as info:
        await action.run(_ctx(db), action.args_model.model_construct(**params))
    assert str(info.value) == (
        "api_call: refused: a '.' or '..' segment in the URL path would change the path"
    )
    assert not info.value.transient
    assert api.received == []


async def test_an_undo_url_from_the_response_cannot_leave_its_prefix(api: FakeApi, db: Database) -> None:
    api.replies[("POST", "/silences")] = (201, {"id": ".."})
    action = _action(
        url=api.base + "/silences",
        undo={"method": "DELETE", "url": api.base + "/silences/{{ response.id }}"},
    )
    result = await action.run(_ctx(db), action.args_model.model_validate({}))
    assert result.undo is not None
    with pytest.raises(ActionError, match=r"^api_call: refused: a '\.' or '\.\.' segment"):
        await action.compensate(_ctx(db), result.undo)
    assert [r.raw_path for r in api.received] == ["/silences"]  # not DELETE / (the .. resolved)
