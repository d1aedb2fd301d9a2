"""The app's installations in many workspaces (OAuth), kept in slack-sdk's own tables.

slack-sdk's SQLAlchemy stores read and write `slack_installations`, `slack_bots` and
`slack_oauth_states`; their tables are declared here with slack-sdk's own builders, on the
models' metadata, so that migration 0010 creates them and the migration tests check them
like every other table. The stores run on the process's database: their writes begin as
chatops' writes do (on SQLite `BEGIN IMMEDIATE`, waiting out another writer without blocking
the event loop), their reads as its reads.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, cast

from slack_sdk.oauth.installation_store.sqlalchemy import (
    AsyncSQLAlchemyInstallationStore,
    SQLAlchemyInstallationStore,
)
from slack_sdk.oauth.state_store.sqlalchemy import (
    AsyncSQLAlchemyOAuthStateStore,
    SQLAlchemyOAuthStateStore,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

if TYPE_CHECKING:
    from storage.engine import Database

INSTALLATIONS = SQLAlchemyInstallationStore.build_installations_table(
    SQLModel.metadata, "slack_installations"
)
BOTS = SQLAlchemyInstallationStore.build_bots_table(SQLModel.metadata, "slack_bots")
OAUTH_STATES = SQLAlchemyOAuthStateStore.build_oauth_states_table(SQLModel.metadata, "slack_oauth_states")
TABLES = (INSTALLATIONS, BOTS, OAUTH_STATES)

STATE_SECONDS = 600
"""How long an install link's state stays good (slack-sdk's default)."""


class _Engines:
    """What slack-sdk's stores ask of their engine: `begin()` for a write, `connect()` for a
    read. A write takes the database's write path (`chatops_write`: IMMEDIATE on SQLite)."""

    def __init__(self, db: Database) -> None:
        self._read = db.engine
        self._write = db.engine.execution_options(chatops_write=True)

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._write.begin()

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._read.connect()


def installation_store(db: Database, client_id: str) -> AsyncSQLAlchemyInstallationStore:
    """slack-sdk's installation store on the process's database."""
    return AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=_engine(db))


def state_store(db: Database, *, expiration_seconds: int = STATE_SECONDS) -> AsyncSQLAlchemyOAuthStateStore:
    """slack-sdk's OAuth state store (one row per install link, consumed by the redirect)."""
    return AsyncSQLAlchemyOAuthStateStore(expiration_seconds=expiration_seconds, engine=_engine(db))


def _engine(db: Database) -> AsyncEngine:
    # The stores call only begin() and connect() on it (slack_sdk.oauth.*.sqlalchemy).
    return cast(AsyncEngine, _Engines(db))


async def installed_teams(*, session: AsyncSession, client_id: str) -> list[str]:
    """The workspaces the app has a bot token for (sorted)."""
    c = BOTS.c
    stmt = (
        select(c.team_id)
        .where(c.client_id == client_id, c.team_id.is_not(None), c.bot_token.is_not(None))
        .distinct()
    )
    return sorted(t for t in (await session.exec(stmt)).all() if t)


async def bot_token(*, session: AsyncSession, client_id: str, team_id: str) -> str | None:
    """The newest bot token of the workspace, or None (never installed, or removed).

    Asked by team alone: slack-sdk's `async_find_bot` wants the enterprise id too, which a run
    does not keep (a workspace of an Enterprise Grid org has one; the team id is unique anyway).
    """
    c = BOTS.c
    stmt = (
        select(c.bot_token)
        .where(c.client_id == client_id, c.team_id == team_id, c.bot_token.is_not(None))
        .order_by(c.installed_at.desc(), c.id.desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()
