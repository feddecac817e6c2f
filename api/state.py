"""Per-process clients and stores, opened once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from api.auth_cache import AuthCache
from common.audit import AsyncAuditLog
from common.broker import WakingRedisBroker
from common.command_store import CommandStore
from common.eventlog import AsyncEventLog
from common.history import CommandHistory
from common.keys import Keys
from common.lua import lua_script
from common.policy import CommandPolicy, load_policies
from common.presence import Presence
from common.ratelimit import RateLimiter
from common.refresh_chain import RefreshChains
from common.settings import Settings
from common.users import UserStore
from common.vehicles import VehicleStore

__all__ = ["AppState"]


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    redis: Redis
    broker: WakingRedisBroker
    keys: Keys
    users: UserStore
    vehicles: VehicleStore
    commands: CommandStore
    events: AsyncEventLog
    policies: dict[str, CommandPolicy]
    audit: AsyncAuditLog
    login_limiter: RateLimiter
    #: Per username across every address (rotating addresses does not reset it).
    login_user_limiter: RateLimiter
    submit_limiter: RateLimiter
    refresh_chains: RefreshChains
    history: CommandHistory
    auth: AuthCache
    #: common/lua/submit.lua, registered on ``redis``.
    submit_script: Any
    presence: Presence

    @classmethod
    def build(cls, settings: Settings, client: Redis, broker: WakingRedisBroker) -> AppState:
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
            audit=AsyncAuditLog(client, keys, settings),
            login_limiter=RateLimiter(
                client,
                keys.rate_limit("login"),
                limit=settings.login_rate_per_minute,
                window_s=60,
            ),
            login_user_limiter=RateLimiter(
                client,
                keys.rate_limit("login-user"),
                limit=settings.login_rate_per_username_per_minute,
                window_s=60,
            ),
            refresh_chains=RefreshChains(client, keys, settings),
            history=CommandHistory(client, keys),
            submit_limiter=RateLimiter(
                client,
                keys.rate_limit("submit"),
                limit=settings.submit_rate_per_minute,
                window_s=60,
            ),
            auth=AuthCache(settings, client, keys),
            submit_script=lua_script("submit").register_async(client),
            presence=Presence(client, keys, settings),
        )
