"""Authenticating an access token against Redis: signature, revocation, active user."""

from __future__ import annotations

import redis.asyncio

from common.auth_events import AuthEvent
from common.errors import AuthError
from common.keys import Keys
from common.settings import Settings
from common.tokens import TokenClaims, decode_token
from common.users import User, UserStore

__all__ = ["authenticate_access_token", "revoke_access_token", "revoke_access_tokens"]


async def authenticate_access_token(
    settings: Settings, client: redis.asyncio.Redis, keys: Keys, token: str
) -> tuple[User, TokenClaims]:
    """The active user behind ``token``; raise ``AuthError`` with a client-safe message."""
    claims = decode_token(settings, token, "access")
    if await client.exists(keys.revoked_access_token(claims.jti)):
        raise AuthError("Token revoked")
    user = await UserStore(client, keys).get_by_id(claims.sub)
    if user is None or not user.active:
        raise AuthError("User inactive or unknown")
    return user, claims


async def revoke_access_token(
    client: redis.asyncio.Redis, keys: Keys, claims: TokenClaims, *, now_ts: float
) -> None:
    """Refuse ``claims.jti`` until the token would have expired anyway."""
    await revoke_access_tokens(
        client, keys, claims.sub, [(claims.jti, claims.expires_at.timestamp())], now_ts=now_ts
    )


async def revoke_access_tokens(
    client: redis.asyncio.Redis,
    keys: Keys,
    user_id: str,
    tokens: list[tuple[str, float]],
    *,
    now_ts: float,
) -> None:
    """Refuse each ``(jti, expires_at)`` of ``user_id`` until it would have expired anyway."""
    live = [(jti, expires) for jti, expires in tokens if expires > now_ts - 1]
    if not live:
        return
    async with client.pipeline(transaction=True) as pipe:
        for jti, expires in live:
            remaining = max(1, int(expires - now_ts) + 1)
            event = AuthEvent(kind="token_revoked", user_id=user_id, jti=jti)
            pipe.set(keys.revoked_access_token(jti), "1", ex=remaining)
            pipe.publish(keys.auth_events, event.model_dump_json(exclude_none=True))
        await pipe.execute()
