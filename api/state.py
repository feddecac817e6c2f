"""Per-process clients and stores, opened once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis

from common.command_store import CommandStore
from common.eventlog import AsyncEventLog
from common.keys import Keys
from common.policy import CommandPolicy, load_policies
from common.settings import Settings
from common.users import UserStore
from common.vehicles import VehicleStore

__all__ = ["AppState"]


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    redis: Redis
    broker: RedisBroker
    keys: Keys
    users: UserStore
    vehicles: VehicleStore
    commands: CommandStore
    events: AsyncEventLog
    policies: dict[str, CommandPolicy]

    @classmethod
    def build(cls, settings: Settings, client: Redis, broker: RedisBroker) -> AppState:
        keys = Keys(settings.key_prefix)
        return cls(
            settings=settings,
            redis=client,
            broker=broker,
            keys=keys,
            users=UserStore(client, keys),
            vehicles=VehicleStore(client, keys),
            commands=CommandStore(client, keys),
            events=AsyncEventLog(
                client, keys, maxlen=settings.event_log_maxlen, ttl_s=settings.event_log_ttl_s
            ),
            policies=load_policies(settings),
        )
