"""Every setting of every process, in one place, read from ``SOVD_*`` env vars."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    #: How long an api process may rely on what it read about a token and its user
    #: (api/auth_cache.py); a logout or deactivation reaches it sooner by Pub/Sub.
    auth_cache_ttl_s: float = Field(default=0.5, ge=0, le=1.0)
    refresh_token_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    #: A used refresh token presented again this soon is refused without revoking its
    #: chain (tabs racing); later, the whole chain is revoked (common/refresh_chain.py).
    refresh_reuse_grace_s: float = Field(default=5.0, ge=0, le=60)

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
    #: Largest request body the api accepts, in bytes (413 above).
    max_request_body_bytes: int = Field(default=64 * 1024, gt=0)
    #: Login attempts per client address and username, per minute.
    login_rate_per_minute: int = Field(default=10, gt=0)
    #: Login attempts per username from all addresses together, per minute.
    login_rate_per_username_per_minute: int = Field(default=30, gt=0)
    #: Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and
    #: X-Forwarded-Proto the api believes; empty means the peer's own address is the client.
    #: Comma-separated or a JSON list.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: A listener serving only the api's /metrics (0: none); keep it on loopback.
    api_metrics_host: str = "127.0.0.1"
    api_metrics_port: int = Field(default=9180, ge=0, le=65535)
    #: When set, /metrics also answers on the api port to ``Authorization: Bearer <token>``.
    metrics_token: str = ""
    #: Command submissions per user, per minute.
    submit_rate_per_minute: int = Field(default=120, gt=0)

    # Command history retention (common/retention.py)
    #: Ended commands submitted longer ago than this are removed with their responses.
    command_retention_days: float = Field(default=30.0, gt=0)
    retention_sweep_interval_s: float = Field(default=600.0, gt=0)

    # Audit trail
    audit_max_entries: int = Field(default=100_000, gt=0)
    audit_retention_days: int = Field(default=90, gt=0)

    # Worker metrics (Dramatiq's Prometheus exporter; port from dramatiq_prom_port)
    worker_metrics: bool = False

    # Logging
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Durable per-command event log
    event_log_maxlen: int = Field(default=10_000, gt=0)
    event_log_ttl_s: int = Field(default=24 * 3600, gt=0)

    # Realtime (docs/protocol.md lists the limits and the close code each one leads to)
    ws_queue_max_events: int = Field(default=1_000, gt=0)
    #: Bytes of events waiting for one client before it is closed as a slow consumer.
    ws_queue_max_bytes: int = Field(default=1024 * 1024, gt=0)
    #: Largest client message accepted; a larger one closes the WebSocket with 1009.
    ws_max_message_bytes: int = Field(default=64 * 1024, gt=0)
    ws_max_subscriptions: int = Field(default=100, gt=0)
    #: Open WebSocket and SSE connections per user, counted per realtime process.
    ws_max_connections_per_user: int = Field(default=50, gt=0)
    #: Client messages: sustained rate and burst (a token bucket) before a 4029 close.
    ws_client_rate_per_s: float = Field(default=10.0, gt=0)
    ws_client_burst: int = Field(default=50, gt=0)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)
    ws_per_message_deflate: bool = False
    #: A connection left with no subscription is closed (4408) after this many seconds.
    ws_idle_timeout_s: float = Field(default=60.0, gt=0)
    #: A client must finish its HTTP request head (the WebSocket or SSE handshake) within
    #: this many seconds, else the socket is answered 408 and closed.
    ws_handshake_timeout_s: float = Field(default=10.0, gt=0)
    #: The largest request head (request line and headers) the realtime process reads;
    #: a larger one is answered 431. At most 8 KiB: the WebSocket handshake parser
    #: takes no longer header line.
    ws_max_request_head_bytes: int = Field(default=8 * 1024, ge=1024, le=8 * 1024)
    #: Time past the token's expiry before an open connection is closed with 4401.
    ws_token_grace_s: float = Field(default=5.0, ge=0)
    #: On shutdown, time given to each connection to send what it has queued before 1001.
    ws_shutdown_drain_s: float = Field(default=2.0, ge=0)

    # Command execution policy (common/policy.py)
    policy_file: Path | None = None
    policies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)

    # Workers and the simulated fleet
    broker_heartbeat_timeout_ms: int = Field(default=15_000, gt=0)
    #: Idle consumers wait on a wake-up list instead of polling (common/broker.py).
    broker_wakeup: bool = True
    #: Chance per million broker calls to run queue maintenance (requeues a dead worker's
    #: messages). Dramatiq's default is 1000.
    broker_maintenance_chance: int = Field(default=20_000, ge=0, le=1_000_000)
    #: How often each worker process runs that maintenance for every queue itself, so a
    #: dead worker's commands are redelivered within heartbeat timeout + this interval.
    broker_maintenance_interval_s: float = Field(default=2.0, gt=0)
    #: How often each worker process looks for commands past their deadline.
    sweep_interval_s: float = Field(default=5.0, gt=0)
    #: Extra time after a deadline before the sweeper declares a command timed out.
    deadline_grace_s: float = Field(default=5.0, ge=0)
    sim_seed: int = 0
    sim_delay_scale: float = Field(default=1.0, ge=0)
    seed_demo: bool = True

    # Vehicles: connector and presence (common/presence.py)
    #: How the workers reach vehicles: ``simulator`` is the in-worker simulated fleet,
    #: ``mqtt`` an MQTT broker the vehicles dial out to (docs/vehicles.md), ``grpc`` a
    #: vehicle gateway (docs/grpc.md).
    connector: Literal["simulator", "mqtt", "grpc"] = "simulator"
    #: A connected vehicle that reports nothing (no heartbeat) for this long is marked
    #: ``disconnected`` by the api's presence sweep.
    presence_timeout_s: float = Field(default=60.0, gt=0)
    #: How often the api looks for silent vehicles.
    presence_sweep_interval_s: float = Field(default=5.0, gt=0)
    #: With the simulator connector: how often the api heartbeats the simulated vehicles
    #: (those whose metadata has ``"simulated": true``); keep it below the timeout.
    presence_sim_heartbeat_s: float = Field(default=15.0, gt=0)
    #: A vehicle that went offline other than by a clean disconnect (a last will, a
    #: heartbeat timeout) has this long to come back before its active commands end
    #: with ``vehicle_offline`` (0: at once). Lets a transport resume an exchange across
    #: a broker restart; align it with the transport's own grace.
    presence_offline_grace_s: float = Field(default=0.0, ge=0, le=300)

    # MQTT transport (workers/mqtt_connector.py, agent/, deploy/mosquitto/)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, gt=0, le=65535)
    #: The service's own broker account (workers, vehicle bridge); vehicles log in as their VIN.
    mqtt_username: str = "sovd-service"
    #: Empty: derived from SOVD_MQTT_VEHICLE_SECRET like a vehicle's (common/mqtt_auth.py).
    mqtt_password: str = ""
    #: First topic level; a vehicle's topics are ``<prefix>/<VIN>/...``.
    mqtt_topic_prefix: str = Field(default="sovd", pattern=r"^[A-Za-z0-9_.-]+$")
    #: ``5`` (response topic, correlation data, message expiry) or ``3.1.1``.
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    #: How long the broker keeps a disconnected client's session (subscriptions and
    #: queued QoS 1 messages), so a reconnect within it loses nothing.
    mqtt_session_expiry_s: int = Field(default=300, ge=0)
    #: How long a vehicle's link may drop before it counts as gone: agent-run vehicles
    #: ask the broker to hold their last will this long (MQTT 5 will delay), and an
    #: exchange whose vehicle's last will arrives waits this long for it to come back
    #: (then resumes) before failing; a clean disconnect fails at once.
    mqtt_offline_grace_s: float = Field(default=3.0, ge=0)
    #: Simulated vehicles (``python -m agent``) send a heartbeat this often.
    mqtt_heartbeat_interval_s: float = Field(default=10.0, gt=0)
    #: Secret from which each vehicle's broker password is derived (common/mqtt_auth.py);
    #: empty means a fixed development secret, refused when SOVD_ENV is not ``dev``.
    mqtt_vehicle_secret: str = ""
    #: The ``mqtt`` Procfile entry runs a local Mosquitto on SOVD_MQTT_PORT when
    #: SOVD_CONNECTOR=mqtt and this is true (false: a broker of your own).
    mqtt_embedded: bool = True
    # gRPC vehicle gateway (SOVD_CONNECTOR=grpc; docs/grpc.md)
    #: Gateway address (``host:port``) for vehicles whose metadata names no ``grpc_target``.
    grpc_target: str = Field(default="127.0.0.1:50051", min_length=1)
    #: TLS to the gateway; the CA file verifies it (system roots when unset), the client
    #: certificate and key (both or neither) authenticate the worker.
    grpc_tls: bool = False
    grpc_ca_file: Path | None = None
    grpc_client_cert_file: Path | None = None
    grpc_client_key_file: Path | None = None
    #: HTTP/2 keepalive ping interval while a call waits (0: off). Keep it at or above the
    #: gateway's minimum ping interval, or the gateway closes the connection.
    grpc_keepalive_s: float = Field(default=0.0, ge=0)
    #: The test gateway (``python -m gateway``): where it listens, how many calls it runs
    #: at once, and whether the Procfile's ``gateway`` entry serves when SOVD_CONNECTOR=grpc.
    grpc_gateway_host: str = "127.0.0.1"
    grpc_gateway_port: int = Field(default=50051, ge=0, le=65535)
    grpc_gateway_max_calls: int = Field(default=64, gt=0)
    grpc_local_gateway: bool = True
    # The api's request path (docs/operations.md, "Serving more requests")
    #: One ``http_request`` log line per request, written by the api's own middleware
    #: (uvicorn's access log is always off: it prints query strings).
    access_log: bool = False
    #: Processes ``python -m api`` serves its sockets with (one event loop each).
    api_processes: int = Field(default=1, ge=1, le=64)
    #: On SIGTERM, time requests in flight get to finish before the api cancels them and
    #: exits (kept under the supervisor's kill delay: honcho waits 5 s).
    api_shutdown_timeout_s: int = Field(default=3, ge=1, le=300)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"SOVD_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
                ) from None
        return value

    @model_validator(mode="after")
    def _refuse_default_secret_outside_dev(self) -> Settings:
        if self.env != "dev" and self.jwt_secret == DEFAULT_JWT_SECRET:
            raise ValueError(
                "SOVD_JWT_SECRET must be set to a private value when SOVD_ENV is not 'dev'"
            )
        if len(self.jwt_secret) < 32:
            raise ValueError("SOVD_JWT_SECRET must be at least 32 characters long")
        if self.metrics_token and len(self.metrics_token) < 16:
            raise ValueError("SOVD_METRICS_TOKEN must be empty or at least 16 characters long")
        if self.env != "dev" and self.connector == "mqtt" and len(self.mqtt_vehicle_secret) < 32:
            raise ValueError(
                "SOVD_MQTT_VEHICLE_SECRET must be at least 32 characters when SOVD_ENV is "
                "not 'dev' and SOVD_CONNECTOR=mqtt"
            )
        if self.api_metrics_port and self.api_metrics_port == self.api_port:
            raise ValueError("SOVD_API_METRICS_PORT must differ from SOVD_API_PORT")
        return self

    @model_validator(mode="after")
    def _grpc_client_certificate_pairs(self) -> Settings:
        if (self.grpc_client_cert_file is None) != (self.grpc_client_key_file is None):
            raise ValueError("SOVD_GRPC_CLIENT_CERT_FILE and SOVD_GRPC_CLIENT_KEY_FILE go together")
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
