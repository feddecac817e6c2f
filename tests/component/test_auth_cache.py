"""What an api process remembers about tokens and users, and how soon it forgets."""

from __future__ import annotations

import asyncio

import pytest

from api.auth_cache import VERIFIED_MAX, AuthCache
from common.auth import revoke_access_token
from common.errors import AuthError
from common.keys import Keys
from common.redis_client import async_client
from common.settings import Settings
from common.tokens import issue_token
from common.users import Role, UserStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _with_cache(settings: Settings, scenario) -> None:  # type: ignore[no-untyped-def]
    client = async_client(settings.effective_redis_url)
    keys = Keys(settings.key_prefix)
    users = UserStore(client, keys)
    try:
        user = await users.create(username="alice", password="alice-password", role=Role.ENGINEER)
        token, claims = issue_token(settings, user, "access")
        clock = Clock()
        cache = AuthCache(settings, client, keys, clock=clock)
        await scenario(cache, clock, client, keys, users, token, claims)
    finally:
        await client.aclose()


def test_a_change_without_an_event_shows_once_the_ttl_has_passed(settings: Settings) -> None:
    """With the Pub/Sub connection down, what a process remembers is at most TTL old."""

    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        assert (await cache.authenticate(token))[0].username == "alice"
        await client.hset(keys.user("alice"), "active", "0")  # no event published
        clock.now += settings.auth_cache_ttl_s / 2
        assert (await cache.authenticate(token))[0].username == "alice"  # remembered
        clock.now += settings.auth_cache_ttl_s
        with pytest.raises(AuthError, match="inactive"):
            await cache.authenticate(token)

    asyncio.run(_with_cache(settings, scenario))


def test_a_revocation_event_is_applied_before_the_ttl(settings: Settings) -> None:
    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        follower = asyncio.create_task(cache.run())
        try:
            for _ in range(200):
                if cache.subscribed:
                    break
                await asyncio.sleep(0.01)
            assert cache.subscribed
            await cache.authenticate(token)
            await revoke_access_token(client, keys, claims, now_ts=0)
            refused: list[str] = []
            for _ in range(200):  # the clock stands still: only the event can do it
                try:
                    await cache.authenticate(token)
                except AuthError as exc:
                    refused.append(exc.message)
                    break
                await asyncio.sleep(0.01)
            assert refused == ["Token revoked"]
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    asyncio.run(_with_cache(settings, scenario))


def test_a_read_that_raced_an_invalidation_is_not_remembered(settings: Settings) -> None:
    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        original = cache._read

        async def racing_read(c):  # type: ignore[no-untyped-def]
            result = await original(c)
            cache.clear()  # an event arrives while the read is in flight
            return result

        cache._read = racing_read
        await cache.authenticate(token)
        assert cache._users == {}
        assert cache._tokens == {}

    asyncio.run(_with_cache(settings, scenario))


def test_the_ttl_is_at_most_one_second() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        Settings(_env_file=None, auth_cache_ttl_s=1.5)


def test_a_remembered_token_is_refused_once_it_expires(settings: Settings) -> None:
    """Verified tokens are kept only until their ``exp``: then 401 ``Token expired``."""

    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        wall = Clock()
        wall.now = claims.expires_at.timestamp() - 1
        cache._wall_clock = wall
        assert (await cache.authenticate(token))[1] == claims
        assert token in cache._verified
        wall.now = claims.expires_at.timestamp()
        with pytest.raises(AuthError, match="Token expired"):
            await cache.authenticate(token)
        assert token not in cache._verified

    asyncio.run(_with_cache(settings, scenario))


def test_an_invalid_token_is_refused_every_time_and_never_remembered(settings: Settings) -> None:
    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        await cache.authenticate(token)
        head, payload, signature = token.split(".")
        forged = f"{head}.{payload}.{signature[:-4]}AAAA"
        for _ in range(2):
            with pytest.raises(AuthError, match="Invalid token"):
                await cache.authenticate(forged)
        assert list(cache._verified) == [token]

    asyncio.run(_with_cache(settings, scenario))


def test_a_remembered_token_is_still_checked_for_revocation(settings: Settings) -> None:
    """The signature is remembered, the revocation is not: past the TTL it is read again."""

    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        await cache.authenticate(token)
        await revoke_access_token(client, keys, claims, now_ts=0)  # no event followed here
        clock.now += settings.auth_cache_ttl_s * 1.5
        with pytest.raises(AuthError, match="Token revoked"):
            await cache.authenticate(token)

    asyncio.run(_with_cache(settings, scenario))


def test_the_verified_tokens_kept_are_bounded(settings: Settings) -> None:
    async def scenario(cache, clock, client, keys, users, token, claims) -> None:  # type: ignore[no-untyped-def]
        user = await users.get_by_username("alice")
        for _ in range(VERIFIED_MAX + 1):
            cache._verify(issue_token(settings, user, "access")[0])
        assert len(cache._verified) <= VERIFIED_MAX

    asyncio.run(_with_cache(settings, scenario))
