"""The Request URL verifies every delivery; forged, stale or malformed ones store nothing."""

from __future__ import annotations

import json
import time

import aiohttp
from fakes import slack_events as ev
from fakes import wait_until


async def _nothing_stored(desk) -> None:
    assert await desk.requests() == []
    assert await desk.deliveries() == []
    assert await desk.runs() == []
    assert desk.slack.calls_to("chat.postMessage") == []
    assert desk.slack.calls_to("reactions.add") == []


async def test_a_bad_signature_is_refused_and_nothing_is_stored(start_desk):
    desk = await start_desk()
    mention = ev.app_mention("<@UBOT> create a ticket for the forged bug")
    delivery = await desk.send.event(mention, secret="not-the-signing-secret")
    assert delivery.status == 401
    await _nothing_stored(desk)


async def test_a_tampered_body_is_refused(start_desk):
    desk = await start_desk()
    signed = json.dumps(ev.app_mention("<@UBOT> find tickets"))
    ts = int(time.time())
    from slack_sdk.signature import SignatureVerifier

    signature = SignatureVerifier(desk.send.signing_secret).generate_signature(timestamp=str(ts), body=signed)
    tampered = signed.replace("find tickets", "create a ticket for evil")
    delivery = await desk.send.raw(
        tampered, content_type="application/json", timestamp=ts, signature=signature
    )
    assert delivery.status == 401
    await _nothing_stored(desk)


async def test_stale_and_future_timestamps_are_refused(start_desk):
    desk = await start_desk()
    now = int(time.time())
    for when in (now - 6 * 60, now + 6 * 60):
        mention = ev.app_mention("<@UBOT> create a ticket for the replayed bug")
        delivery = await desk.send.event(mention, timestamp=when)  # correctly signed, at that time
        assert delivery.status == 401, when
    await _nothing_stored(desk)


async def test_missing_signature_headers_are_refused(start_desk):
    desk = await start_desk()
    body = json.dumps(ev.app_mention("<@UBOT> create a ticket for the unsigned bug"))
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{desk.url}/slack/events", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 401
    await _nothing_stored(desk)


async def test_a_signed_but_malformed_body_is_a_400_and_stores_nothing(start_desk):
    desk = await start_desk()
    delivery = await desk.send.raw('{"type": "event_callback", "event": {', content_type="application/json")
    assert delivery.status == 400
    await _nothing_stored(desk)
    # The server is still healthy afterwards: a good delivery is taken.
    assert (await desk.send.event(ev.app_mention("<@UBOT> find tickets"))).status == 200
    await desk.only_run()


async def test_url_verification_echoes_the_challenge(start_desk):
    desk = await start_desk()
    delivery = await desk.send.event(
        ev.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    )
    assert delivery.status == 200
    assert delivery.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    await _nothing_stored(desk)


async def test_url_verification_with_a_bad_signature_is_refused(start_desk):
    desk = await start_desk()
    delivery = await desk.send.event(ev.url_verification("abc"), secret="wrong")
    assert delivery.status == 401
    assert "abc" not in delivery.text


async def test_interactivity_payloads_are_verified_and_acked(start_desk):
    desk = await start_desk()
    click = ev.block_action("chatops_undo", "1", message_ts=ev.new_ts())
    assert (await desk.send.interaction(click, secret="wrong")).status == 401
    delivery = await desk.send.interaction(click)
    assert delivery.status == 200 and delivery.elapsed < 3.0
    assert await desk.requests() == [] and await desk.runs() == []


async def test_healthz_reports_the_database_and_the_workers(start_desk):
    desk = await start_desk()

    async def healthz() -> tuple[int, dict]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{desk.url}/healthz") as response:
                return response.status, await response.json()

    # The workers start in the background just after the listener; readiness follows shortly.
    status, report = await wait_until(lambda: _ready(healthz), 5)
    assert status == 200, report
    assert report["ok"] is True
    assert report["database"] == "ok"
    assert report["workers"]["enabled"] is True and report["workers"]["alive"] is True
    assert report["paused"] == []


async def _ready(probe):
    status, report = await probe()
    return (status, report) if status == 200 else None


async def test_metrics_are_served_in_prometheus_text_format(start_desk):
    desk = await start_desk()
    await desk.send.event(ev.app_mention("<@UBOT> find tickets about printers"))
    await desk.only_run()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{desk.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    assert "# TYPE" in text and "# HELP" in text


async def test_signed_payloads_of_an_impossible_shape_get_400_not_500(start_desk):
    """A 500 makes Slack retry; a payload Slack would never send is refused once, with no retry."""
    desk = await start_desk()
    broken = ev.app_mention("<@UBOT> create a ticket for x")
    broken["event"] = None
    assert (await desk.send.event(broken)).status == 400
    delivery = await desk.send.event({**ev.app_mention("<@UBOT> y"), "event": "x"})
    assert delivery.status == 400
    assert delivery.headers.get("X-Slack-No-Retry") == "1"
    fields = ev.slash_command("create a ticket for z")
    del fields["channel_id"]
    assert (await desk.send.command(fields)).status == 400
    await _nothing_stored(desk)
