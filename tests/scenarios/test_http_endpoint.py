"""The Request URL verifies every delivery; forged, stale or malformed ones store nothing."""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from fakes import slack_events as ev
from fakes import wait_until
from multidict import CIMultiDict
from slack_sdk.signature import SignatureVerifier


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


# Attacker-controlled input: never a 500, never an error in the log --------------------

MENTION = ev.app_mention("<@UBOT> create a ticket for the hostile bug")


def _mention(**event: Any) -> dict[str, Any]:
    """A correctly shaped mention with `event` fields replaced."""
    body = copy.deepcopy(MENTION)
    body["event_id"] = ev.new_event_id()
    body["event"].update(event)
    return body


def _click(**fields: Any) -> dict[str, Any]:
    body = ev.block_action("chatops_undo", "1", message_ts=ev.new_ts())
    body.update(fields)
    return body


def _action(**fields: Any) -> dict[str, Any]:
    return _click(
        actions=[{**ev.block_action("chatops_undo", "1", message_ts="1.1")["actions"][0], **fields}]
    )


def _command(**fields: Any) -> str:
    form = ev.slash_command("create a ticket for z")
    for name, value in fields.items():
        if value is None:
            del form[name]
        else:
            form[name] = value
    return urlencode(form)


JSON, FORM = "application/json", "application/x-www-form-urlencoded"


def _json(body: Any) -> tuple[str, str]:
    return JSON, json.dumps(body)


def _payload(body: Any) -> tuple[str, str]:
    """An interactivity delivery: the JSON in the payload field of a form."""
    return FORM, urlencode({"payload": json.dumps(body)})


MALFORMED_PAYLOADS: dict[str, tuple[str, str]] = {
    "event.text a number": _json(_mention(text=42)),
    "event.user an object": _json(_mention(user={"id": "U1"})),
    "event.thread_ts a list": _json(_mention(thread_ts=["1690000000.000001"])),
    "event.subtype a list": _json(_mention(subtype=["message_changed"])),
    "event.channel a number": _json(_mention(channel=7)),
    "event.type a number": _json(_mention(type=7)),
    "event.enterprise a number": _json(_mention(enterprise=7)),
    "event without a type": _json({**MENTION, "event": {"text": "hi"}}),
    "event_callback without an event": _json({k: v for k, v in MENTION.items() if k != "event"}),
    "event_id an object": _json({**MENTION, "event_id": {"id": "Ev1"}}),
    "team_id a number": _json({**MENTION, "team_id": 1}),
    "authorizations a string": _json({**MENTION, "authorizations": "T1"}),
    "authorizations of numbers": _json({**MENTION, "authorizations": [5]}),
    "authorizations[0].team_id a list": _json({**MENTION, "authorizations": [{"team_id": ["T1"]}]}),
    "message_changed with message a string": _json(
        _mention(type="message", subtype="message_changed", message="edited")
    ),
    "message_changed with message.user a list": (
        JSON,
        json.dumps(
            _mention(type="message", subtype="message_changed", message={"user": ["U1"], "ts": "1.2"})
        ),
    ),
    "app_home_opened without a user": _json(ev.envelope({"type": "app_home_opened", "tab": "home"})),
    "app_home_opened with user a number": _json(
        ev.envelope({"type": "app_home_opened", "tab": "home", "user": 5})
    ),
    "url_verification with challenge a number": _json({"type": "url_verification", "challenge": 5}),
    "JSON that is a list": _json([MENTION]),
    "JSON that is a string": _json("event_callback"),
    "JSON that is a number": (JSON, "5"),
    "JSON null": (JSON, "null"),
    "JSON object of no known kind": _json({"hello": "world"}),
    "a kind chatops does not take": _json({"type": "view_submission", "view": {"id": "V1"}}),
    "JSON too deeply nested": (JSON, "[" * 100_000 + "]" * 100_000),
    "an empty body": (JSON, ""),
    "event.channel empty": _json(_mention(channel="")),
    "event.user not a Slack id": _json(_mention(user="<@U1>")),
    "event.ts not a ts": _json(_mention(ts="now")),
    "event.thread_ts too long": _json(_mention(thread_ts="1" * 40 + ".1")),
    "event_id longer than Slack's": _json({**MENTION, "event_id": "Ev" + "0" * 100}),
    "team_id longer than a Slack id": _json({**MENTION, "team_id": "T" * 40}),
    "command with team_id not a Slack id": (FORM, _command(team_id="[null, 1.0]")),
    "command without trigger_id": (FORM, _command(trigger_id=None)),
    "command other than /agent": (FORM, _command(command="/deploy")),
    "command without channel_id": (FORM, _command(channel_id=None)),
    "command without user_id": (FORM, _command(user_id=None)),
    "command with an empty user_id": (FORM, _command(user_id="")),
    "command as JSON with text a number": _json({**ev.slash_command("x"), "text": 5}),
    "command as JSON with user_id an object": _json({**ev.slash_command("x"), "user_id": {"id": "U1"}}),
    "command as JSON with trigger_id a number": _json({**ev.slash_command("x"), "trigger_id": 5}),
    "command as JSON with command a list": _json({**ev.slash_command("x"), "command": ["/agent"]}),
    "a form of no known kind": (FORM, "a=b&c=d"),
    "ssl_check that is not 1": (FORM, "ssl_check=2&token=x"),
    "payload= not JSON": (FORM, urlencode({"payload": "{not json"})),
    "payload= a JSON list": _payload([_click()]),
    "payload= without a type": _payload({"user": {"id": "U1"}}),
    "block_actions with actions a string": _payload(_click(actions="undo")),
    "block_actions with no actions": _payload(_click(actions=[])),
    "block_actions with actions of numbers": _payload(_click(actions=[1, 2])),
    "block_actions with action_id a number": _payload(_action(action_id=5)),
    "block_actions with an action without action_id": _payload(_click(actions=[{"value": "1"}])),
    "block_actions with value an object": _payload(_action(value={"run": 1})),
    "block_actions with user.id a number": _payload(_click(user={"id": 5})),
    "block_actions with user a string": _payload(_click(user="U1")),
    "block_actions without a user": _payload(_click(user=None)),
    "block_actions with channel a string": _payload(_click(channel="C1")),
    "block_actions with team a number": _payload(_click(team=7)),
    "block_actions with container a string": _payload(_click(container="C1")),
    "block_actions with message.thread_ts a number": _payload(
        _click(message={"ts": "1.1", "thread_ts": 1.1})
    ),
}


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad]


@pytest.mark.parametrize("case", list(MALFORMED_PAYLOADS))
async def test_a_signed_payload_with_wrongly_typed_fields_is_a_400_without_retry(
    start_desk, caplog: pytest.LogCaptureFixture, case: str
):
    desk = await start_desk()
    content_type, body = MALFORMED_PAYLOADS[case]
    delivery = await desk.send.raw(body, content_type=content_type)
    assert delivery.status == 400, (delivery.status, delivery.text)
    assert delivery.headers.get("X-Slack-No-Retry") == "1"
    await _nothing_stored(desk)
    _no_error_logged(caplog)
    assert any(r.levelno == logging.WARNING and "refused" in r.getMessage() for r in caplog.records)


def _signed(desk, body: str, timestamp: str) -> str:
    return str(SignatureVerifier(desk.send.signing_secret).generate_signature(timestamp=timestamp, body=body))


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _malformed_headers(desk, body: str) -> dict[str, list[tuple[str, str]]]:
    """Header sets for `body`, each wrong in one way (a timestamp is signed as sent, so only
    its form is wrong)."""
    now = str(int(time.time()))
    good = _signed(desk, body, now)

    def at(ts: str, signature: str | None = None) -> list[tuple[str, str]]:
        return [
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", signature or _signed(desk, body, ts)),
        ]

    return {
        "timestamp not a number": at("yesterday"),
        "timestamp empty": at(""),
        "timestamp huge": at("9" * 5000),
        "timestamp a float": at(now + ".5"),
        "timestamp in exponent form": at("1.7e9"),
        "timestamp with a space": at(" " + now),
        "timestamp negative": at("-" + now),
        "timestamp in Arabic-Indic digits": at(now.translate(ARABIC_INDIC)),
        "timestamp non-ASCII": at("tö"),
        "signature empty": at(now, " "),
        "signature not hex": at(now, "v0=" + "z" * 64),
        "signature non-ASCII": at(now, "v0=" + "é" * 64),
        "signature of another version": at(now, "v1=" + good[3:]),
        "signature in upper case": at(now, "v0=" + good[3:].upper()),
        "two timestamps": [*at(now), ("X-Slack-Request-Timestamp", now)],
        "two signatures, the good one first": [*at(now), ("X-Slack-Signature", "v0=" + "0" * 64)],
        "two signatures, the good one last": [
            ("X-Slack-Request-Timestamp", now),
            ("X-Slack-Signature", "v0=" + "0" * 64),
            ("X-Slack-Signature", good),
        ],
        "the same good signature twice": [*at(now), ("X-Slack-Signature", good)],
    }


async def test_malformed_signature_and_timestamp_headers_are_a_401(
    start_desk, caplog: pytest.LogCaptureFixture
):
    desk = await start_desk()
    body = json.dumps(MENTION)
    async with aiohttp.ClientSession() as session:
        for case, headers in _malformed_headers(desk, body).items():
            async with session.post(
                f"{desk.url}/slack/events",
                data=body.encode(),
                headers=CIMultiDict([("Content-Type", "application/json"), *headers]),
            ) as response:
                assert response.status == 401, (case, response.status, await response.text())
    await _nothing_stored(desk)
    _no_error_logged(caplog)
    # The server is still fine: the same body, correctly signed once, is taken.
    assert (await desk.send.event(MENTION)).status == 200


async def test_a_command_with_a_trigger_id_as_long_as_slack_sends_is_taken(start_desk, caplog):
    """Slack's trigger ids run to 60 characters; the request's ts column holds 32."""
    desk = await start_desk()
    trigger = "7391357345684.7373960093875.5c4c8a0c0f8eb2d3f8b4e1df2c8fba3b"
    command = ev.slash_command("create a ticket for the long trigger", trigger_id=trigger)
    first = await desk.send.command(command)
    assert first.status == 200, first.text
    assert "Run #1" in first.text
    again = await desk.send.command(command)  # Slack's retry of the same command
    assert again.status == 200 and "Already" in again.text
    run = await desk.only_run()
    assert run.status == "succeeded"
    _no_error_logged(caplog)


async def test_a_slash_command_whose_text_says_payload_is_taken(start_desk):
    """bolt reads any form with the word "payload" in it as an interactivity payload."""
    desk = await start_desk()
    delivery = await desk.send.command(ev.slash_command("create a ticket for the payload parser"))
    assert delivery.status == 200, delivery.text
    assert "Run #1" in delivery.text
    run = await desk.only_run()
    [ticket] = await desk.tickets()
    assert run.status == "succeeded" and ticket.title == "the payload parser"
