"""Typed settings, read once from the environment and ``.env``.

Create one :class:`Settings` at start-up and pass it explicitly; nothing reads
the environment anywhere else. Secrets are ``SecretStr`` so they never show in
a repr, a log line or a traceback.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    """A SQLite file in the working directory."""
    return f"sqlite:///{Path.cwd() / 'paperboy.db'}"


class Settings(BaseSettings):
    """Every knob Paperboy has; see ``.env.example`` for the documented list."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Storage
    database_url: str = Field(default_factory=default_database_url, validation_alias="DATABASE_URL")

    # Hugging Face papers API
    hf_url: str = Field("https://huggingface.co", validation_alias="PAPERBOY_HF_URL")
    hf_token: SecretStr | None = Field(None, validation_alias="PAPERBOY_HF_TOKEN")
    hf_timeout_seconds: float = Field(10.0, validation_alias="PAPERBOY_HF_TIMEOUT")
    hf_retries: int = Field(3, validation_alias="PAPERBOY_HF_RETRIES")
    daily_cache_seconds: int = Field(300, validation_alias="PAPERBOY_DAILY_CACHE_SECONDS")
    search_cache_seconds: int = Field(3600, validation_alias="PAPERBOY_SEARCH_CACHE_SECONDS")
    offline_sample: bool = Field(True, validation_alias="PAPERBOY_OFFLINE_SAMPLE")
    # A person waits at most this long for Hugging Face before the stored copy answers (deliveries wait longer).
    answer_deadline_seconds: float = Field(4.0, gt=0, le=60, validation_alias="PAPERBOY_ANSWER_DEADLINE")

    # Answers
    search_results: int = Field(5, ge=1, le=25, validation_alias="PAPERBOY_SEARCH_RESULTS")
    trending_results: int = Field(10, ge=1, le=25, validation_alias="PAPERBOY_TRENDING_RESULTS")
    max_topics_per_user: int = Field(25, ge=1, validation_alias="PAPERBOY_MAX_TOPICS")
    max_topic_length: int = Field(200, ge=10, le=200, validation_alias="PAPERBOY_MAX_TOPIC_LENGTH")  # the column holds 200

    # Commands: how many are worked on at once, and how many may wait (beyond that: "busy, try again")
    command_workers: int = Field(32, ge=1, le=1000, validation_alias="PAPERBOY_COMMAND_WORKERS")
    command_queue: int = Field(1000, ge=1, validation_alias="PAPERBOY_COMMAND_QUEUE")

    # Scheduling defaults
    default_timezone: str = Field("UTC", validation_alias="PAPERBOY_DEFAULT_TIMEZONE")
    default_post_time: time = Field(time(9, 0), validation_alias="PAPERBOY_DEFAULT_POST_TIME")
    delivery_grace_hours: float = Field(6.0, ge=0, validation_alias="PAPERBOY_DELIVERY_GRACE_HOURS")
    delivery_poll_seconds: int = Field(60, ge=1, validation_alias="PAPERBOY_DELIVERY_POLL_SECONDS")
    delivery_concurrency: int = Field(64, ge=1, validation_alias="PAPERBOY_DELIVERY_CONCURRENCY")
    post_on_empty_days: bool = Field(False, validation_alias="PAPERBOY_POST_ON_EMPTY_DAYS")

    # Slack
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_client_id: str | None = Field(None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(None, validation_alias="SLACK_CLIENT_SECRET")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    slack_admins_only_channel_settings: bool = Field(False, validation_alias="SLACK_ADMINS_ONLY_CHANNEL_SETTINGS")
    port: int = Field(3000, validation_alias="PORT")

    # Discord
    discord_token: SecretStr | None = Field(None, validation_alias="DISCORD_TOKEN")
    discord_guild_id: int | None = Field(None, validation_alias="DISCORD_GUILD_ID")
    discord_shards: str = Field("1", validation_alias="DISCORD_SHARDS")
    discord_api_url: str | None = Field(None, validation_alias="DISCORD_API_URL")

    log_level: str = Field("INFO", validation_alias="PAPERBOY_LOG_LEVEL")

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, value: str) -> str:
        """SQLite or PostgreSQL, with a numeric port: said at start, not as a driver's traceback."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value.strip())
            port = url.port
        except ArgumentError:
            raise ValueError("not a database URL; use sqlite:///path/to/paperboy.db or "
                             "postgresql://user:password@host:5432/name") from None
        except ValueError:   # SQLAlchemy reads the port with int()
            raise ValueError("the port in the database URL is not a number") from None
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"the {backend!r} database is not supported; use sqlite:/// or postgresql://")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"the port in the database URL must be 1-65535, not {port}")
        return value.strip()

    @field_validator("hf_url", "slack_api_url")
    @classmethod
    def _no_trailing_space(cls, value: str) -> str:
        return value.strip()

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token or (self.slack_client_id and self.slack_client_secret))

    @property
    def discord_enabled(self) -> bool:
        return self.discord_token is not None

    def secrets(self) -> list[str]:
        """Every secret value configured, for the log redaction filter."""
        values = [self.hf_token, self.slack_bot_token, self.slack_app_token, self.slack_signing_secret,
                  self.slack_client_secret, self.discord_token]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
