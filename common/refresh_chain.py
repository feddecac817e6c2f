"""Refresh-token chains: rotation, and reuse detection that revokes the whole chain.

A login starts a chain (a "family"); every refresh rotates the presented token into a
new pair of the same chain. A refresh token works once. Presenting one a second time
means two parties hold it (a leaked token), so the chain ends: every refresh token of
it stops working and every access token issued in it is revoked (OAuth 2.0 Security
BCP, refresh token rotation). The caller records the reuse in the audit trail.

A second use within ``SOVD_REFRESH_REUSE_GRACE_S`` of the first is refused without
ending the chain: that is two tabs of one browser refreshing at the same moment, and
the one that lost adopts the pair the other stored.

Redis, per chain and per token (names from ``common.keys``):

- ``refresh:{jti}``, a hash ``user_id``, ``family``, ``state`` (``live`` or ``used``),
  ``used_at``, kept until the token expires so that a reuse is recognised;
- ``refresh-family:{family}``, a hash ``r:{jti}`` / ``a:{jti}`` -> expiry (epoch s) of
  each refresh and access token of the chain, and ``revoked`` once it ended.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import redis.asyncio

from common.auth import revoke_access_tokens
from common.keys import Keys
from common.settings import Settings
from common.tokens import TokenClaims, issue_token
from common.users import User

__all__ = ["IssuedPair", "RefreshChains", "Rotation"]

_ISSUE_SCRIPT = """
-- KEYS: family hash, refresh token record
-- ARGV: refresh jti, refresh expiry, access jti, access expiry, user id, family id, ttl
local family_key, record_key = KEYS[1], KEYS[2]
local refresh_jti, refresh_exp, access_jti, access_exp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local user_id, family, ttl = ARGV[5], ARGV[6], ARGV[7]
if redis.call('HEXISTS', family_key, 'revoked') == 1 then return 0 end
redis.call('HSET', family_key, 'r:' .. refresh_jti, refresh_exp, 'a:' .. access_jti, access_exp)
redis.call('EXPIRE', family_key, ttl)
redis.call('HSET', record_key, 'user_id', user_id, 'family', family, 'state', 'live')
redis.call('EXPIRE', record_key, ttl)
return 1
"""

_ROTATE_SCRIPT = """
-- KEYS: refresh token record
-- ARGV: the token's subject (user id), now (epoch s), reuse grace (s)
-- Returns {outcome, family}: 'ok' (now used), 'reused' (used before, past the grace),
-- or 'missing' (unknown, revoked, or used again within the grace).
local record_key, subject = KEYS[1], ARGV[1]
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = redis.call('TYPE', record_key).ok
if kind == 'string' then
  -- a token issued before chains existed: works once, starts a new chain
  local owner = redis.call('GETDEL', record_key)
  if owner == subject then return {'ok', ''} end
  return {'missing', ''}
end
if kind ~= 'hash' then return {'missing', ''} end
local fields = redis.call('HMGET', record_key, 'user_id', 'family', 'state', 'used_at')
if fields[1] ~= subject then return {'missing', ''} end
if fields[3] == 'used' then
  -- two tabs refreshing with the same token at once: refused, but not a theft
  if now - tonumber(fields[4] or '0') < grace then return {'missing', ''} end
  return {'reused', fields[2]}
end
redis.call('HSET', record_key, 'state', 'used', 'used_at', ARGV[2])
return {'ok', fields[2]}
"""

_END_SCRIPT = """
-- KEYS: family hash
-- Marks the chain ended (no token is issued into it again) and returns its members.
local family_key = KEYS[1]
local members = redis.call('HGETALL', family_key)
redis.call('HSET', family_key, 'revoked', '1')
return members
"""


class Rotation(StrEnum):
    OK = "ok"
    REUSED = "reused"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class IssuedPair:
    access_token: str
    refresh_token: str
    family: str


class RefreshChains:
    """Issue, rotate and end refresh-token chains for the api."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, settings: Settings) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._issue = client.register_script(_ISSUE_SCRIPT)
        self._rotate = client.register_script(_ROTATE_SCRIPT)
        self._end = client.register_script(_END_SCRIPT)

    async def issue(self, user: User, family: str | None = None) -> IssuedPair | None:
        """A new pair in ``family`` (a new chain when None); None if the chain has ended."""
        family = family or uuid.uuid4().hex
        access, access_claims = issue_token(self._settings, user, "access")
        refresh, refresh_claims = issue_token(self._settings, user, "refresh")
        issued = await self._issue(
            keys=[self._keys.refresh_family(family), self._keys.refresh_token(refresh_claims.jti)],
            args=[
                refresh_claims.jti,
                int(refresh_claims.expires_at.timestamp()),
                access_claims.jti,
                int(access_claims.expires_at.timestamp()),
                user.user_id,
                family,
                self._settings.refresh_token_ttl_s,
            ],
        )
        if not int(issued):
            return None
        return IssuedPair(access_token=access, refresh_token=refresh, family=family)

    async def rotate(self, claims: TokenClaims) -> tuple[Rotation, str]:
        """Use the refresh token of ``claims`` once: ``(outcome, family)``."""
        outcome, family = await self._rotate(
            keys=[self._keys.refresh_token(claims.jti)],
            args=[claims.sub, time.time(), self._settings.refresh_reuse_grace_s],
        )
        return Rotation(str(outcome)), str(family)

    async def end(self, family: str, user_id: str) -> int:
        """End the chain: its refresh tokens stop working, its access tokens are revoked.

        Returns how many tokens were revoked.
        """
        raw = cast(list[str], await self._end(keys=[self._keys.refresh_family(family)]))
        members = dict(zip(raw[::2], raw[1::2], strict=True))
        refresh = [name[2:] for name in members if name.startswith("r:")]
        access = [(name[2:], float(exp)) for name, exp in members.items() if name.startswith("a:")]
        if refresh:
            await self._client.delete(*(self._keys.refresh_token(jti) for jti in refresh))
        await revoke_access_tokens(self._client, self._keys, user_id, access, now_ts=time.time())
        return len(refresh) + len(access)

    async def end_for(self, claims: TokenClaims) -> None:
        """End the chain of the refresh token of ``claims`` (logout)."""
        record = self._keys.refresh_token(claims.jti)
        family = None
        if await self._client.type(record) == "hash":
            family = await self._client.hget(record, "family")
        await self._client.delete(record)
        if family:
            await self.end(str(family), claims.sub)
