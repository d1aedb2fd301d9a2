"""The app's OAuth settings agree with its manifest: the scopes asked for at install are the
manifest's bot scopes (unless SLACK_SCOPES says otherwise), the manifest has the redirect URL
and subscribes to the events that say the app was removed from a workspace."""

from __future__ import annotations

import json
from pathlib import Path

from bot.oauth import BOT_SCOPES, scopes
from bot.settings import Settings

MANIFEST = json.loads((Path(__file__).parents[2] / "slack-manifest.json").read_text(encoding="utf-8"))


def test_the_scopes_asked_for_at_install_are_the_manifests() -> None:
    assert list(BOT_SCOPES) == MANIFEST["oauth_config"]["scopes"]["bot"]
    assert scopes(Settings(slack_client_id="1.2")) == list(BOT_SCOPES)
    assert scopes(Settings(slack_scopes="chat:write, commands,")) == ["chat:write", "commands"]


def test_the_manifest_has_the_redirect_url_and_the_removal_events() -> None:
    assert MANIFEST["oauth_config"]["redirect_urls"] == ["https://YOUR-HOST/slack/oauth_redirect"]
    events = MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    assert {"app_uninstalled", "tokens_revoked"} <= set(events)


def test_the_client_secret_is_a_secret_to_redact() -> None:
    settings = Settings(slack_client_id="1.2", slack_client_secret="s3cret-of-the-app")
    assert "s3cret-of-the-app" in settings.secrets() and "1.2" not in settings.secrets()
