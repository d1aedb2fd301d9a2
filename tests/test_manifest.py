"""slack-manifest.json: what Slack installs the app with. It asks for what chatops uses (the
assistant container, its scope and events, a scope for every event), and it is valid against
Slack's own manifest schema, v2.

The schema is Slack's `schemas/manifest.schema.2.0.0.json` from github.com/slackapi/manifest-schema
(MIT licence). It is not kept in this repository: the test reads it from $MANIFEST_SCHEMA, or
from `shared/slack/manifest.schema.2.0.0.json` beside the checkout (or above it), and says so
when it is in neither place.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "slack-manifest.json"
SCHEMA_NAME = "manifest.schema.2.0.0.json"
# Read at import: the autouse fixture clears SLACK_*/CHATOPS_* variables, not this one.
GIVEN = os.environ.get("MANIFEST_SCHEMA")

# The scope each subscribed event needs (Slack's Events API reference).
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "assistant_thread_started": "assistant:write",
    "assistant_thread_context_changed": "assistant:write",
}


def _manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def _schema_path() -> Path | None:
    if GIVEN:
        return Path(GIVEN)
    for folder in ROOT.parents:
        for candidate in (folder / "shared" / "slack" / SCHEMA_NAME, folder / "shared" / SCHEMA_NAME):
            if candidate.is_file():
                return candidate
    return None


def test_the_manifest_asks_for_the_assistant_container_and_what_it_needs() -> None:
    manifest = _manifest()
    features = manifest["features"]
    assistant = features["assistant_view"]
    assert assistant["assistant_description"]
    assert 0 < len(assistant["suggested_prompts"]) <= 4
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"assistant:write", "chat:write", "im:history"} <= scopes  # setStatus needs chat:write only
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"assistant_thread_started", "assistant_thread_context_changed", "message.im"} <= set(events)
    missing = {e: s for e, s in EVENT_SCOPES.items() if e in events and s not in scopes}
    assert missing == {}
    assert features["app_home"]["messages_tab_enabled"] is True  # the DM is where the container lives


def test_the_manifest_is_valid_against_slacks_manifest_schema_v2() -> None:
    path = _schema_path()
    if path is None:
        pytest.skip(
            f"Slack's {SCHEMA_NAME} (github.com/slackapi/manifest-schema, schemas/) is not here: "
            "set MANIFEST_SCHEMA to it, or put it in shared/slack/ beside the checkout"
        )
    validator = Draft7Validator(json.loads(path.read_text(encoding="utf-8")))
    manifest = _manifest()
    assert manifest["_metadata"]["major_version"] == 2
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest)]
    assert errors == []

    # The schema does check what it says: an assistant view with no description is refused.
    broken = copy.deepcopy(manifest)
    del broken["features"]["assistant_view"]["assistant_description"]
    assert not validator.is_valid(broken)
