"""A workspace removes the app (app_uninstalled) or revokes its bot token (tokens_revoked).

bolt's own revocation listeners delete the installation from the store; then the workspace's
surface is dropped (nothing more is sent there: bot.workspaces finds no token), its queued,
waiting and running runs are cancelled (a running one stops at its next step boundary), and
the removal is audited and logged. Installing the app again later starts afresh.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore

from bot.presenter import Presenter
from bot.workspaces import Workspaces
from storage import audit, teams
from storage.engine import Database

log = logging.getLogger(__name__)

REASONS = {
    "app_uninstalled": "the app was removed from this workspace",
    "tokens_revoked": "the app's access to this workspace was revoked",
}


class Removal:
    def __init__(
        self, db: Database, store: AsyncInstallationStore, workspaces: Workspaces, presenter: Presenter
    ) -> None:
        self.db = db
        self.store = store
        self.workspaces = workspaces
        self.presenter = presenter

    def listen(self, app: AsyncApp) -> None:
        """Register the listeners of both events (before the app's catch-all)."""
        revoked = app.default_tokens_revoked_event_listener()
        uninstalled = app.default_app_uninstalled_event_listener()

        @app.event("tokens_revoked")
        async def on_tokens_revoked(event: dict[str, Any], context: AsyncBoltContext) -> None:
            await revoked(event, context)  # bolt: the revoked tokens leave the store
            tokens = event.get("tokens")
            bots = tokens.get("bot") if isinstance(tokens, dict) else None
            if bots and context.team_id:  # users' tokens alone leave the bot working
                await self.removed(context.team_id, "tokens_revoked")

        @app.event("app_uninstalled")
        async def on_app_uninstalled(context: AsyncBoltContext) -> None:
            await uninstalled(context)  # bolt: the workspace's installations leave the store
            if context.team_id:
                await self.removed(context.team_id, "app_uninstalled")

    async def removed(self, team_id: str, event: str) -> list[int]:
        """The app can no longer act in `team_id`: stop there. Returns the runs cancelled."""
        await self.workspaces.forget(team_id)
        reason = REASONS[event]
        async with self.db.write() as session:
            cancelled = await teams.cancel_runs(session=session, team_id=team_id, reason=reason)
            await audit.record(
                session=session,
                team_id=team_id,
                actor="system",
                action="uninstall",
                target=f"team:{team_id}",
                detail=f"{event}: {len(cancelled)} run{'s' * (len(cancelled) != 1)} cancelled "
                + "".join(f"#{i} " for i in cancelled).strip(),
            )
        log.warning(
            "%s in workspace %s: %s; %d runs cancelled %s", event, team_id, reason, len(cancelled), cancelled
        )
        for run_id in cancelled:  # their threads are shown nowhere now: nothing is retried either
            await self.presenter.run_finished(run_id)
        return cancelled
