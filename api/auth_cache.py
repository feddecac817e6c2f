"""Who is behind an access token, remembered for at most ``ttl_s`` by each api process.

An authenticated request needs three facts from Redis: the token is not revoked, its
user exists and is active. Reading them on every request is most of a read's cost, so
each api process remembers, per token id and per user id, what it last read, for at
most ``SOVD_AUTH_CACHE_TTL_S`` (≤ 1 s). A logout or a deactivation publishes an
``AuthEvent`` (``common.auth_events``) in the same transaction as its write; every api
process drops what it remembered about that token or user when the event arrives, so
the change normally takes effect everywhere within a Pub/Sub delivery, and within the
TTL at worst (the subscription is down or reconnecting; every entry is dropped when it
comes back). A role change or a re-activation (no event) also shows within the TTL.

Verifying a token's signature is itself a large share of a request (PyJWT checks on
every call that the HMAC secret is not an asymmetric key). A token string that verified
once verifies the same way until it expires: its claims are fixed, and issuer, audience
and secret are this process's settings. So verified tokens are kept, claims and all,
until their ``exp`` (at most ``VERIFIED_MAX`` of them); revocation and the user are
still checked as above. An invalid token is never kept, so it is verified, and refused,
every time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import redis.asyncio
import structlog
from pydantic import ValidationError

from common.auth_events import AuthEvent
from common.errors import AuthError
from common.keys import Keys
from common.protocol import TOKEN_EXPIRED_REASON
from common.settings import Settings
from common.tokens import TokenClaims, decode_token
from common.users import User

__all__ = ["AuthCache"]

log = structlog.get_logger(__name__)

#: Entries kept before expired ones are pruned.
PRUNE_ABOVE = 10_000
#: Verified token strings kept at most; past it the oldest half is dropped.
VERIFIED_MAX = 10_000
#: Back-off bounds (seconds) between attempts to resubscribe to the auth events.
RESUBSCRIBE_MIN_S, RESUBSCRIBE_MAX_S = 0.05, 1.0


class AuthCache:
    """``authenticate`` with per-process memory; ``run`` keeps it in step with Redis."""

    def __init__(
        self,
        settings: Settings,
        client: redis.asyncio.Redis,
        keys: Keys,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._client = client
        self._keys = keys
        self._ttl_s = settings.auth_cache_ttl_s
        self._clock = clock
        self._wall_clock = wall_clock
        #: token string -> its verified claims (insertion order: oldest first)
        self._verified: dict[str, TokenClaims] = {}
        #: token id -> when it was last read as not revoked
        self._tokens: dict[str, float] = {}
        #: user id -> (when read, the user or None when unknown)
        self._users: dict[str, tuple[float, User | None]] = {}
        #: Bumped by every invalidation: a read that started before one is not kept.
        self._generation = 0
        self.subscribed = False

    async def authenticate(self, token: str) -> tuple[User, TokenClaims]:
        """The active user behind ``token``; raise ``AuthError`` with a client-safe message."""
        claims = self._verify(token)
        now = self._clock()
        checked = self._tokens.get(claims.jti)
        cached = self._users.get(claims.sub)
        if (
            checked is None
            or now - checked > self._ttl_s
            or cached is None
            or (now - cached[0] > self._ttl_s)
        ):
            generation = self._generation
            revoked, user = await self._read(claims)
            if revoked:
                raise AuthError("Token revoked")
            if generation == self._generation and self._ttl_s > 0:
                self._remember(claims, user, now)
        else:
            user = cached[1]
        if user is None or not user.active:
            raise AuthError("User inactive or unknown")
        return user, claims

    def _verify(self, token: str) -> TokenClaims:
        """The token's claims: verified once, then remembered until the token expires."""
        claims = self._verified.get(token)
        if claims is not None:
            if self._wall_clock() < claims.expires_at.timestamp():
                return claims
            del self._verified[token]
            raise AuthError(TOKEN_EXPIRED_REASON)
        claims = decode_token(self._settings, token, "access")
        if len(self._verified) >= VERIFIED_MAX:
            for stale in list(self._verified)[: VERIFIED_MAX // 2]:
                del self._verified[stale]
        self._verified[token] = claims
        return claims

    async def _read(self, claims: TokenClaims) -> tuple[bool, User | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.exists(self._keys.revoked_access_token(claims.jti))
            pipe.get(self._keys.user_by_id(claims.sub))
            revoked, username = await pipe.execute()
        if revoked or not username:
            return bool(revoked), None
        fields = cast(dict[str, str], await self._client.hgetall(self._keys.user(username)))
        return False, User.from_redis(fields) if fields else None

    def _remember(self, claims: TokenClaims, user: User | None, now: float) -> None:
        if len(self._tokens) + len(self._users) > PRUNE_ABOVE:
            self._prune(now)
        self._tokens[claims.jti] = now
        self._users[claims.sub] = (now, user)

    def _prune(self, now: float) -> None:
        self._tokens = {k: t for k, t in self._tokens.items() if now - t <= self._ttl_s}
        self._users = {k: v for k, v in self._users.items() if now - v[0] <= self._ttl_s}

    def apply(self, event: AuthEvent) -> None:
        """Forget what the event makes stale (a revoked token, a deactivated user)."""
        self._generation += 1
        if event.jti is not None:
            self._tokens.pop(event.jti, None)
        self._users.pop(event.user_id, None)

    def clear(self) -> None:
        """Forget everything (events may have been missed)."""
        self._generation += 1
        self._tokens.clear()
        self._users.clear()

    async def run(self) -> None:
        """Follow ``Keys.auth_events`` until cancelled, resubscribing with back-off."""
        delay = RESUBSCRIBE_MIN_S
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._keys.auth_events)
                self.clear()
                self.subscribed = True
                delay = RESUBSCRIBE_MIN_S
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._on_message(message["data"])
            except (redis.RedisError, OSError) as exc:
                log.warning("auth_events_subscription_lost", error=str(exc))
            finally:
                self.subscribed = False
                self.clear()
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call] # unannotated in redis-py
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    def _on_message(self, data: str) -> None:
        try:
            self.apply(AuthEvent.model_validate_json(data))
        except ValidationError:
            log.warning("auth_event_unreadable")
            self.clear()
