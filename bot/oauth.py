"""Many workspaces: the app installed through Slack's OAuth flow instead of one bot token.

With SLACK_CLIENT_ID and SLACK_CLIENT_SECRET, `chatops serve` serves bolt's OAuth flow:
GET /slack/install sends the installer to Slack's authorize page with a state (kept in the
database, and in a cookie of the installer's browser), and GET /slack/oauth_redirect
exchanges Slack's code at oauth.v2.access and saves the installation (storage.installations,
slack-sdk's SQLAlchemy stores). Every request from Slack is then authorized by its workspace's
installation (bolt's AsyncInstallationStoreAuthorize), every call to Slack for a workspace is
made with that workspace's bot token (bot.workspaces), and a workspace that removes the app
stops there (bot.uninstall).

Socket Mode is refused with OAuth: bolt can pair them, but only beside an HTTP server for the
two OAuth paths, and Slack redirects installers to a public URL anyway: serve over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore

from agents.redaction import Redactor
from bot.redaction import RedactingWebClient
from bot.settings import Settings
from bot.workspaces import Workspaces
from storage import audit, installations
from storage.engine import Database

log = logging.getLogger(__name__)

BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "commands",
    "reactions:write",
    "users:read",
)
"""The bot scopes asked for at install unless SLACK_SCOPES says otherwise: slack-manifest.json's."""


def problem(settings: Settings, *, serving: bool) -> str | None:
    """Why the OAuth variables as set cannot start chatops, naming the variable; None when
    OAuth is not asked for, or fits. `serving`: the command answers Slack over HTTP."""
    if not settings.slack_oauth:
        return None
    if settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value():
        return (
            "SLACK_BOT_TOKEN and SLACK_CLIENT_ID are both set: one workspace by its bot token, or many "
            "installed through OAuth? Unset one of them"
        )
    if not settings.slack_client_id:
        return "SLACK_CLIENT_SECRET is set but SLACK_CLIENT_ID is missing"
    if settings.slack_client_secret is None or not settings.slack_client_secret.get_secret_value():
        return "SLACK_CLIENT_ID is set but SLACK_CLIENT_SECRET is missing"
    if settings.slack_app_token is not None and settings.slack_app_token.get_secret_value():
        return (
            "SLACK_APP_TOKEN is set with SLACK_CLIENT_ID: installing in many workspaces serves Slack over "
            "HTTP (installers come back to /slack/oauth_redirect), not Socket Mode; unset SLACK_APP_TOKEN"
        )
    if serving and (
        settings.slack_signing_secret is None or not settings.slack_signing_secret.get_secret_value()
    ):
        return (
            "SLACK_SIGNING_SECRET is missing: installing in many workspaces serves Slack over HTTP, "
            "whose requests are verified with it"
        )
    return None


def scopes(settings: Settings) -> list[str]:
    """The bot scopes to ask for: SLACK_SCOPES (comma-separated), else BOT_SCOPES."""
    given = [s.strip() for s in (settings.slack_scopes or "").split(",") if s.strip()]
    return given or list(BOT_SCOPES)


@dataclass
class OAuth:
    """What bolt needs to install the app and authorize requests, on the process's database."""

    settings: AsyncOAuthSettings
    """The flow's settings (stores, scopes, redirect URI, what an install does)."""
    authorize: AsyncInstallationStoreAuthorize
    """Each request's bot token, from its workspace's installation."""
    store: AsyncSQLAlchemyInstallationStore

    @classmethod
    def build(cls, settings: Settings, db: Database, workspaces: Workspaces) -> OAuth:
        assert settings.slack_client_id is not None and settings.slack_client_secret is not None
        client_id = settings.slack_client_id
        secret = settings.slack_client_secret.get_secret_value()
        store = installations.installation_store(db, client_id)

        async def installed(args: AsyncSuccessArgs) -> BoltResponse:
            team_id = args.installation.team_id or ""
            await workspaces.forget(team_id)  # installed again: its new token from now on
            async with db.write() as session:
                await audit.record(
                    session=session,
                    team_id=team_id,
                    actor=args.installation.user_id or "system",
                    action="install",
                    target=f"team:{team_id}",
                    detail=args.installation.team_name or "",
                )
            log.info("installed in workspace %s (%s)", team_id, args.installation.team_name)
            return await args.default.success(args)

        async def refused(args: AsyncFailureArgs) -> BoltResponse:
            log.warning("an installation was refused: %s", args.reason)
            return await args.default.failure(args)

        flow = AsyncOAuthSettings(
            client_id=client_id,
            client_secret=secret,
            scopes=scopes(settings),
            user_scopes=[],
            redirect_uri=settings.slack_redirect_uri,
            install_page_rendering_enabled=False,  # /slack/install redirects to Slack at once
            installation_store=store,
            installation_store_bot_only=True,
            state_store=installations.state_store(db),
            callback_options=AsyncCallbackOptions(success=installed, failure=refused),
            logger=log,
        )
        authorize = AsyncInstallationStoreAuthorize(
            logger=log,
            installation_store=store,
            client_id=client_id,
            client_secret=secret,
            bot_only=True,
            cache_enabled=True,  # auth.test once per token, not once per request
        )
        return cls(flow, authorize, store)


def app_client(settings: Settings, redactor: Redactor) -> RedactingWebClient:
    """The bolt app's own client: no token (each request gets its workspace's from bolt, each
    run's calls their workspace's from bot.workspaces); it exchanges the install codes."""
    client = RedactingWebClient(base_url=settings.slack_api_url, timeout=15)
    client.redactor = redactor
    return client


def add_routes(app: web.Application, flow: AsyncOAuthFlow) -> None:
    """GET /slack/install and GET /slack/oauth_redirect, answered by bolt's OAuth flow."""

    def answer(
        handle: Callable[..., Awaitable[BoltResponse]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def route(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await handle(await to_bolt_request(request)))

        return route

    app.router.add_get(flow.install_path, answer(flow.handle_installation))
    app.router.add_get(flow.redirect_uri_path, answer(flow.handle_callback))
