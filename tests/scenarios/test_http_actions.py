"""HTTP actions from the config file call a real API on loopback; a value chosen by the model,
or read from the API's answer, cannot take a call to another path than its template's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from scenarios.control_support import ask, compensations_of, reply_saying, say, undone
from storage.models import RunStatus, StepStatus


@dataclass
class Shop:
    """The shop's API: every request it received, and what a refund answers."""

    base: str = ""
    received: list[tuple[str, str]] = field(default_factory=list)
    refund_id: Any = "r-1"


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    api = Shop()

    async def handle(request: web.Request) -> web.Response:
        api.received.append((request.method, request.raw_path))
        if request.path.endswith("/refund"):
            return web.json_response({"id": api.refund_id})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    api.base = f"http://{host}:{port}"
    try:
        yield api
    finally:
        await runner.cleanup()


def _config() -> str:
    return """
[[agents]]
name = "ops"
default = true
actions = ["refund_order"]

[[actions]]
name = "refund_order"
description = "Refund an order"
kind = "http"
params = { order = "string" }
url = "{{ env.SHOP_API }}/orders/{{ order }}/refund"
undo = { method = "POST", url = "{{ env.SHOP_API }}/refunds/{{ response.id }}/cancel" }
"""


async def test_a_dot_segment_from_the_model_goes_back_to_it_and_nothing_is_called(
    start_desk, shop, monkeypatch
):
    monkeypatch.setenv("SHOP_API", shop.base + "/shop")
    desk = await start_desk(_config(), model=True)
    desk.model.call("refund_order", {"order": ".."})
    desk.model.call("refund_order", {"order": "1042"})
    desk.model.answer("Refunded order 1042.")
    await ask(desk, "refund order 1042")

    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error
    refused = desk.model.tool_results(1)[-1]
    assert refused == (
        "error: invalid arguments for refund_order: order: cannot be '.' or '..': it is part of the URL"
    )
    assert shop.received == [("POST", "/shop/orders/1042/refund")]


async def test_an_undo_whose_response_value_would_leave_the_path_is_refused(start_desk, shop, monkeypatch):
    """The refund answers {"id": ".."}: the undo URL would be /shop/refunds/../cancel, which an HTTP
    client sends as /shop/cancel. The undo is refused and reported, and nothing else is called."""
    monkeypatch.setenv("SHOP_API", shop.base + "/shop")
    shop.refund_id = ".."
    desk = await start_desk(_config(), model=True)
    desk.model.call("refund_order", {"order": "1042"})
    desk.model.answer("Refunded order 1042.")
    ts = await ask(desk, "refund order 1042")
    run = await desk.only_run()
    assert run.status == RunStatus.succeeded, run.error

    await say(desk, "undo", thread_ts=ts)
    await undone(desk, run.id)

    assert shop.received == [("POST", "/shop/orders/1042/refund")]
    [compensation] = await compensations_of(desk, run.id)
    assert compensation.status == StepStatus.failed
    refusal = "refund_order: refused: a '.' or '..' segment in the URL path would change the path"
    assert (compensation.error or "").endswith(refusal)
    await reply_saying(desk, "C1", ts, refusal)  # the undo report says what could not be reversed
