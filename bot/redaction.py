"""Secrets never leave through Slack: the Web API client and the bolt app, cleaned.

Two doors lead out to Slack: the Web API (every post, edit, ephemeral message, stream,
loading status, Home tab view) and the answer to a Slack request (a slash command's or a
button's ack). Each is wrapped here once, with the process's one Redactor
(agents.redaction), so no caller can forget it.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from agents.config import Config
from agents.redaction import Redactor
from bot.settings import Settings

# Arguments that name things (channels, messages, users) rather than carry text: never redacted,
# so that a secret that happens to equal an id cannot misdirect a call.
IDENTIFIERS = frozenset(
    {
        "channel",
        "channel_id",
        "ts",
        "thread_ts",
        "timestamp",
        "user",
        "user_id",
        "users",
        "name",
        "team_id",
        "recipient_team_id",
        "recipient_user_id",
        "trigger_id",
        "view_id",
        "external_id",
        "hash",
        "cursor",
        "limit",
        "token",
    }
)


class RedactingWebClient(AsyncWebClient):
    """slack_sdk's client, with every text a call carries cleaned of secrets first.

    Every Web API method (posts, edits, ephemeral messages, streams, loading status, views)
    goes through `api_call`, so this is the one choke point for what leaves through Slack.
    """

    redactor: Redactor = Redactor()

    async def api_call(
        self,
        api_method: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        data: Any = None,
        **kwargs: Any,
    ) -> Any:
        return await super().api_call(
            api_method,
            json=self._clean(json),
            params=self._clean(params),
            data=self._clean(data) if isinstance(data, dict) else data,
            **kwargs,
        )

    def _clean(self, args: dict[str, Any] | None) -> dict[str, Any] | None:
        if not args:
            return args
        return {k: v if k in IDENTIFIERS else self.redactor.clean_data(v) for k, v in args.items()}


class RedactingApp(AsyncApp):
    """bolt's AsyncApp whose answers to Slack (acks with text or blocks) are cleaned of secrets.

    Both transports (HTTP and Socket Mode) and the console answer through `async_dispatch`.
    """

    redactor: Redactor = Redactor()

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        response = await super().async_dispatch(req)
        if isinstance(response.body, str) and response.body:
            response.body = self.redactor.clean(response.body)
        return response

    def _init_context(self, req: AsyncBoltRequest) -> None:
        """bolt makes each request a plain AsyncWebClient of its own (`context.client`, which
        its `say`, `respond` and Assistant utilities use, and which its authorization hands the
        request's token): made here as a RedactingWebClient instead, with the same settings."""
        super()._init_context(req)
        plain: AsyncWebClient = req.context["client"]
        client = RedactingWebClient(
            token=plain.token,
            base_url=plain.base_url,
            timeout=plain.timeout,
            ssl=plain.ssl,
            proxy=plain.proxy,
            session=plain.session,
            trust_env_in_session=plain.trust_env_in_session,
            headers=plain.headers,
            team_id=req.context.team_id,
            logger=plain.logger,
            retry_handlers=plain.retry_handlers,
        )
        client.redactor = self.redactor
        req.context["client"] = client


def redactor_for(settings: Settings, config: Config) -> Redactor:
    """The process's one Redactor: Slack and OpenAI credentials, and what the configuration reads
    from the environment."""
    return Redactor([*settings.secrets(), *config.secret_values()])
