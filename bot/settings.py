"""The environment (and `.env`): credentials, endpoints, database, tuning."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # Many workspaces (bot.oauth): installed through Slack's OAuth flow instead of one bot token.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_scopes: str | None = None
    """Bot scopes asked for at install, comma-separated; default: slack-manifest.json's (bot.oauth)."""
    slack_redirect_uri: str | None = None

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    chatops_model: str = "gpt-4o-mini"
    chatops_model_timeout: float = Field(default=60.0, gt=0)
    chatops_model_retries: int = Field(default=4, ge=0, le=10)

    database_url: str = "sqlite:///chatops.db"
    chatops_config: str | None = None
    port: int = 3000

    chatops_workers: int = Field(default=50, ge=1, le=5000)
    """How many runs one process works at once."""
    chatops_lease_seconds: float = Field(default=30.0, gt=0)
    chatops_poll_seconds: float = Field(default=1.0, gt=0)
    chatops_edit_interval: float = Field(default=1.0, ge=0)
    """Seconds between two edits of one thread's status message."""
    chatops_loading_status: bool = True
    """Show a run's step in its thread's loading status ("is running restart_service…")."""
    chatops_loading_refresh_seconds: float = Field(default=90.0, gt=0, le=115)
    """How often a long step's loading status is sent again (Slack drops it after 120 s)."""
    chatops_stream_answers: bool = True
    """Stream a language model's answer into the outcome reply (chat.startStream...)."""
    chatops_model_outage_minutes: float = Field(default=10.0, ge=0)
    """How long a run waits out an unreachable model server before it fails."""
    chatops_max_crashes: int = Field(default=3, ge=1, le=100)
    """A run that crashed its worker this many times is failed (and rolled back per policy)."""

    def config_path(self) -> Path | None:
        """CHATOPS_CONFIG, else chatops.toml if present, else None (built-in defaults)."""
        if self.chatops_config:
            return Path(self.chatops_config)
        default = Path("chatops.toml")
        return default if default.exists() else None

    def secrets(self) -> list[str]:
        """Every credential's value, for redaction."""
        values = [self.slack_bot_token, self.slack_signing_secret, self.slack_app_token, self.openai_api_key]
        values.append(self.slack_client_secret)
        return [v.get_secret_value() for v in values if v is not None]

    @property
    def slack_http(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def slack_oauth(self) -> bool:
        """Many workspaces: installed through OAuth (bot.oauth says whether the rest fits)."""
        return bool(self.slack_client_id or self.slack_client_secret)

    @property
    def slack_socket(self) -> bool:
        return bool(self.slack_bot_token and self.slack_app_token)

    def slack_given(self) -> list[str]:
        """The Slack credential variables that are set (an empty value counts as unset)."""
        values = {
            "SLACK_BOT_TOKEN": self.slack_bot_token,
            "SLACK_SIGNING_SECRET": self.slack_signing_secret,
            "SLACK_APP_TOKEN": self.slack_app_token,
        }
        return [name for name, value in values.items() if value is not None and value.get_secret_value()]

    def slack_missing(self, *needed: str) -> str | None:
        """ "SLACK_X is missing" (or "SLACK_X and SLACK_Y are missing") for the needed variables
        that are unset; None when all are set."""
        given = self.slack_given()
        missing = [name for name in needed if name not in given]
        if not missing:
            return None
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"

    def slack_partial(self) -> str | None:
        """Why Slack credentials that are set only in part cannot be used (None: a usable set,
        or none at all). HTTP needs the bot token and the signing secret, Socket Mode the bot
        token and the app token; a partial set is a mistake to name, never a reason to fall
        back to the console without a word."""
        given = self.slack_given()
        if not given or self.slack_http or self.slack_socket:
            return None
        which = f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set"
        if "SLACK_BOT_TOKEN" not in given:
            return f"{which} but SLACK_BOT_TOKEN is missing"
        return (
            f"{which} but SLACK_SIGNING_SECRET is missing (to serve Slack over HTTP; "
            "or SLACK_APP_TOKEN for Socket Mode)"
        )
