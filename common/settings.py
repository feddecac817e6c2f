"""Every setting of every process, in one place, read from ``SOVD_*`` env vars."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_JWT_SECRET", "Settings", "get_settings"]

#: The development secret; refused when ``SOVD_ENV`` is not ``dev``.
DEFAULT_JWT_SECRET = "dev-only-insecure-secret-change-me-0123456789"  # noqa: S105

#: Port of the embedded Valkey server used when no Redis URL is configured.
DEFAULT_EMBEDDED_REDIS_PORT = 6390


class Settings(BaseSettings):
    """Configuration shared by all processes. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SOVD_", extra="ignore", frozen=True)

    env: Literal["dev", "production"] = "dev"

    # Redis
    redis_url: str | None = Field(
        default=None,
        description="Redis URL; unset means the embedded Valkey server on 127.0.0.1.",
    )
    embedded_redis_port: int = DEFAULT_EMBEDDED_REDIS_PORT
    data_dir: Path = Path("var")
    key_prefix: str = Field(default="sovd", pattern=r"^[A-Za-z0-9_.-]+$")

    # Auth
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_issuer: str = "sovd-command-service"
    jwt_audience: str = "sovd-clients"
    access_token_ttl_s: int = Field(default=900, gt=0)
    refresh_token_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)

    # Network
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    realtime_host: str = "127.0.0.1"
    realtime_port: int = 8001
    public_realtime_url: str = Field(
        default="",
        description="Base WebSocket URL clients use to reach realtime; derived from the "
        "realtime port when empty.",
    )
    cors_origins: list[str] = Field(default_factory=list)

    # Logging
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Durable per-command event log
    event_log_maxlen: int = Field(default=10_000, gt=0)
    event_log_ttl_s: int = Field(default=24 * 3600, gt=0)

    # Realtime
    ws_queue_max_events: int = Field(default=1_000, gt=0)

    # Workers and the simulated fleet
    broker_heartbeat_timeout_ms: int = Field(default=60_000, gt=0)
    sim_seed: int = 0
    sim_delay_scale: float = Field(default=1.0, ge=0)
    seed_demo: bool = True

    @model_validator(mode="after")
    def _refuse_default_secret_outside_dev(self) -> Settings:
        if self.env != "dev" and self.jwt_secret == DEFAULT_JWT_SECRET:
            raise ValueError(
                "SOVD_JWT_SECRET must be set to a private value when SOVD_ENV is not 'dev'"
            )
        if len(self.jwt_secret) < 32:
            raise ValueError("SOVD_JWT_SECRET must be at least 32 characters long")
        return self

    @property
    def effective_redis_url(self) -> str:
        """The Redis every process talks to: the configured one or the embedded default."""
        if self.redis_url:
            return self.redis_url
        return f"redis://127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def effective_realtime_url(self) -> str:
        """Base WebSocket URL (no trailing slash) advertised to clients."""
        if self.public_realtime_url:
            return self.public_realtime_url.rstrip("/")
        return f"ws://{self.realtime_host}:{self.realtime_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment. Only process entry points call this."""
    return Settings()
