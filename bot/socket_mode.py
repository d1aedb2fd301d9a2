"""Socket Mode: Slack's deliveries over a WebSocket instead of POST /slack/events.

The same bolt app answers them (bot.slack_app, a RedactingApp, so an ack's payload is cleaned
of secrets as an HTTP answer is), and bolt's aiohttp handler keeps the connection: it opens a
URL with the app-level token (apps.connections.open), acks each envelope with its id after the
listener has stored what it must, and moves to a new URL when Slack sends `disconnect` or the
socket drops. What it does not do is done here:

- A token Slack refuses is the operator's to fix: bolt would retry it every ten seconds
  forever, so `open` raises AppTokenRefused instead, naming the variable and Slack's reason.
- A payload of a shape Slack never sends is dropped with the HTTP door's own check (bot.http):
  a listener would crash on it, bolt would not ack, and Slack would send it again and again.
  It is acked, which is Socket Mode's way of saying "do not retry" (HTTP answers 400 and
  X-Slack-No-Retry).
"""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot import shapes  # one definition of what Slack sends, for both doors

log = logging.getLogger(__name__)

# apps.connections.open's answers that no retry can change.
REFUSALS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
    }
)
HOW_TO = "create one with the connections:write scope under Basic Information, App-Level Tokens"


class AppTokenRefused(Exception):
    """SLACK_APP_TOKEN cannot open a Socket Mode connection; the message says why."""


def check_app_token(token: str) -> None:
    """Raises AppTokenRefused for a value that cannot be an app-level token (a bot token
    pasted twice is the usual one), before anything is asked of Slack."""
    if not token.startswith("xapp-"):
        raise AppTokenRefused(f"SLACK_APP_TOKEN is not an app-level token (xapp-...): {HOW_TO}")


class SocketModeDoor(AsyncSocketModeHandler):
    """bolt's aiohttp Socket Mode handler, with the checks of the HTTP door."""

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        wrong = shapes.problem(req.payload)
        if wrong is not None:
            log.warning(
                "Slack payload of an unexpected shape dropped (a %s envelope, acked): %s", req.type, wrong
            )
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        await super().handle(client, req)

    async def open(self) -> None:
        """Connect. Raises AppTokenRefused when Slack refuses the token; anything else (Slack
        unreachable, rate limited) is left to bolt, which retries until it connects."""
        try:
            url: str | None = await self.client.issue_new_wss_url()
        except SlackApiError as e:
            error = str(e.response.get("error") or "")
            if error in REFUSALS:
                raise AppTokenRefused(f"SLACK_APP_TOKEN: Slack refused it ({error}); {HOW_TO}") from None
            url = None
        except Exception:  # broad on purpose: a network failure is bolt's to retry, as below
            url = None
        self.client.wss_uri = url  # None: connect() asks for one, and retries until it has one
        await self.connect_async()
