"""The shapes of the Slack payloads chatops takes, checked at the door (POST /slack/events).

A delivery that passed the signature check is still read by code that trusts its shape:
bolt's context extractors (`payload["user"].get("id")`, `authorizations[0]`), its matchers
(`re.search(pattern, actions[0]["action_id"])`) and our listeners (`subtype in {...}`,
`event["user"]`, `command["channel_id"]`). A wrongly typed field there raises, bolt answers
500 and Slack delivers the same payload again. Slack never sends one, so `problem` names
what is wrong (a path and a type, never the value) and the door refuses it once: 400, no retry.

Only the kinds chatops listens to pass: Events API callbacks, the URL verification, slash
commands, button clicks (block_actions), and Slack's ssl_check and app_rate_limited notices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# A field's name means one thing wherever it appears in a Slack payload, and for some that
# thing has a form: ids go into Slack API calls and into columns of 32 characters, a
# message ts into the request's key. A value of another form is no id of Slack's.
SLACK_ID = re.compile(r"[A-Z0-9]{1,32}")
TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,12}")
FORMATS: dict[str, re.Pattern[str]] = {
    **dict.fromkeys(
        "id user channel team user_id channel_id team_id enterprise_id user_team source_team bot_id "
        "api_app_id context_team_id context_enterprise_id app_installed_team_id".split(),
        SLACK_ID,
    ),
    **dict.fromkeys("ts thread_ts event_ts message_ts action_ts deleted_ts".split(), TS),
    "event_id": re.compile(r"[A-Za-z0-9]{1,64}"),  # stored as the request's delivery key
    "trigger_id": re.compile(r"[!-~]{1,255}"),  # printable ASCII, bounded
}


@dataclass(frozen=True)
class Shape:
    """What an object holds, where it matters: fields that are strings (or absent or null),
    fields that are objects of a known shape, and lists of such objects."""

    strings: frozenset[str] = frozenset()
    objects: dict[str, Shape] = field(default_factory=dict)
    lists: dict[str, Shape] = field(default_factory=dict)
    ids: dict[str, Shape] = field(default_factory=dict)
    """Either a string id or an object of that shape (bolt reads both: `"U1"` or `{"id": "U1"}`)."""
    required: frozenset[str] = frozenset()
    """Fields that must be there, as non-empty strings or, for objects and lists, non-empty."""


def _shape(strings: str = "", *, required: str = "", **nested: Any) -> Shape:
    objects = {k: v for k, v in nested.items() if isinstance(v, Shape)}
    lists = {k: v[0] for k, v in nested.items() if isinstance(v, list)}
    ids = {k: v[0] for k, v in nested.items() if isinstance(v, tuple)}
    return Shape(frozenset(strings.split()), objects, lists, ids, frozenset(required.split()))


USER = _shape("id team_id name username")
CHANNEL = _shape("id name")
TEAM = _shape("id domain enterprise_id")
ENTERPRISE = _shape("id name")
MESSAGE = _shape("type subtype user text ts thread_ts bot_id team user_team channel client_msg_id")
ITEM = _shape("type channel ts")
ASSISTANT_THREAD = _shape("channel_id thread_ts user_id")
AUTHORIZATION = _shape("enterprise_id team_id user_id")
EVENT = _shape(
    "type subtype user channel ts thread_ts event_ts text channel_type team user_team source_team "
    "bot_id tab client_msg_id user_id channel_id team_id enterprise_id deleted_ts "
    "function_execution_id bot_access_token",
    required="type",
    message=MESSAGE,
    previous_message=MESSAGE,
    item=ITEM,
    assistant_thread=ASSISTANT_THREAD,
    enterprise=(ENTERPRISE,),
)
VIEW = _shape("id type team_id app_installed_team_id callback_id")
CONTAINER = _shape("type message_ts channel_id thread_ts view_id")
ACTION = _shape("action_id block_id value type action_ts", required="action_id")
# What bolt's context extractors read from any payload, whatever its kind.
ANY = _shape(
    "type team_id enterprise_id user_id channel_id thread_ts api_app_id token trigger_id "
    "response_url event_id function_execution_id bot_access_token context_team_id "
    "context_enterprise_id",
    event=EVENT,
    message=MESSAGE,
    previous_message=MESSAGE,
    item=ITEM,
    assistant_thread=ASSISTANT_THREAD,
    view=VIEW,
    container=CONTAINER,
    authorizations=[AUTHORIZATION],
    user=(USER,),
    channel=(CHANNEL,),
    team=(TEAM,),
    enterprise=(ENTERPRISE,),
)
EVENT_CALLBACK = _shape("event_id", required="event")
URL_VERIFICATION = _shape("challenge", required="challenge")
COMMAND = _shape(
    "command text user_id channel_id team_id trigger_id response_url user_name channel_name team_domain",
    required="command user_id channel_id trigger_id",
)
# The button listener reads user, channel and team as objects, never as bare ids, and
# answers the user who clicked, where they clicked.
BLOCK_ACTIONS = _shape(
    required="user actions",
    user=_shape("id team_id name username", required="id"),
    channel=CHANNEL,
    team=TEAM,
    message=MESSAGE,
    actions=[ACTION],
)
COMMANDS = ("/agent",)  # the app's slash commands (slack-manifest.json)
APP_HOME_OPENED = _shape(required="user")  # the Home tab is published for event["user"]


def problem(body: Any) -> str | None:
    """What makes `body` a payload chatops does not take, or None when it takes it."""
    if not isinstance(body, dict):
        return f"the payload is {_kind(body)}, not an object"
    wrong = _check(body, ANY, "")
    if wrong:
        return wrong
    kind = body.get("type")
    if "command" in body:
        wrong = _check(body, COMMAND, "")
        if wrong is None and body["command"] not in COMMANDS:
            wrong = "a slash command chatops does not define"
        return wrong
    if kind == "event_callback":
        wrong = _check(body, EVENT_CALLBACK, "")
        if wrong is None and body["event"]["type"] == "app_home_opened":
            wrong = _check(body["event"], APP_HOME_OPENED, "event.")
        return wrong
    if kind == "block_actions":
        wrong = _check(body, BLOCK_ACTIONS, "")
        if wrong is None and not (
            (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        ):
            wrong = "a click with no channel (channel.id or container.channel_id)"
        return wrong
    if kind == "url_verification":
        return _check(body, URL_VERIFICATION, "")
    if kind == "app_rate_limited":
        return None
    if "ssl_check" in body:  # bolt answers it, when it is the "1" Slack sends
        return None if body["ssl_check"] == "1" else "ssl_check is not 1"
    if kind is None:
        return "a payload with no type, command or ssl_check"
    return f"a payload of type {kind!r} (chatops takes events, commands and buttons)"


def rate_limited(body: dict[str, Any]) -> bool:
    """Slack's notice that it is holding back this app's event deliveries."""
    return body.get("type") == "app_rate_limited"


def _check(obj: dict[str, Any], shape: Shape, at: str) -> str | None:
    for name in shape.required:
        if not obj.get(name):
            return f"{at}{name} is missing"
    for name, value in obj.items():
        if value is None:
            continue
        path = f"{at}{name}"
        if name in shape.strings or (isinstance(value, str) and name in shape.ids):
            if not isinstance(value, str):
                return f"{path} is {_kind(value)}, not a string"
            form = FORMATS.get(name)
            if form is not None and not form.fullmatch(value):
                return f"{path} is not of the form of a Slack {'ts' if form is TS else name}"
        elif name in shape.objects or name in shape.ids:
            if not isinstance(value, dict):
                return f"{path} is {_kind(value)}, not an object"
            wrong = _check(value, shape.objects.get(name) or shape.ids[name], f"{path}.")
            if wrong:
                return wrong
        elif name in shape.lists:
            if not isinstance(value, list):
                return f"{path} is {_kind(value)}, not a list"
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    return f"{path}[{i}] is {_kind(item)}, not an object"
                wrong = _check(item, shape.lists[name], f"{path}[{i}].")
                if wrong:
                    return wrong
    return None


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for a message about it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__
