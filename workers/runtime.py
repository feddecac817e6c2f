"""What actors need at run time, built once per worker process from settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from common.audit import AuditLog
from common.eventlog import EventLog
from common.keys import Keys
from common.policy import CommandPolicy, load_policies
from common.redis_client import sync_client
from common.settings import Settings
from workers.connector import VehicleConnector
from workers.simulator import SimulatedFleet

__all__ = ["Runtime", "build_connector", "build_runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    client: redis.Redis
    keys: Keys
    events: EventLog
    connector: VehicleConnector
    policies: dict[str, CommandPolicy]
    audit: AuditLog

    def close(self) -> None:
        close = getattr(self.connector, "close", None)
        if close is not None:
            close()
        self.client.close()


def build_connector(settings: Settings, client: redis.Redis, keys: Keys) -> VehicleConnector:
    """The connector ``SOVD_CONNECTOR`` names (the simulated fleet by default)."""
    if settings.connector == "mqtt":
        from workers.mqtt_connector import MqttConnector

        return MqttConnector(settings)
    if settings.connector == "grpc":
        from workers.grpc_connector import GrpcConnector

        return GrpcConnector(settings)
    return SimulatedFleet(
        client, keys, seed=settings.sim_seed, delay_scale=settings.sim_delay_scale
    )


def build_runtime(settings: Settings, *, connector: VehicleConnector | None = None) -> Runtime:
    """A runtime for ``settings``; ``connector`` replaces the one settings name."""
    client = sync_client(settings.effective_redis_url)
    keys = Keys(settings.key_prefix)
    return Runtime(
        settings=settings,
        client=client,
        keys=keys,
        events=EventLog(
            client, keys, maxlen=settings.event_log_maxlen, ttl_s=settings.event_log_ttl_s
        ),
        connector=connector or build_connector(settings, client, keys),
        policies=load_policies(settings),
        audit=AuditLog(client, keys, settings),
    )
