"""Many workspaces: slack-sdk's installation and OAuth state tables, and the workspace
(`team_id`) of the rows that had none: pauses, alerts, summary posts, audit events, tickets.

The slack_* tables are spelled out as slack-sdk 3.x builds them (storage.installations
declares them with slack-sdk's own builders; the migration tests compare the two). Every
existing row gets team_id "": it belongs to every workspace, which is what it meant (a pause
stops the agent everywhere). A pause is keyed (team_id, scope) from here on.

Downgrade: a pause of one workspace becomes a pause of every workspace (a pause is never
lost), alerts and summary posts that only the workspace told apart keep one of each (the
newest active alert, the first post), and the slack_* tables are dropped (every
installation is forgotten: the app must be installed again).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

AUTOINCREMENT = {"sqlite_autoincrement": True}  # models.NEVER_REUSED, kept when SQLite copies a table


def upgrade() -> None:
    _create_slack_tables()
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ("audit_events", "tickets", "alerts"):
        with op.batch_alter_table(table, table_kwargs=AUTOINCREMENT) as batch:
            batch.add_column(_team())
    op.drop_index("uq_alert_active", table_name="alerts")
    _alert_index(["team_id", "key"])
    with op.batch_alter_table("summary_posts", table_kwargs=AUTOINCREMENT) as batch:
        batch.add_column(_team())
        batch.drop_constraint("uq_summary_day_channel", type_="unique")
        batch.create_unique_constraint("uq_summary_day_channel", ["team_id", "day", "channel_id", "attempt"])
    if sqlite:
        # SQLite cannot change a primary key: the rows move to a table made with the new one.
        op.rename_table("controls", "_controls_old")
        _controls(["team_id", "scope"])
        op.execute(
            "INSERT INTO controls (team_id, scope, paused, by_user, reason, changed_at) "
            "SELECT '', scope, paused, by_user, reason, changed_at FROM _controls_old"
        )
        op.drop_table("_controls_old")
    else:
        op.add_column("controls", _team())
        op.drop_constraint("controls_pkey", "controls", type_="primary")
        op.create_primary_key("controls_pkey", "controls", ["team_id", "scope"])


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    pauses = _merged_pauses(bind)
    if sqlite:
        op.drop_table("controls")
        _controls(["scope"])
    else:
        op.execute("DELETE FROM controls")
        op.drop_constraint("controls_pkey", "controls", type_="primary")
        op.drop_column("controls", "team_id")
        op.create_primary_key("controls_pkey", "controls", ["scope"])
    if pauses:  # as read (SQLite keeps its timestamps as text): no type processing on the way back
        bind.execute(
            sa.text(
                "INSERT INTO controls (scope, paused, by_user, reason, changed_at) "
                "VALUES (:scope, :paused, :by_user, :reason, :changed_at)"
            ),
            pauses,
        )
    # One post per (day, channel, attempt) again: the first of those the workspace told apart.
    op.execute(
        "DELETE FROM summary_posts WHERE id NOT IN "
        "(SELECT min(id) FROM summary_posts GROUP BY day, channel_id, attempt)"
    )
    with op.batch_alter_table("summary_posts", table_kwargs=AUTOINCREMENT) as batch:
        batch.drop_constraint("uq_summary_day_channel", type_="unique")
        batch.create_unique_constraint("uq_summary_day_channel", ["day", "channel_id", "attempt"])
        batch.drop_column("team_id")
    # One active alert per key again: the newest stays active, the others are cleared.
    op.execute(
        "UPDATE alerts SET active = false, cleared_at = raised_at WHERE active AND id NOT IN "
        "(SELECT max(id) FROM alerts WHERE active GROUP BY key)"
    )
    op.drop_index("uq_alert_active", table_name="alerts")
    with op.batch_alter_table("alerts", table_kwargs=AUTOINCREMENT) as batch:
        batch.drop_column("team_id")
    _alert_index(["key"])
    for table in ("audit_events", "tickets"):
        with op.batch_alter_table(table, table_kwargs=AUTOINCREMENT) as batch:
            batch.drop_column("team_id")
    for name in ("slack_oauth_states", "slack_bots", "slack_installations"):
        op.drop_table(name)


def _team() -> sa.Column[Any]:
    return sa.Column("team_id", sa.String(length=32), nullable=False, server_default="")


def _controls(key: list[str]) -> None:
    """The controls table as 0001 made it, with `key` for its primary key (and team_id in it)."""
    op.create_table(
        "controls",
        *([_team()] if "team_id" in key else []),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("by_user", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )


def _alert_index(columns: list[str]) -> None:
    op.create_index(
        "uq_alert_active",
        "alerts",
        columns,
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def _merged_pauses(bind: sa.engine.Connection) -> list[dict[str, Any]]:
    """One row per scope: the row of every workspace (""), unless only a workspace's row pauses."""
    rows = bind.execute(
        sa.text("SELECT team_id, scope, paused, by_user, reason, changed_at FROM controls ORDER BY team_id")
    ).mappings()
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:  # "" first
        fields = {k: v for k, v in row.items() if k != "team_id"}
        kept = merged.setdefault(row["scope"], fields)
        if row["paused"] and not kept["paused"]:
            merged[row["scope"]] = fields
    return list(merged.values())


def _create_slack_tables() -> None:
    op.create_table(
        "slack_installations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_name", sa.String(length=200), nullable=True),
        sa.Column("enterprise_url", sa.String(length=200), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("team_name", sa.String(length=200), nullable=True),
        sa.Column("bot_token", sa.String(length=200), nullable=True),
        sa.Column("bot_id", sa.String(length=32), nullable=True),
        sa.Column("bot_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_scopes", sa.String(length=1000), nullable=True),
        sa.Column("bot_refresh_token", sa.String(length=200), nullable=True),
        sa.Column("bot_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("user_token", sa.String(length=200), nullable=True),
        sa.Column("user_scopes", sa.String(length=1000), nullable=True),
        sa.Column("user_refresh_token", sa.String(length=200), nullable=True),
        sa.Column("user_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("incoming_webhook_url", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_channel", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_channel_id", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_configuration_url", sa.String(length=200), nullable=True),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("token_type", sa.String(length=32), nullable=True),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "slack_installations_idx",
        "slack_installations",
        ["client_id", "enterprise_id", "team_id", "user_id", "installed_at"],
    )
    op.create_table(
        "slack_bots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_name", sa.String(length=200), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("team_name", sa.String(length=200), nullable=True),
        sa.Column("bot_token", sa.String(length=200), nullable=True),
        sa.Column("bot_id", sa.String(length=32), nullable=True),
        sa.Column("bot_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_scopes", sa.String(length=1000), nullable=True),
        sa.Column("bot_refresh_token", sa.String(length=200), nullable=True),
        sa.Column("bot_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("slack_bots_idx", "slack_bots", ["client_id", "enterprise_id", "team_id", "installed_at"])
    op.create_table(
        "slack_oauth_states",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("state", sa.String(length=200), nullable=False),
        sa.Column("expire_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
